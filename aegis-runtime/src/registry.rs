//! The registry: one entry per live instance in the KV bucket `service_registry`, written
//! with a per-message TTL so that it really expires when its instance dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};

use crate::JetStreamError;
use crate::backoff::{Exponential, jittered};
use crate::codec::Timestamp;
use crate::instance::{InstanceStatus, ServiceInstance};
use crate::subject::{self, InstanceId, ServiceName};

/// Default time an entry lives without a heartbeat.
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(30);
/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Consecutive failed heartbeats after which an instance reports itself UNHEALTHY.
pub const UNHEALTHY_AFTER_FAILURES: u32 = 3;
/// The shortest time a heartbeat waits for its write to be acknowledged.
const MIN_WRITE_PATIENCE: Duration = Duration::from_secs(1);
/// How long the marker of an expired or deleted entry stays, so watchers see it.
const LIMIT_MARKER_TTL: Duration = Duration::from_secs(60);

/// Replicas of a bucket Aegis creates on a cluster: the registry and the leader keys then
/// survive the loss of any one server (with one replica, killing the server that holds it
/// left every client without instances).
pub const CLUSTER_BUCKET_REPLICAS: usize = 3;

/// Gets the bucket `bucket`, creating it when missing: history 1 (nothing older can come
/// back), limit markers (per-message TTL on, expiry visible to watchers), and
/// [`CLUSTER_BUCKET_REPLICAS`] replicas when the server is part of a cluster (one on a
/// single server, or when the cluster cannot place three). A bucket made by another
/// instance, or by the Python SDK, is used as it is.
pub(crate) async fn ttl_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<kv::Store, JetStreamError> {
    let clustered = js.client().server_info().cluster.is_some();
    let config = kv::Config {
        bucket: bucket.to_owned(),
        history: 1,
        limit_markers: Some(LIMIT_MARKER_TTL),
        storage: jetstream::stream::StorageType::File,
        num_replicas: if clustered {
            CLUSTER_BUCKET_REPLICAS
        } else {
            1
        },
        ..Default::default()
    };
    let store = match js.create_key_value(config.clone()).await {
        Ok(store) => {
            crate::streams::allow_many_consumers(js, &store.stream).await;
            Ok(store)
        }
        Err(create_error) => match open_bucket(js, bucket, name_in_use(&create_error)).await {
            Ok(store) => usable_ttl_bucket(store),
            // A cluster with fewer JetStream servers than replicas cannot place them.
            Err(_) if clustered && !name_in_use(&create_error) => {
                tracing::warn!(%bucket, %create_error, "cannot create the bucket with {CLUSTER_BUCKET_REPLICAS} replicas; creating it with one, which the loss of its server takes down");
                let single = kv::Config {
                    num_replicas: 1,
                    ..config
                };
                let store = js.create_key_value(single).await.map_err(|single_error| {
                    JetStreamError::from_nats(
                        format!(
                            "create the KV bucket {bucket} (with {CLUSTER_BUCKET_REPLICAS} replicas: {create_error}; with one)"
                        ),
                        single_error,
                    )
                })?;
                crate::streams::allow_many_consumers(js, &store.stream).await;
                Ok(store)
            }
            Err(get_error) => Err(JetStreamError::from_nats(
                format!("create (or open: {get_error}) the KV bucket {bucket}"),
                create_error,
            )),
        },
    }?;
    if clustered {
        crate::streams::until_led(&store.stream).await;
    }
    Ok(store)
}

/// Whether creating a bucket failed because its stream exists (with another
/// configuration: another instance made it, and raised its consumer limit since).
fn name_in_use(error: &jetstream::context::CreateKeyValueError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let code = if let Some(js) = error.downcast_ref::<jetstream::Error>() {
            Some(js.error_code())
        } else if let Some(create) = error.downcast_ref::<jetstream::context::CreateStreamError>()
            && let jetstream::context::CreateStreamErrorKind::JetStream(js) = create.kind()
        {
            Some(js.error_code())
        } else {
            None
        };
        if code == Some(jetstream::ErrorCode::STREAM_NAME_EXIST) {
            return true;
        }
        current = error.source();
    }
    false
}

