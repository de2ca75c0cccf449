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

/// Gets the bucket `bucket`, creating it when missing: history 1 (nothing older can come
/// back) and limit markers (per-message TTL on, expiry visible to watchers). A bucket made
/// by another instance, or by the Python SDK, is used as it is.
pub(crate) async fn ttl_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, String> {
    let config = kv::Config {
        bucket: bucket.to_owned(),
        history: 1,
        limit_markers: Some(LIMIT_MARKER_TTL),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(create_error) => js.get_key_value(bucket).await.map_err(|get_error| {
            format!("cannot create ({create_error}) nor open ({get_error}) the KV bucket {bucket}")
        }),
    }
}

/// Why a write with a time to live failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TtlWriteError {
    /// The key was not at the expected revision: someone else wrote it first.
    Conflict,
    /// The bucket does not exist (nothing stores its subjects), even after re-creating it.
    NoBucket,
    /// Anything else (no server, timeout, …).
    Failed(String),
}

impl std::fmt::Display for TtlWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TtlWriteError::Conflict => f.write_str("the key changed (wrong last sequence)"),
            TtlWriteError::NoBucket => f.write_str("the KV bucket does not exist"),
            TtlWriteError::Failed(err) => f.write_str(err),
        }
    }
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
            ttl_bucket(js, bucket)
                .await
                .map_err(TtlWriteError::Failed)?;
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
    let failed = |e: &jetstream::context::PublishError| match e.kind() {
        jetstream::context::PublishErrorKind::WrongLastSequence => TtlWriteError::Conflict,
        jetstream::context::PublishErrorKind::StreamNotFound => TtlWriteError::NoBucket,
        _ => TtlWriteError::Failed(e.to_string()),
    };
    let ack = js
        .send_publish(format!("$KV.{bucket}.{key}"), message)
        .await
        .map_err(|e| failed(&e))?
        .await
        .map_err(|e| failed(&e))?;
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

    /// The status an entry must carry: the one that holds once it is written. Only failed
    /// writes make an instance UNHEALTHY, so a write that lands proves it healthy again;
    /// writing the status of before (UNHEALTHY after an outage) would make discovery skip
    /// a serving instance for a whole heartbeat interval.
    fn status_once_written(&self) -> InstanceStatus {
        InstanceStatus::Active
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

    /// Writes the entry now, with a fresh heartbeat time and the status that holds once it
    /// is written.
    pub(crate) async fn beat(&self) -> Result<(), String> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let value = {
            let Ok(mut entry) = self.entry.lock() else {
                return Err("registry entry lock poisoned".into());
            };
            entry.last_heartbeat = Timestamp::now();
            entry.status = self.health.status_once_written();
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
            // A write waits for its acknowledgement half an interval (5 s by default, the
            // client's own timeout): with the server gone, longer waits would space failures
            // further apart than heartbeats, and an outage would take many intervals to be
            // noticed.
            let patience = interval / 2;
            let written = tokio::time::timeout(patience, self.beat())
                .await
                .unwrap_or_else(|_| Err(format!("no acknowledgement within {patience:?}")));
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
