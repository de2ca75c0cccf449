//! The Python AegisSDK's leader key of the same (service, group), for groups that mix
//! Rust and Python instances (docs/python-interop.md).
//!
//! The SDK elects with a create on `sticky-active_{service}_{group}_leader` in the bucket
//! `election_{service}` and never looks at Aegis's key, so Aegis takes part in both: a
//! Rust instance leads only while it holds both keys. It takes the SDK key right after
//! winning its own (and lets its own go again if an SDK instance was faster), renews it
//! with each renewal of its own, under the same TTL, and deletes it when it stops, so
//! SDK instances stay standby while it leads and one of them takes over when it leaves.
//!
//! An SDK leader never renews its key (upstream defect B4), so the key's age tells
//! nothing. Its holder counts as alive while its registry entry (any key form) has a
//! heartbeat younger than the SDK's registry TTL; after that the key is removed,
//! revision-checked, and the group elects again.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::JetStreamError;
use crate::codec::Timestamp;
use crate::instance::ServiceInstance;
use crate::registry::{self, TtlWriteError};
use crate::subject::{self, GroupId, InstanceId, ServiceName, python_sdk};

use super::{LeaderRecord, MIN_RECHECK, guard, staleness};

/// What a look at the SDK's leader key found.
#[derive(Debug)]
pub(super) enum SdkLook {
    /// Nobody holds it: take it at this revision (0, or that of its delete marker).
    Free(u64),
    /// A live holder has it: look again after this long (unless a watch sees it go).
    Held {
        /// Who.
        holder: String,
        /// When to look again.
        recheck: Duration,
    },
    /// Its holder was dead and the key was removed: look again at once.
    Removed,
}

/// The SDK's leader key of one (service, group), as one Rust member of the group sees it.
#[derive(Debug)]
pub(crate) struct SdkLeaderKey {
    js: jetstream::Context,
    bucket: String,
    store: kv::Store,
    registry: Option<kv::Store>,
    key: String,
    service: ServiceName,
    instance: InstanceId,
    ttl: Duration,
    /// How long an SDK instance's registry entry stays fresh without a heartbeat (the
    /// SDK's `registry_ttl`).
    registry_ttl: Duration,
    /// The key's revision while this instance holds it.
    held: Mutex<Option<u64>>,
}

impl SdkLeaderKey {
    /// Opens (creating it if needed) the SDK's election bucket of `service`.
    pub(crate) async fn open(
        js: jetstream::Context,
        service: ServiceName,
        group: &GroupId,
        instance: InstanceId,
        ttl: Duration,
        registry_ttl: Duration,
    ) -> Result<Self, JetStreamError> {
        let bucket = python_sdk::election_bucket(&service);
        // With TTLs and expiry markers, so that SDK standbys see a crashed Rust leader's
        // key go (an SDK-made bucket has no markers: Rust standbys still notice).
        let store = registry::ttl_bucket(&js, &bucket).await?;
        let registry = js.get_key_value(subject::REGISTRY_BUCKET).await.ok();
        Ok(Self {
            key: python_sdk::leader_key(&service, group),
            js,
            bucket,
            store,
            registry,
            service,
            instance,
            ttl,
            registry_ttl,
            held: Mutex::new(None),
        })
    }

    /// The key, for logs.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// A watch of the key from now on: a delete or expiry of it is a reason to campaign
    /// at once.
    pub(super) async fn watch(&self) -> Result<kv::Watch, kv::WatchError> {
        self.store.watch(&self.key).await
    }