/// Opens the existing bucket `bucket`. When it is known to exist (`exists`), a failure is
/// tried again for a while: on a cluster a bucket made a moment ago by another instance
/// does not answer until its stream is led.
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    exists: bool,
) -> Result<kv::Store, jetstream::context::KeyValueError> {
    let attempts = if exists { OPEN_ATTEMPTS } else { 1 };
    let mut attempt = 1;
    loop {
        match js.get_key_value(bucket).await {
            Err(err) if attempt < attempts => {
                tracing::debug!(bucket, attempt, %err, "the bucket exists but does not answer yet");
                tokio::time::sleep(Duration::from_millis(50) * attempt).await;
                attempt += 1;
            }
            opened => return opened,
        }
    }
}

/// How many times an existing bucket is opened before its failure is final (50 ms, then
/// 100 ms, … apart: 2.25 s over ten).
const OPEN_ATTEMPTS: u32 = 10;

/// `store` when Aegis can write entries with a time to live in it: a bucket made without
/// per-message TTL (`nats kv add` without `--marker-ttl`) would refuse every write.
fn usable_ttl_bucket(store: kv::Store) -> Result<kv::Store, JetStreamError> {
    if store.stream.cached_info().config.allow_message_ttl {
        return Ok(store);
    }
    Err(JetStreamError::Misconfigured {
        resource: format!("KV bucket {}", store.name),
        setting: "per-message TTL off (allow_msg_ttl: false)".to_owned(),
        fix: format!(
            "registry entries and leader keys are written with a TTL; delete the bucket \
             (`nats kv del {name}`) and Aegis creates it, or create it with \
             `nats kv add {name} --history 1 --marker-ttl 60s` (docs/operations.md)",
            name = store.name
        ),
    })
}

/// The connection is down: a write would wait in the client's buffer.
#[derive(Debug, thiserror::Error)]
#[error("not connected to NATS")]
pub(crate) struct NotConnected;

/// Why a write with a time to live failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TtlWriteError {
    /// The key was not at the expected revision: someone else wrote it first.
    #[error("the key changed (wrong last sequence)")]
    Conflict,
    /// The bucket does not exist (nothing stores its subjects), even after re-creating it.
    #[error("the KV bucket does not exist")]
    NoBucket,
    /// Anything else (no server, timeout, …).
    #[error(transparent)]
    Failed(#[from] JetStreamError),
}

/// Writes `value` under `key` with a time to live, by publishing to the bucket's subject
/// with a `Nats-TTL` header (the KV API has no put with TTL). With `expected`, the write
/// happens only if the key's last revision is that one (0: the key has never been
/// written): a create or a compare-and-set. Returns the new revision.
///
/// A bucket that no longer exists (an operator deleted it) is re-created with the
/// settings of [`ttl_bucket`] and the write made once more: running instances repair the
/// registry and the election bucket by themselves, at their next write.
pub(crate) async fn put_with_ttl(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: Vec<u8>,
    ttl: Duration,
    expected: Option<u64>,
) -> Result<u64, TtlWriteError> {
    let value = bytes::Bytes::from(value);
    match publish_with_ttl(js, bucket, key, value.clone(), ttl, expected).await {
        Err(TtlWriteError::NoBucket) => {
            tracing::warn!(bucket, "the KV bucket is gone; re-creating it");
            crate::metrics::bucket_recreated(bucket);
            ttl_bucket(js, bucket).await?;
            publish_with_ttl(js, bucket, key, value, ttl, expected).await
        }
        written => written,
    }
}

async fn publish_with_ttl(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: bytes::Bytes,
    ttl: Duration,
    expected: Option<u64>,
) -> Result<u64, TtlWriteError> {
    let mut message = PublishMessage::build()
        .payload(value)
        .ttl(whole_seconds(ttl));
    if let Some(expected) = expected {
        message = message.expected_last_subject_sequence(expected);
    }
    let failed = |e: jetstream::context::PublishError| match e.kind() {
        jetstream::context::PublishErrorKind::WrongLastSequence => TtlWriteError::Conflict,
        jetstream::context::PublishErrorKind::StreamNotFound => TtlWriteError::NoBucket,
        _ => TtlWriteError::Failed(JetStreamError::from_nats(
            format!("write {key} in the KV bucket {bucket}"),
            e,
        )),
    };
    let ack = js
        .send_publish(subject::kv_key(bucket, key), message)
        .await
        .map_err(failed)?
        .await
        .map_err(failed)?;
    Ok(ack.sequence)
}

