//! Reading the registry bucket: its current entries for one service, then its changes.
//!
//! `kv::Store::watch_with_history` cannot tell an empty service from one whose entries have
//! not arrived yet, so this opens the same ordered consumer itself and keeps the count of
//! entries pending at creation.

use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, ErrorCode, consumer};
use std::time::Duration;

use futures_util::StreamExt;

use crate::JetStreamError;
use crate::instance::{EntryOrigin, ServiceInstance};
use crate::subject::{self, ServiceName, python_sdk};

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
    Removed(EntryKey),
}

/// Which entry of a service a registry key holds: an instance may have one in each form
/// (an Aegis instance that is [visible](crate::PythonSdk::visible) to the Python SDK).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryKey {
    /// The key's form.
    pub(super) origin: EntryOrigin,
    /// The instance it names.
    pub(super) id: String,
}

impl EntryKey {
    /// The key of `entry`.
    pub(super) fn of(entry: &ServiceInstance) -> Self {
        Self {
            origin: entry.origin,
            id: entry.instance_id.to_string(),
        }
    }

    /// The entry of `service` the registry key `key` holds (Aegis's form or either of
    /// the SDK's); `None` for another service's key or another kind of key.
    fn parse(service: &ServiceName, key: &str) -> Option<Self> {
        if let Some((of, id)) = subject::parse_registry_key(key) {
            return (of == *service).then(|| Self {
                origin: EntryOrigin::Aegis,
                id: id.to_string(),
            });
        }
        python_sdk::instance_of(service, key).map(|id| Self {
            origin: EntryOrigin::PythonSdk,
            id: id.to_owned(),
        })
    }
}

/// The key filters that read every entry of `service`: its Aegis keys, and every
/// single-token key (the SDK's keys have no dots, so they cannot be filtered by service;
/// a deployment without SDK instances has none).
fn service_filters(service: &ServiceName) -> Vec<String> {
    vec![
        subject::kv_key(
            subject::REGISTRY_BUCKET,
            &subject::registry_service_filter(service),
        ),
        subject::kv_key(subject::REGISTRY_BUCKET, "*"),
    ]
}

/// The registry entries of one service: the current ones first, then every change.
pub(super) struct RegistryFeed {
    service: ServiceName,
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
        // No stream-info round trip first: a missing bucket shows as the consumer's error.
        let stream = js
            .get_stream_no_info(format!("KV_{}", subject::REGISTRY_BUCKET))
            .await
            .map_err(|e| JetStreamError::from_nats("open the registry bucket", e))?;
        let created = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: nats.new_inbox(),
                filter_subjects: service_filters(service),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                replay_policy: consumer::ReplayPolicy::Instant,
                description: Some(format!("aegis discovery of {service}")),
                ..Default::default()
            })
            .await;
        let consumer = match created {
            Ok(consumer) => consumer,
            Err(err) => {
                if let ConsumerErrorKind::JetStream(error) = err.kind()
                    && error.error_code() == ErrorCode::STREAM_NOT_FOUND
                {
                    return Ok(None);
                }
                return Err(FeedError::JetStream(JetStreamError::from_nats(
                    "watch the registry",
                    err,
                )));
            }
        };
        let initial = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| JetStreamError::from_nats("watch the registry", e))?;
        Ok(Some(Self {
            service: service.clone(),
            messages,
            initial,
        }))
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
            if let Some(change) = change_of(&self.service, &message.message) {
                return Ok(change);
            }
        }
    }

    /// Reads the current entries of `service` once: with one batched direct read when the
    /// server can answer so, else through a feed.
    pub(super) async fn snapshot(
        nats: &async_nats::Client,
        service: &ServiceName,
        sizes: &BatchHint,
    ) -> Result<Vec<ServiceInstance>, FeedError> {
        let mut entries = std::collections::BTreeMap::new();
        let mut apply = |change| match change {
            Change::Put(entry) => {
                entries.insert(EntryKey::of(&entry), *entry);
            }
            Change::Removed(key) => {
                entries.remove(&key);
            }
        };
        let batched = match sizes.fits(service) {
            true => batch_read(nats, service).await,
            false => None,
        };
        if let Some(changes) = batched {
            changes.into_iter().for_each(&mut apply);
        } else {
            let Some(mut feed) = Self::open(nats, service).await? else {
                return Err(FeedError::NoBucket);
            };
            sizes.learn(service, feed.initial);
            while feed.initial > 0 {
                apply(feed.next().await?);
            }
        }
        // An instance with entries in both forms is listed once, as its Aegis entry.
        let aegis: std::collections::BTreeSet<String> = entries
            .keys()
            .filter(|key| key.origin == EntryOrigin::Aegis)
            .map(|key| key.id.clone())
            .collect();
        Ok(entries
            .into_iter()
            .filter(|(key, _)| key.origin == EntryOrigin::Aegis || !aegis.contains(&key.id))
            .map(|(_, entry)| entry)
            .collect())
    }
}

/// The most keys one batched direct read asks for. Beyond about that many, one
/// server-side batch is slower than a feed (measured here: 10 keys 0.5 ms against 1.0 ms,
/// 1,000 keys 14 ms against 10 ms), so a bigger service is read through a feed.
const BATCH_READ_MAX: usize = 128;
/// Which services were too big for a batched read when last read, so the next read of
/// them goes to a feed at once instead of asking for a batch first (a round trip, 1–2 ms
/// with 1,000 entries). A service that shrank is tried in a batch again after its next
/// read through a feed.
#[derive(Debug, Default)]
pub(super) struct BatchHint {
    too_big: std::sync::Mutex<std::collections::BTreeSet<ServiceName>>,
}

