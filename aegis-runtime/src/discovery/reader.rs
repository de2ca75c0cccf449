//! Reading the registry bucket: its current entries for one service, then its changes.
//!
//! `kv::Store::watch_with_history` cannot tell an empty service from one whose entries have
//! not arrived yet, so this opens the same ordered consumer itself and keeps the count of
//! entries pending at creation.

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode, consumer};
use futures_util::StreamExt;

use crate::JetStreamError;
use crate::instance::ServiceInstance;
use crate::subject::{self, ServiceName};

/// Why the registry cannot be read, or stopped being read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FeedError {
    /// Nothing to read: distinct from an empty service, so that a cache can keep serving
    /// what it knew when the bucket was deleted.
    #[error(
        "the registry bucket service_registry does not exist (no instance registered yet, or it was deleted)"
    )]
    NoBucket,
    /// The bucket or its consumer could not be opened.
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    /// The watch failed after it was opened.
    #[error("registry watch failed: {0}")]
    Watch(#[source] consumer::push::OrderedError),
    /// The watch ended (the connection closed).
    #[error("registry watch ended")]
    Ended,
}

impl FeedError {
    /// The public error: a JetStream failure as the [`JetStreamError`] itself, so that
    /// callers can downcast to it.
    pub(super) fn into_registry_error(self) -> super::RegistryError {
        match self {
            FeedError::JetStream(err) => super::RegistryError::new(err),
            other => super::RegistryError::new(other),
        }
    }
}

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
    ) -> Result<Option<Self>, FeedError> {
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
                return Err(FeedError::JetStream(JetStreamError::from_nats(
                    format!("open the registry bucket {}", subject::REGISTRY_BUCKET),
                    err,
                )));
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
            .map_err(|e| JetStreamError::from_nats("watch the registry", e))?;
        let initial = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| JetStreamError::from_nats("watch the registry", e))?;
        Ok(Some(Self { messages, initial }))
    }

    /// The next change, or the error that ended the feed.
    pub(super) async fn next(&mut self) -> Result<Change, FeedError> {
        loop {
            let message = match self.messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(err)) => return Err(FeedError::Watch(err)),
                None => return Err(FeedError::Ended),
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
    ) -> Result<Vec<ServiceInstance>, FeedError> {
        let Some(mut feed) = Self::open(nats, service).await? else {
            return Err(FeedError::NoBucket);
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