/// NATS TTLs are whole seconds, at least one: round up so an entry never lives shorter
/// than asked.
pub(crate) fn whole_seconds(ttl: Duration) -> Duration {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// This instance's entry and how to keep it alive.
///
/// Every write is revision-checked: it lands only on the revision this instance wrote
/// last (or on nothing, or on the marker of an expired or deleted entry). So an instance
/// that was frozen and whose id another instance took over meanwhile neither overwrites
/// nor, stopping, deletes the other's entry.
#[derive(Debug)]
pub(crate) struct Registration {
    js: jetstream::Context,
    store: kv::Store,
    key: String,
    ttl: Duration,
    entry: std::sync::Mutex<ServiceInstance>,
    health: Arc<Health>,
    /// Set once the entry is deleted: no write may bring it back.
    closed: std::sync::atomic::AtomicBool,
    /// One write at a time (heartbeats and role changes), so that each knows the revision
    /// the one before it left.
    writing: tokio::sync::Mutex<Written>,
    /// The key of the copy in the Python SDK's form, written after each write of the
    /// entry when SDK clients should discover this instance ([`PythonSdk::visible`]).
    ///
    /// [`PythonSdk::visible`]: crate::PythonSdk::visible
    sdk_key: Option<String>,
}

/// What this instance wrote last.
#[derive(Debug, Default)]
struct Written {
    /// The revision of its last write that is known to have landed (0: none).
    revision: u64,
    /// The bytes of its writes since the last that is known to have landed, that one
    /// included: a write that timed out may land later, and the entry is still this
    /// instance's then. (At most [`UNCONFIRMED_KEPT`]; writes are only sent while
    /// connected, so few are ever in doubt.)
    values: Vec<Vec<u8>>,
}

/// How many writes in doubt are remembered.
const UNCONFIRMED_KEPT: usize = 8;

impl Written {
    fn is_ours(&self, revision: u64, value: &[u8]) -> bool {
        revision == self.revision || self.values.iter().any(|ours| ours.as_slice() == value)
    }

    fn sending(&mut self, value: &[u8]) {
        if self.values.len() >= UNCONFIRMED_KEPT {
            self.values.remove(0);
        }
        self.values.push(value.to_vec());
    }

    fn landed(&mut self, revision: u64, value: Vec<u8>) {
        self.revision = revision;
        self.values.clear();
        self.values.push(value);
    }
}

/// Why the registry entry of an instance was not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryWriteError {
    /// Another instance wrote an entry under this instance's id: it took the id over.
    #[error(
        "another instance wrote the registry entry {key}: it took this instance's id over; \
         this instance no longer writes or deletes it (stop it, or give it another id)"
    )]
    TakenOver {
        /// The key.
        key: String,
    },
    /// The write failed (no server, timeout, no bucket, …).
    #[error("cannot write the registry entry {key}: {source}")]
    Failed {
        /// The key.
        key: String,
        /// What failed.
        source: TtlWriteError,
    },
    /// The write was not acknowledged in time.
    #[error("the registry entry {key} was not acknowledged within {after:?}")]
    TimedOut {
        /// The key.
        key: String,
        /// How long it waited.
        after: Duration,
    },
    /// The entry could not be read to resolve a conflicting write.
    #[error("cannot read the registry entry {key}: {source}")]
    Read {
        /// The key.
        key: String,
        /// What failed.
        source: kv::EntryError,
    },
}

impl RegistryWriteError {
    /// The JetStream error this is, for a start that fails on it.
    pub(crate) fn into_jetstream(self) -> JetStreamError {
        match self {
            RegistryWriteError::Failed {
                source: TtlWriteError::Failed(source),
                ..
            } => source,
            RegistryWriteError::Read { key, source } => {
                JetStreamError::from_nats(format!("read the registry entry {key}"), source)
            }
            RegistryWriteError::TimedOut { key, after } => JetStreamError::TimedOut {
                action: format!("write the registry entry {key} (waited {after:?})"),
                source: None,
            },
            other @ (RegistryWriteError::TakenOver { .. } | RegistryWriteError::Failed { .. }) => {
                JetStreamError::Other {
                    action: "register the instance".to_owned(),
                    source: Box::new(other),
                }
            }
        }
    }
}

/// Why an instance may not register under its id.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    /// A live instance (fresh heartbeat, answers its status RPC) has the id.
    #[error("a live instance answers as {0}")]
    InUse(String),
    /// The registry could not be read.
    #[error("cannot read the registry entry {key}: {source}")]
    Read {
        /// The key.
        key: String,
        /// What failed.
        source: kv::EntryError,
    },
}

