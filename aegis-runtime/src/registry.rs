//! The registry: one entry per live instance in the KV bucket `service_registry`, written
//! with a per-message TTL so that it really expires when its instance dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};

use crate::codec::Timestamp;
use crate::instance::{InstanceStatus, ServiceInstance};
use crate::subject::{self, InstanceId, ServiceName};

/// Default time an entry lives without a heartbeat.
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(30);
/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Consecutive failed heartbeats after which an instance reports itself UNHEALTHY.
pub const UNHEALTHY_AFTER_FAILURES: u32 = 3;
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
pub(crate) async fn ttl_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, String> {
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
    match js.create_key_value(config.clone()).await {
        Ok(store) => Ok(store),
        Err(create_error) => match js.get_key_value(bucket).await {
            Ok(store) => Ok(store),
            // A cluster with fewer JetStream servers than replicas cannot place them.
            Err(_) if clustered => {
                tracing::warn!(%bucket, %create_error, "cannot create the bucket with {CLUSTER_BUCKET_REPLICAS} replicas; creating it with one, which the loss of its server takes down");
                let single = kv::Config {
                    num_replicas: 1,
                    ..config
                };
                js.create_key_value(single).await.map_err(|single_error| {
                    format!("cannot create the KV bucket {bucket} ({create_error}; with one replica: {single_error})")
                })
            }
            Err(get_error) => Err(format!(
                "cannot create ({create_error}) nor open ({get_error}) the KV bucket {bucket}"
            )),
        },
    }
}

/// Why a write with a time to live failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TtlWriteError {
    /// The key was not at the expected revision: someone else wrote it first.
    Conflict,
    /// Anything else (no server, timeout, …).
    Failed(String),
}

impl std::fmt::Display for TtlWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TtlWriteError::Conflict => f.write_str("the key changed (wrong last sequence)"),
            TtlWriteError::Failed(err) => f.write_str(err),
        }
    }
}

/// Writes `value` under `key` with a time to live, by publishing to the bucket's subject
/// with a `Nats-TTL` header (the KV API has no put with TTL). With `expected`, the write
/// happens only if the key's last revision is that one (0: the key has never been
/// written): a create or a compare-and-set. Returns the new revision.
pub(crate) async fn put_with_ttl(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: Vec<u8>,
    ttl: Duration,
    expected: Option<u64>,
) -> Result<u64, TtlWriteError> {
    let mut message = PublishMessage::build()
        .payload(value.into())
        .ttl(whole_seconds(ttl));
    if let Some(expected) = expected {
        message = message.expected_last_subject_sequence(expected);
    }
    let failed = |e: &dyn std::fmt::Display| TtlWriteError::Failed(e.to_string());
    let ack = js
        .send_publish(format!("$KV.{bucket}.{key}"), message)
        .await
        .map_err(|e| failed(&e))?
        .await
        .map_err(|e| match e.kind() {
            jetstream::context::PublishErrorKind::WrongLastSequence => TtlWriteError::Conflict,
            _ => failed(&e),
        })?;
    Ok(ack.sequence)
}

/// NATS TTLs are whole seconds, at least one: round up so an entry never lives shorter
/// than asked.
pub(crate) fn whole_seconds(ttl: Duration) -> Duration {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// This instance's entry and how to keep it alive.
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
        }
    }
}

impl Registration {
    /// Opens the registry and writes the first entry.
    pub(crate) async fn register(
        nats: async_nats::Client,
        entry: ServiceInstance,
        ttl: Duration,
    ) -> Result<Self, String> {
        let mut entry = entry;
        entry.set_heartbeat_ttl(whole_seconds(ttl));
        let js = jetstream::new(nats);
        let store = ttl_bucket(&js, subject::REGISTRY_BUCKET).await?;
        let key = subject::registry_key(&entry.service_name, &entry.instance_id);
        let registration = Self {
            js,
            store,
            key,
            ttl,
            entry: std::sync::Mutex::new(entry),
            health: Arc::new(Health::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
        };
        registration.beat().await?;
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

    /// Writes the entry now, with a fresh heartbeat time and this instance's status.
    pub(crate) async fn beat(&self) -> Result<(), String> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let value = {
            let Ok(mut entry) = self.entry.lock() else {
                return Err("registry entry lock poisoned".into());
            };
            entry.last_heartbeat = Timestamp::now();
            entry.status = self.health.status();
            entry.to_json()
        };
        put_with_ttl(
            &self.js,
            subject::REGISTRY_BUCKET,
            &self.key,
            value,
            self.ttl,
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Refreshes the entry every `interval` until the task is dropped. A failed write is
    /// retried with backoff and jitter; after three in a row the instance reports itself
    /// UNHEALTHY, and ACTIVE again once a write succeeds. It never stops trying.
    pub(crate) async fn heartbeats(self: Arc<Self>, interval: Duration) {
        let mut failures: u32 = 0;
        loop {
            let delay = if failures == 0 {
                interval
            } else {
                retry_delay(failures, interval)
            };
            tokio::time::sleep(delay).await;
            match self.beat().await {
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
                    if failures >= UNHEALTHY_AFTER_FAILURES {
                        self.health.set(InstanceStatus::Unhealthy);
                    }
                }
            }
        }
    }

    /// Deletes the entry: the instance is gone at once for everyone watching.
    pub(crate) async fn deregister(&self) -> Result<(), String> {
        self.closed.store(true, Ordering::Release);
        self.store
            .delete(&self.key)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Backoff after `failures` failed heartbeats: 250 ms doubling, capped at the interval,
/// with full jitter so many instances that lost the server do not retry in step.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(16))
        .min(interval);
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// A fresh entry for an instance of `service` starting now.
pub(crate) fn initial_entry(
    service: ServiceName,
    instance: InstanceId,
    version: &str,
    group: Option<crate::subject::GroupId>,
) -> Result<ServiceInstance, String> {
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
