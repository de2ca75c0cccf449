//! Reading the registry bucket: its current entries for one service, then its changes.
//!
//! `kv::Store::watch_with_history` cannot tell an empty service from one whose entries have
//! not arrived yet, so this opens the same ordered consumer itself and keeps the count of
//! entries pending at creation.

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode, consumer};
use futures_util::StreamExt;

use crate::instance::ServiceInstance;
use crate::subject::{self, ServiceName};

/// Why there is nothing to read: distinct from an empty service, so that a cache can keep
/// serving what it knew when the bucket was deleted.
pub(super) const NO_BUCKET: &str = "the registry bucket service_registry does not exist (no instance registered yet, or it was deleted)";

/// One change to an entry of the registry.
#[derive(Debug)]
pub(super) enum Change {
    /// The entry of an instance was written.
    Put(Box<ServiceInstance>),
    /// The entry under this key was deleted, purged or expired.
    Removed(String),
}

/// The registry entries of one service: the current ones first, then every change.
pub(super) struct RegistryFeed {
    messages: consumer::push::Ordered,
    /// Entries still to come before the feed has caught up with the bucket.
    pub(super) initial: u64,
}

impl RegistryFeed {
    /// Opens the feed of `service` (the last entry per key, then live changes); `None`
    /// when the registry bucket does not exist (no instance ever registered).
    pub(super) async fn open(
        nats: &async_nats::Client,
        service: &ServiceName,
    ) -> Result<Option<Self>, String> {
        let js = jetstream::new(nats.clone());
        let stream = match js
            .get_stream(format!("KV_{}", subject::REGISTRY_BUCKET))
            .await
        {
            Ok(stream) => stream,
            Err(err) => {
                if let GetStreamErrorKind::JetStream(error) = err.kind()
                    && error.error_code() == ErrorCode::STREAM_NOT_FOUND
                {
                    return Ok(None);
                }
                return Err(format!(
                    "registry bucket {}: {err}",
                    subject::REGISTRY_BUCKET
                ));
            }
        };
        let consumer = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: nats.new_inbox(),
                filter_subject: subject::kv_key(
                    subject::REGISTRY_BUCKET,
                    &subject::registry_service_filter(service),
                ),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                replay_policy: consumer::ReplayPolicy::Instant,
                description: Some(format!("aegis discovery of {service}")),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot watch the registry: {e}"))?;
        let initial = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("cannot watch the registry: {e}"))?;
        Ok(Some(Self { messages, initial }))
    }

    /// The next change, or the error that ended the feed.
    pub(super) async fn next(&mut self) -> Result<Change, String> {
        loop {
            let message = match self.messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(err)) => return Err(format!("registry watch failed: {err}")),
                None => return Err("registry watch ended".into()),
            };
            self.initial = self.initial.saturating_sub(1);
            if let Some(change) = change_of(&message.message) {
                return Ok(change);
            }
        }
    }

    /// Reads the current entries of `service` once.
    pub(super) async fn snapshot(
        nats: &async_nats::Client,
        service: &ServiceName,
    ) -> Result<Vec<ServiceInstance>, String> {
        let Some(mut feed) = Self::open(nats, service).await? else {
            return Err(NO_BUCKET.into());
        };
        let mut entries = std::collections::BTreeMap::new();
        while feed.initial > 0 {
            match feed.next().await? {
                Change::Put(entry) => {
                    entries.insert(entry.instance_id.to_string(), *entry);
                }
                Change::Removed(key) => {
                    entries.remove(instance_of_key(&key));
                }
            }
        }
        Ok(entries.into_values().collect())
    }
}

/// The change a registry message stands for; `None` for a value that is not an entry
/// (logged: it does not stop discovery of the others).
fn change_of(message: &async_nats::Message) -> Option<Change> {
    let key = message
        .subject
        .strip_prefix(&subject::kv_bucket_prefix(subject::REGISTRY_BUCKET))
        .unwrap_or(&message.subject)
        .to_owned();
    let removed = message.headers.as_ref().is_some_and(|headers| {
        // KV deletes and purges carry KV-Operation; TTL expiry markers Nats-Marker-Reason.
        headers.get("KV-Operation").is_some() || headers.get("Nats-Marker-Reason").is_some()
    });
    if removed {
        return Some(Change::Removed(key));
    }
    match ServiceInstance::from_json(&message.payload) {
        Ok(entry) => Some(Change::Put(Box::new(entry))),
        Err(err) => {
            tracing::warn!(%key, %err, "ignoring a registry entry that does not decode");
            None
        }
    }
}

/// The instance id in a registry key `service-instances.{service}.{instance}`.
pub(super) fn instance_of_key(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