/// How long a registering instance waits for the holder of its id to answer its status
/// RPC before it takes the id over: a live instance answers within milliseconds.
pub(crate) const CLAIM_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// Checks that no live instance has `instance`'s id: its entry is missing, deleted,
/// expired, stale (heartbeat older than its TTL), or its holder does not answer its status
/// RPC within [`CLAIM_STATUS_TIMEOUT`] (crashed, frozen, cut off) and is taken over.
/// Returns the revision a first write must expect.
pub(crate) async fn claim(
    nats: &async_nats::Client,
    service: &ServiceName,
    instance: &InstanceId,
) -> Result<u64, ClaimError> {
    let js = jetstream::new(nats.clone());
    // No bucket: nothing registered yet (registering creates it).
    let Ok(store) = js.get_key_value(subject::REGISTRY_BUCKET).await else {
        return Ok(0);
    };
    let key = subject::registry_key(service, instance);
    let current = read_entry(&store, &key)
        .await
        .map_err(|source| ClaimError::Read {
            key: key.clone(),
            source,
        })?;
    let Some(current) = current else {
        return Ok(0);
    };
    if current.operation != kv::Operation::Put {
        return Ok(current.revision);
    }
    let holder = ServiceInstance::from_json(&current.value).ok();
    let fresh = holder.as_ref().is_some_and(|holder| {
        let ttl = holder.heartbeat_ttl().unwrap_or(DEFAULT_REGISTRY_TTL);
        !holder.is_stale(ttl, Timestamp::now())
    });
    if fresh && answers_status(nats, service, instance).await {
        return Err(ClaimError::InUse(instance.to_string()));
    }
    tracing::warn!(
        %key,
        fresh,
        "taking over the registry entry of an instance with this id that is gone (it does not answer its status RPC)"
    );
    Ok(current.revision)
}

/// Whether an instance answers the status RPC on the instance subject of `instance`.
async fn answers_status(
    nats: &async_nats::Client,
    service: &ServiceName,
    instance: &InstanceId,
) -> bool {
    let Ok(method) = crate::subject::MethodName::new(crate::runner::STATUS_METHOD) else {
        return false;
    };
    let request = crate::codec::RpcRequest::new(method.as_str(), serde_json::json!({}))
        .with_timeout(CLAIM_STATUS_TIMEOUT.as_secs_f64());
    let Ok(payload) = crate::codec::encode(&request) else {
        return false;
    };
    let subject = subject::rpc_instance(service, instance, &method);
    let asked = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(CLAIM_STATUS_TIMEOUT));
    // Any reply, even an error, means a process serves the id.
    nats.send_request(subject, asked).await.is_ok()
}

/// Whether heartbeats succeed: what the instance reports as its status.
#[derive(Debug, Default)]
pub(crate) struct Health {
    status: AtomicU8,
}

impl Health {
    pub(crate) fn status(&self) -> InstanceStatus {
        match self.status.load(Ordering::Acquire) {
            0 => InstanceStatus::Active,
            _ => InstanceStatus::Unhealthy,
        }
    }

    fn set(&self, status: InstanceStatus) {
        let value = u8::from(status != InstanceStatus::Active);
        if self.status.swap(value, Ordering::AcqRel) != value {
            tracing::info!(?status, "instance status changed");
            crate::metrics::health_changed(status);
        }
    }
}