    /// Looks at the key: free, held by a live holder, or held by a dead one (removed).
    pub(super) async fn look(&self) -> Result<SdkLook, JetStreamError> {
        let entry = self.store.entry(&self.key).await.map_err(|e| {
            JetStreamError::from_nats(format!("read the Python SDK leader key {}", self.key), e)
        })?;
        let entry = match entry {
            None => return Ok(SdkLook::Free(0)),
            Some(entry) if entry.operation != kv::Operation::Put => {
                return Ok(SdkLook::Free(entry.revision));
            }
            Some(entry) => entry,
        };
        let holder = staleness::holder_of(&entry.value);
        // A writer that renews (a Rust leader, the SDK's f30dbd3 with renewals) keeps the
        // key younger than the staleness rule allows.
        let stale_after = staleness::stale_after(self.ttl);
        if let Ok(age) = staleness::age(&self.js, &self.bucket, &entry).await
            && age <= stale_after
        {
            let recheck = (stale_after - age).clamp(MIN_RECHECK, self.ttl);
            return Ok(SdkLook::Held { holder, recheck });
        }
        // One that does not (the SDK 1.0.1): alive while its registry entry is fresh.
        if let Some(fresh_for) = self.holder_fresh_for(&holder).await {
            let recheck = fresh_for.clamp(MIN_RECHECK, self.registry_ttl);
            return Ok(SdkLook::Held { holder, recheck });
        }
        match staleness::remove_dead(&self.store, &self.key, entry.revision, &self.service).await {
            Ok(()) => {
                tracing::warn!(
                    key = %self.key, %holder, registry_ttl = ?self.registry_ttl,
                    "removed the Python SDK leader key of a dead holder (no registry heartbeat within the SDK's registry_ttl)"
                );
                Ok(SdkLook::Removed)
            }
            Err(err) => {
                tracing::warn!(key = %self.key, %err, "stale Python SDK leader key not removed");
                Ok(SdkLook::Held {
                    holder,
                    recheck: self.ttl,
                })
            }
        }
    }

    /// How much longer the registry entry of `holder` stays fresh (its newest, in any key
    /// form); `None` when it has none or it is stale.
    async fn holder_fresh_for(&self, holder: &str) -> Option<Duration> {
        let registry = self.registry.as_ref()?;
        let holder = InstanceId::new(holder).ok()?;
        let [sdk, older] = python_sdk::registry_keys(&self.service, &holder);
        let ours = subject::registry_key(&self.service, &holder);
        let mut newest: Option<Timestamp> = None;
        for key in [sdk, older, ours] {
            if let Ok(Some(value)) = registry.get(&key).await
                && let Ok(entry) = ServiceInstance::from_json(&value)
            {
                newest = newest.max(Some(entry.last_heartbeat));
            }
        }
        let since = Timestamp::now().as_datetime() - newest?.as_datetime();
        let since = since.to_std().unwrap_or(Duration::ZERO);
        self.registry_ttl
            .checked_sub(since)
            .filter(|left| !left.is_zero())
    }

    /// Takes the key at `expected` with `record`; the new revision, or
    /// [`TtlWriteError::Conflict`] when an SDK instance was faster.
    pub(super) async fn take(
        &self,
        expected: u64,
        record: &LeaderRecord,
    ) -> Result<u64, TtlWriteError> {
        let revision = self.write(record, expected).await?;
        self.set_held(Some(revision));
        Ok(revision)
    }

    /// Renews the key with `record`, at the revision held.
    pub(super) async fn renew(&self, record: &LeaderRecord) -> Result<(), TtlWriteError> {
        let Some(held) = self.held() else {
            return Err(TtlWriteError::Conflict);
        };
        let revision = self.write(record, held).await?;
        self.set_held(Some(revision));
        Ok(())
    }

    async fn write(&self, record: &LeaderRecord, expected: u64) -> Result<u64, TtlWriteError> {
        let value = serde_json::to_vec(record).unwrap_or_default();
        registry::put_with_ttl(
            &self.js,
            &self.bucket,
            &self.key,
            value,
            self.ttl,
            Some(expected),
        )
        .await
    }

    /// Deletes the key if this instance holds it (revision-checked).
    pub(super) async fn release(&self) {
        let Some(held) = self.held() else { return };
        self.set_held(None);
        if let Err(err) = self
            .store
            .delete_expect_revision(&self.key, Some(held))
            .await
        {
            tracing::debug!(key = %self.key, %err, "Python SDK leader key not deleted; it expires after its TTL");
        }
    }

    /// Returns when another writer takes the key from this instance (see
    /// [`guard::lost`]).
    pub(super) async fn lost(&self) -> guard::Lost {
        guard::lost(&self.store, &self.key, &self.instance).await
    }

    fn held(&self) -> Option<u64> {
        self.held.lock().ok().and_then(|held| *held)
    }

    fn set_held(&self, revision: Option<u64>) {
        if let Ok(mut held) = self.held.lock() {
            *held = revision;
        }
    }
}
