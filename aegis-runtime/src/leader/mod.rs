//! Following the leader of a sticky-active group: a live watch of its election key.
//!
//! Clients send exclusive calls straight to the leader this watch shows, switch at once
//! when it changes, and, when no leader is known, wait for the next leader event (bounded
//! by the call's deadline) instead of sleeping a backoff. Instances use it too: an
//! exclusive call that reaches an instance that is not the leader is forwarded to the
//! leader it shows.
//!
//! One watch per (connection, service, group), shared by everyone who asks on that
//! connection ([`LeaderWatch::shared`]); it ends when the last holder drops it.
//!
//! ```no_run
//! use aegis_runtime::leader::LeaderWatch;
//! use aegis_runtime::subject::{GroupId, ServiceName};
//!
//! # async fn run(nats: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let watch = LeaderWatch::shared(&nats, &ServiceName::new("order-processor")?, &GroupId::default());
//! if let Some(leader) = watch.leader(std::time::Duration::from_secs(1)).await? {
//!     println!("{} leads under term {:?}", leader.instance_id, leader.term);
//! }
//! # Ok(())
//! # }
//! ```

mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use crate::backoff::{Backoff, Exponential};
use crate::codec;
use crate::election::LeaderRecord;
use crate::subject::{self, GroupId, InstanceId, ServiceName};

/// Backoff between attempts to open the watch again.
const REOPEN: Exponential =
    Exponential::doubling(Duration::from_millis(100), Duration::from_secs(2));

/// The leader of a group, as its election key names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's instance id.
    pub instance_id: InstanceId,
    /// Its fencing term: the number its handlers see in `RpcContext::term`. `None` only for
    /// a leader written by another SDK that does not record one.
    pub term: Option<u64>,
}

/// What the watch knows about the group's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// The watch is not (yet) following the key: no bucket, no rights, no connection.
    Unknown,
    /// The key is free: the leader released it, or it expired.
    NoLeader,
    /// The key names this leader.
    Leader(Leader),
}

/// One observation: the state, and the KV revision of the change that made it (0 before
/// any), so that a waiter can ask for something newer than what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// What is known.
    pub state: LeaderState,
    /// The revision of the key's last change applied (renewals included).
    pub revision: u64,
}

impl LeaderView {
    const UNKNOWN: Self = Self {
        state: LeaderState::Unknown,
        revision: 0,
    };