impl Registration {
    /// Opens the registry and writes the first entry.
    pub(crate) async fn register(
        nats: async_nats::Client,
        entry: ServiceInstance,
        ttl: Duration,
        expected: u64,
        python_visible: bool,
    ) -> Result<Self, JetStreamError> {
        let mut entry = entry;
        entry.set_heartbeat_ttl(whole_seconds(ttl));
        let js = jetstream::new(nats);
        let store = ttl_bucket(&js, subject::REGISTRY_BUCKET).await?;
        let key = subject::registry_key(&entry.service_name, &entry.instance_id);
        let sdk_key = python_visible
            .then(|| subject::python_sdk::registry_key(&entry.service_name, &entry.instance_id));
        let registration = Self {
            js,
            store,
            key,
            ttl,
            entry: std::sync::Mutex::new(entry),
            health: Arc::new(Health::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
            writing: tokio::sync::Mutex::new(Written {
                revision: expected,
                values: Vec::new(),
            }),
            sdk_key,
        };
        registration
            .beat()
            .await
            .map_err(RegistryWriteError::into_jetstream)?;
        Ok(registration)
    }

    pub(crate) fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Updates the entry's sticky-active fields for the next write.
    #[allow(dead_code)] // used by the election
    pub(crate) fn update(&self, change: impl FnOnce(&mut ServiceInstance)) {
        if let Ok(mut entry) = self.entry.lock() {
            change(&mut entry);
        }
    }

    /// Writes the entry now, with a fresh heartbeat time and the status that holds once it
    /// is written, on the revision this instance wrote last.
    pub(crate) async fn beat(&self) -> Result<(), RegistryWriteError> {
        let mut written = self.writing.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let (value, sdk_value) = {
            let Ok(mut entry) = self.entry.lock() else {
                return Ok(()); // a panic while editing the entry: keep the last one
            };
            entry.last_heartbeat = Timestamp::now();
            // Only failed writes make an instance UNHEALTHY, so a write that lands proves it
            // healthy: writing the status of before (UNHEALTHY after an outage) would make
            // discovery skip a serving instance for a whole heartbeat interval.
            entry.status = InstanceStatus::Active;
            (
                entry.to_json(),
                self.sdk_key.is_some().then(|| entry.to_sdk_json()),
            )
        };
        // A write sent while disconnected would wait in the client's buffer and land after
        // the outage, with the heartbeat time of before: fail it now instead.
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            return Err(RegistryWriteError::Failed {
                key: self.key.clone(),
                source: TtlWriteError::Failed(JetStreamError::Other {
                    action: format!("write the registry entry {}", self.key),
                    source: Box::new(NotConnected),
                }),
            });
        }
        written.sending(&value);
        let mut expected = written.revision;
        // A conflict is resolved by reading the entry once; a second one is another
        // writer's race, reported as such.
        for _ in 0..2 {
            let put = put_with_ttl(
                &self.js,
                subject::REGISTRY_BUCKET,
                &self.key,
                value.clone(),
                self.ttl,
                Some(expected),
            )
            .await;
            match put {
                Ok(revision) => {
                    written.landed(revision, value);
                    // What the entry now says holds from now on, whoever wrote it.
                    self.health.set(InstanceStatus::Active);
                    if let (Some(key), Some(value)) = (&self.sdk_key, sdk_value) {
                        self.write_sdk_copy(key, value).await;
                    }
                    return Ok(());
                }
                Err(TtlWriteError::Conflict) => {
                    expected = self.own_revision(&written).await?;
                }
                Err(source) => {
                    return Err(RegistryWriteError::Failed {
                        key: self.key.clone(),
                        source,
                    });
                }
            }
        }
        Err(RegistryWriteError::TakenOver {
            key: self.key.clone(),
        })
    }

    /// Writes the copy in the SDK's form, with the entry's TTL: it expires with the
    /// entry. Not revision-checked (the SDK's own writes are plain puts), and a failure
    /// is only logged: the entry that counts for Aegis is written.
    async fn write_sdk_copy(&self, key: &str, value: Vec<u8>) {
        let written = put_with_ttl(
            &self.js,
            subject::REGISTRY_BUCKET,
            key,
            value,
            self.ttl,
            None,
        )
        .await;
        if let Err(err) = written {
            tracing::warn!(%key, %err, "cannot write the Python SDK copy of the registry entry");
        }
    }

    /// The service name, for metrics (read on rare paths only).
    fn service(&self) -> String {
        self.entry
            .lock()
            .map(|entry| entry.service_name.to_string())
            .unwrap_or_default()
    }

    /// The entry under this instance's key as the bucket holds it now.
    async fn current_entry(&self) -> Result<Option<kv::Entry>, RegistryWriteError> {
        read_entry(&self.store, &self.key)
            .await
            .map_err(|source| RegistryWriteError::Read {
                key: self.key.clone(),
                source,
            })
    }