impl BatchHint {
    fn fits(&self, service: &ServiceName) -> bool {
        self.too_big
            .lock()
            .map_or(true, |too_big| !too_big.contains(service))
    }

    fn learn(&self, service: &ServiceName, entries: u64) {
        if let Ok(mut too_big) = self.too_big.lock() {
            if entries > BATCH_READ_MAX as u64 {
                too_big.insert(service.clone());
            } else {
                too_big.remove(service);
            }
        }
    }
}

/// How long a batched direct read may take before the feed is used instead.
const BATCH_READ_WITHIN: Duration = Duration::from_secs(2);
/// How long its first reply may take. A request the user may not send (a permission set
/// without `$JS.API.DIRECT.GET.{stream}`) is dropped by the server without an answer, so
/// this is how long such a user waits before the feed, on every one-off read.
const BATCH_FIRST_REPLY_WITHIN: Duration = Duration::from_millis(250);

/// The last entry of each key of `service`, with one batched direct read of the bucket's
/// stream (ADR-31 `multi_last`, nats-server 2.11+): one request and its replies, no
/// consumer made and dropped. `None` when the server does not answer so (more than
/// [`BATCH_READ_MAX`] keys, a bucket without direct reads, an older server, no bucket):
/// the caller then reads through a feed, which also tells a missing bucket apart.
async fn batch_read(nats: &async_nats::Client, service: &ServiceName) -> Option<Vec<Change>> {
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.ok()?;
    let request = serde_json::json!({
        "multi_last": service_filters(service),
        "batch": BATCH_READ_MAX,
    });
    nats.publish_with_reply(
        subject::direct_get(&format!("KV_{}", subject::REGISTRY_BUCKET)),
        inbox,
        request.to_string().into(),
    )
    .await
    .ok()?;
    let mut changes = Vec::new();
    let sent = tokio::time::Instant::now();
    let deadline = sent + BATCH_READ_WITHIN;
    let mut first = true;
    loop {
        let within = if first {
            sent + BATCH_FIRST_REPLY_WITHIN
        } else {
            deadline
        };
        first = false;
        let reply = tokio::time::timeout_at(within, replies.next())
            .await
            .ok()??;
        match reply.status.map(|status| status.as_u16()) {
            None => {
                // Each reply says how many are still to come: a service too big for one
                // batch is known from the first, and read through a feed at once.
                if changes.is_empty() && pending_after(&reply) >= BATCH_READ_MAX {
                    return None;
                }
                let key = reply
                    .headers
                    .as_ref()?
                    .get("Nats-Subject")?
                    .as_str()
                    .strip_prefix(&subject::kv_bucket_prefix(subject::REGISTRY_BUCKET))?
                    .to_owned();
                changes.extend(change_of_entry(
                    service,
                    &key,
                    reply.headers.as_ref(),
                    &reply.payload,
                ));
            }
            // End of the batch: all of them, unless more are pending.
            Some(204) => return (pending_after(&reply) == 0).then_some(changes),
            // No key of the service at all.
            Some(404) => return Some(Vec::new()),
            // Too many keys, no direct reads, no stream, anything else: use the feed.
            Some(status) => {
                tracing::debug!(
                    status,
                    "a batched read of the registry was refused; reading through a feed"
                );
                return None;
            }
        }
    }
}

/// How many entries a batched direct read still has to send after `reply`
/// (`Nats-Num-Pending`; none said counts as none).
fn pending_after(reply: &async_nats::Message) -> usize {
    reply
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Num-Pending"))
        .and_then(|pending| pending.as_str().parse().ok())
        .unwrap_or(0)
}

/// The change a registry message stands for, if it is about an entry of `service`;
/// `None` for another service's entry, or a value that is not an entry (logged: it does
/// not stop discovery of the others).
fn change_of(service: &ServiceName, message: &async_nats::Message) -> Option<Change> {
    let key = message
        .subject
        .strip_prefix(&subject::kv_bucket_prefix(subject::REGISTRY_BUCKET))
        .unwrap_or(&message.subject);
    change_of_entry(service, key, message.headers.as_ref(), &message.payload)
}

/// The change the value stored under `key`, with `headers`, stands for (see
/// [`change_of`]).
fn change_of_entry(
    service: &ServiceName,
    key: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Option<Change> {
    let entry_key = EntryKey::parse(service, key)?;
    let removed = headers.is_some_and(|headers| {
        // KV deletes and purges carry KV-Operation; TTL expiry markers Nats-Marker-Reason.
        headers.get("KV-Operation").is_some() || headers.get("Nats-Marker-Reason").is_some()
    });
    if removed {
        return Some(Change::Removed(entry_key));
    }
    match ServiceInstance::from_json(payload) {
        // The value must say what its key says: an SDK key is ambiguous when names hold
        // `_` (`service-instances_a_b_c`), and a removal finds the entry by its key.
        Ok(entry)
            if entry.service_name == *service && entry.instance_id.as_str() == entry_key.id =>
        {
            let mut entry = entry;
            entry.origin = entry_key.origin;
            Some(Change::Put(Box::new(entry)))
        }
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(%key, %err, "ignoring a registry entry that does not decode");
            None
        }
    }
}