    /// The leader, if one is known.
    pub fn leader(&self) -> Option<&Leader> {
        match &self.state {
            LeaderState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    /// Whether the watch follows the key (the state is not [`LeaderState::Unknown`]).
    pub fn is_followed(&self) -> bool {
        self.state != LeaderState::Unknown
    }
}

/// Why [`LeaderWatch::leader`] could not say who leads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the leader of {service} (group {group}) is not known after {waited:?}: the election bucket \
     `sticky_active` cannot be watched (no instance with exclusive methods ever ran, or this user \
     may not read it: see docs/security.md, \"Permissions\")"
)]
pub struct LeaderUnknown {
    service: ServiceName,
    group: GroupId,
    waited: Duration,
}

/// A live view of the leader of one group.
#[derive(Debug)]
pub struct LeaderWatch {
    service: ServiceName,
    group: GroupId,
    view: watch::Receiver<LeaderView>,
    /// Wakes the task from its backoff: the bucket exists now.
    retry: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaderWatch {
    /// Starts following the leader of `group` of `service` over `nats`, with a watch of its
    /// own. Prefer [`LeaderWatch::shared`].
    ///
    /// Must be called within a Tokio runtime.
    pub fn new(nats: &async_nats::Client, service: &ServiceName, group: &GroupId) -> Self {
        let (sender, view) = watch::channel(LeaderView::UNKNOWN);
        let key = subject::leader_key(service, group);
        let retry = Arc::new(Notify::new());
        let task = tokio::spawn(follow(nats.clone(), key, sender, retry.clone()));
        Self {
            service: service.clone(),
            group: group.clone(),
            view,
            retry,
            task,
        }
    }

    /// The watch of `group` of `service` on this connection, shared with every other
    /// caller on it (clients of the service, the instance's forwarding).
    ///
    /// Must be called within a Tokio runtime.
    pub fn shared(nats: &async_nats::Client, service: &ServiceName, group: &GroupId) -> Arc<Self> {
        shared::get_or_start(nats, service, group)
    }

    /// Tries to open the watch at once if it is waiting to retry (its backoff reaches
    /// 2 s): the caller has just made the election bucket exist.
    pub(crate) fn retry_now(&self) {
        if !self.view.borrow().is_followed() {
            self.retry.notify_one();
        }
    }

    /// What is known now.
    pub fn current(&self) -> LeaderView {
        self.view.borrow().clone()
    }

    /// Looks at the current view in place, without copying it.
    pub(crate) fn inspect<T>(&self, look: impl FnOnce(&LeaderView) -> T) -> T {
        look(&self.view.borrow())
    }

    /// Waits until the view has changed since `revision` (a newer change of the key, or the
    /// watch lost) or `deadline` passes; returns the view then.
    pub async fn changed_since(&self, revision: u64, deadline: Instant) -> LeaderView {
        let mut view = self.view.clone();
        let newer = view.wait_for(|seen| seen.revision > revision || !seen.is_followed());
        match tokio::time::timeout_at(deadline.into(), newer).await {
            Ok(Ok(seen)) => seen.clone(),
            _ => self.current(),
        }
    }

    /// Waits until a leader is known, at most `within`.
    ///
    /// # Errors
    /// [`LeaderUnknown`] when the watch has not caught up within `within` (no election
    /// bucket, no rights to read it).
    pub async fn leader(&self, within: Duration) -> Result<Option<Leader>, LeaderUnknown> {
        let mut view = self.view.clone();
        let known = view.wait_for(LeaderView::is_followed);
        match tokio::time::timeout(within, known).await {
            Ok(Ok(seen)) => Ok(seen.leader().cloned()),
            _ => Err(LeaderUnknown {
                service: self.service.clone(),
                group: self.group.clone(),
                waited: within,
            }),
        }
    }
}

/// Keeps `sender` current with the key until nobody listens.
async fn follow(
    nats: async_nats::Client,
    key: String,
    sender: watch::Sender<LeaderView>,
    retry: Arc<Notify>,
) {
    let js = jetstream::new(nats);
    let mut reopen = Backoff::new(REOPEN);
    loop {
        let followed = tokio::select! {
            result = follow_once(&js, &key, &sender) => result,
            () = sender.closed() => return,
        };
        if let Err(err) = followed {
            tracing::debug!(%key, %err, "cannot follow the leader key; retrying");
        } else {
            reopen.reset();
        }
        sender.send_replace(LeaderView::UNKNOWN);
        tokio::select! {
            () = tokio::time::sleep(reopen.next()) => {}
            () = retry.notified() => reopen.reset(),
            () = sender.closed() => return,
        }
    }
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("no election bucket: {0}")]
    Bucket(#[source] jetstream::context::KeyValueError),
    #[error("cannot watch the key: {0}")]
    Watch(#[source] kv::WatchError),
    #[error("cannot read the key: {0}")]
    Read(#[source] kv::EntryError),
}

/// Follows the key until its watch ends: watch first, then read, so no change between
/// the two is missed (the revision orders them).
async fn follow_once(
    js: &jetstream::Context,
    key: &str,
    sender: &watch::Sender<LeaderView>,
) -> Result<(), FollowError> {
    let store = js
        .get_key_value(subject::STICKY_ACTIVE_BUCKET)
        .await
        .map_err(FollowError::Bucket)?;
    let mut changes = store.watch(key).await.map_err(FollowError::Watch)?;
    match store.entry(key).await.map_err(FollowError::Read)? {
        Some(entry) => apply(sender, &entry),
        None => {
            sender.send_if_modified(|view| {
                if view.is_followed() {
                    return false;
                }
                view.state = LeaderState::NoLeader;
                true
            });
        }
    }
    while let Some(change) = changes.next().await {
        match change {
            Ok(entry) => apply(sender, &entry),
            Err(err) => {
                tracing::debug!(%key, %err, "the leader watch failed");
                break;
            }
        }
    }
    Ok(())
}

/// Applies one entry of the key, unless a newer one was applied already.
fn apply(sender: &watch::Sender<LeaderView>, entry: &kv::Entry) {
    let state = state_of(entry);
    sender.send_if_modified(|view| {
        if view.is_followed() && entry.revision <= view.revision {
            return false;
        }
        *view = LeaderView {
            state,
            revision: entry.revision,
        };
        true
    });
}

/// What an entry of the key says: a leader, or none. A value that is not a leader record
/// (an operator's tool, a forgery) is no leader: callers then wait for the next event or
/// fall back to the shared subject.
fn state_of(entry: &kv::Entry) -> LeaderState {
    if entry.operation != kv::Operation::Put {
        return LeaderState::NoLeader;
    }
    let Ok(record) = codec::decode::<LeaderRecord>(&entry.value) else {
        return LeaderState::Unknown;
    };
    match InstanceId::new(record.instance_id.as_str()) {
        Ok(instance_id) => LeaderState::Leader(Leader {
            term: record.term(entry.revision),
            instance_id,
        }),
        Err(_) => LeaderState::Unknown,
    }
}