    /// The revision a write may replace after a conflict: the entry's, when it is gone
    /// (expired, deleted, a re-created bucket) or holds what this instance wrote last (a
    /// write that timed out and landed after all); else the id was taken over.
    async fn own_revision(&self, written: &Written) -> Result<u64, RegistryWriteError> {
        let current = self.current_entry().await?;
        if current
            .as_ref()
            .is_none_or(|entry| entry.operation != kv::Operation::Put)
        {
            // The entry is gone: the write that follows re-creates it.
            crate::metrics::registration_recreated(&self.service());
        }
        match current {
            None => Ok(0),
            Some(entry) if entry.operation != kv::Operation::Put => Ok(entry.revision),
            Some(entry) if written.is_ours(entry.revision, &entry.value) => Ok(entry.revision),
            Some(_) => Err(RegistryWriteError::TakenOver {
                key: self.key.clone(),
            }),
        }
    }

    /// Refreshes the entry every `interval` until the task is dropped. A failed write is
    /// retried with backoff and jitter; after three in a row the instance reports itself
    /// UNHEALTHY, and ACTIVE again once a write succeeds. It never stops trying.
    pub(crate) async fn heartbeats(self: Arc<Self>, interval: Duration) {
        let mut failures: u32 = 0;
        let mut beats: u64 = 0;
        loop {
            let delay = if failures == 0 {
                beat_delay(beats, interval)
            } else {
                retry_delay(failures, interval)
            };
            beats += 1;
            tokio::time::sleep(delay).await;
            // A write waits for its acknowledgement half an interval (5 s by default, the
            // client's own timeout), at least a second (a write may take three round trips,
            // and a server that just restarted is slow): with the server gone, longer waits
            // would space failures further apart than heartbeats, and an outage would take
            // many intervals to be noticed.
            let patience = (interval / 2).max(MIN_WRITE_PATIENCE);
            let written = tokio::time::timeout(patience, self.beat())
                .await
                .unwrap_or_else(|_| {
                    Err(RegistryWriteError::TimedOut {
                        key: self.key.clone(),
                        after: patience,
                    })
                });
            match written {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(key = %self.key, failures, "heartbeat works again");
                    }
                    failures = 0;
                    self.health.set(InstanceStatus::Active);
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(key = %self.key, failures, %err, "heartbeat failed");
                    crate::metrics::heartbeat_failed(&self.service());
                    if failures >= UNHEALTHY_AFTER_FAILURES {
                        self.health.set(InstanceStatus::Unhealthy);
                    }
                }
            }
        }
    }

    /// Deletes the entry: the instance is gone at once for everyone watching. Only an
    /// entry this instance wrote is deleted, never one of an instance that took its id
    /// over.
    pub(crate) async fn deregister(&self) -> Result<(), RegistryWriteError> {
        let written = self.writing.lock().await;
        self.closed.store(true, Ordering::Release);
        if let Some(key) = &self.sdk_key
            && let Err(err) = self.store.delete(key).await
        {
            tracing::debug!(%key, %err, "Python SDK copy of the registry entry not deleted; it expires after its TTL");
        }
        let current = self.current_entry().await?;
        let revision = match current {
            None => return Ok(()),
            Some(entry) if entry.operation != kv::Operation::Put => return Ok(()),
            Some(entry) if written.is_ours(entry.revision, &entry.value) => entry.revision,
            Some(_) => {
                return Err(RegistryWriteError::TakenOver {
                    key: self.key.clone(),
                });
            }
        };
        // Revision-checked: a write of another instance between the read and the delete
        // is not deleted either.
        self.store
            .delete_expect_revision(&self.key, Some(revision))
            .await
            .map_err(|e| RegistryWriteError::Failed {
                key: self.key.clone(),
                source: TtlWriteError::Failed(JetStreamError::from_nats(
                    format!("delete the registry entry {}", self.key),
                    e,
                )),
            })
    }
}

/// The wait before heartbeat number `beats` (0: the first after registering). Instances
/// started together (a deploy, a process with many runners) would beat in step, every
/// write of a whole fleet in the same instant: the first beat comes after a random part
/// of the interval, and each later one after 90–100 % of it, so beats spread over the
/// interval and stay spread. The entry's TTL is several intervals: a shorter wait never
/// lets it expire.
fn beat_delay(beats: u64, interval: Duration) -> Duration {
    if beats == 0 {
        interval.mul_f64(fastrand::f64().max(0.01))
    } else {
        jittered(interval, 0.1)
    }
}

/// How many times a read of the registry that no replica answered is made in all (50 ms,
/// then 100 ms, … apart: 2.25 s over ten).
const DIRECT_READ_ATTEMPTS: u32 = 10;

/// The entry under `key`. A replica that joined a moment ago answers direct reads only
/// once it caught up (a fresh cluster, a restarted node): a read nobody answered is made
/// again shortly, up to [`DIRECT_READ_ATTEMPTS`] times.
async fn read_entry(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, kv::EntryError> {
    let mut attempt = 1;
    loop {
        match store.entry(key).await {
            Err(err) if attempt < DIRECT_READ_ATTEMPTS && no_direct_responder(&err) => {
                tracing::debug!(key, attempt, "no replica answers direct reads yet");
                tokio::time::sleep(Duration::from_millis(50) * attempt).await;
                attempt += 1;
            }
            read => return read,
        }
    }
}

/// Whether `error` is a direct read that no replica of the stream answered: the stream is
/// there (it was opened), its replicas are not serving direct reads yet.
fn no_direct_responder(error: &kv::EntryError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(direct) = error.downcast_ref::<jetstream::stream::DirectGetError>()
            && let jetstream::stream::DirectGetErrorKind::ErrorResponse(status, _) = direct.kind()
            && status == async_nats::StatusCode::NO_RESPONDERS
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Backoff after `failures` failed heartbeats: 250 ms doubling, capped at the interval,
/// with full jitter so many instances that lost the server do not retry in step.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let schedule = Exponential::doubling(Duration::from_millis(250), interval);
    jittered(schedule.after(failures.saturating_add(1)), 0.5)
}

/// A fresh entry for an instance of `service` starting now.
pub(crate) fn initial_entry(
    service: ServiceName,
    instance: InstanceId,
    version: &str,
    group: Option<crate::subject::GroupId>,
) -> Result<ServiceInstance, crate::instance::InvalidVersion> {
    let mut entry = ServiceInstance::new(service, instance, version)?;
    entry.metadata.insert(
        "start_time".into(),
        serde_json::Value::String(Timestamp::now().to_string()),
    );
    if let Some(group) = group {
        entry.sticky_active_group = Some(group);
        entry.sticky_active_status = Some(crate::instance::StickyActiveStatus::Standby);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn an_entry_is_ours_at_our_revision_or_with_a_value_we_sent_since() {
        let mut written = Written::default();
        written.sending(b"first");
        written.landed(7, b"first".to_vec());
        assert!(written.is_ours(7, b"anything"), "our revision");
        assert!(written.is_ours(9, b"first"), "our value, written again");
        // Writes that timed out may land later: still ours.
        written.sending(b"second");
        written.sending(b"third");
        assert!(written.is_ours(8, b"second") && written.is_ours(8, b"third"));
        assert!(!written.is_ours(8, b"another instance's"), "taken over");
        // Only the last few writes in doubt are remembered.
        for i in 0..20u8 {
            written.sending(&[i]);
        }
        assert!(!written.is_ours(8, b"second"));
        assert!(written.is_ours(8, &[19]));
        written.landed(30, vec![19]);
        assert!(!written.is_ours(31, &[18]), "a landed write ends the doubt");
    }

    #[test]
    fn heartbeats_are_spread_over_the_interval_and_never_later_than_it() {
        let interval = Duration::from_secs(10);
        let firsts: Vec<Duration> = (0..200).map(|_| beat_delay(0, interval)).collect();
        assert!(firsts.iter().all(|d| *d > Duration::ZERO && *d <= interval));
        // Spread over the whole interval, not bunched: some in each half.
        assert!(firsts.iter().any(|d| *d < interval / 2));
        assert!(firsts.iter().any(|d| *d > interval / 2));
        for beats in 1..200 {
            let delay = beat_delay(beats, interval);
            assert!(
                delay >= interval.mul_f64(0.9) && delay <= interval,
                "{delay:?}"
            );
        }
        let later: std::collections::BTreeSet<Duration> =
            (1..50).map(|beats| beat_delay(beats, interval)).collect();
        assert!(later.len() > 40, "later beats are jittered too");
    }

    #[test]
    fn retry_delays_grow_are_capped_and_jittered() {
        let interval = Duration::from_secs(10);
        for failures in 1..20 {
            let delay = retry_delay(failures, interval);
            let base = Duration::from_millis(250)
                .saturating_mul(1 << failures.min(16))
                .min(interval);
            assert!(delay >= base / 2 && delay <= base, "{failures}: {delay:?}");
        }
        assert!(retry_delay(30, interval) <= interval);
    }
}
