//! This instance's role in its sticky-active group, as the exclusive-method guard reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::subject::GroupId;

/// The local view of leadership: which group, and the fencing term while this instance is
/// the active one.
///
/// Every exclusive call reads it at the moment it would start: a call that arrives while
/// the instance is not active gets `NOT_ACTIVE` and does not run. Instances start as
/// standby; only the election makes one active.
///
/// ```
/// use aegis_runtime::Leadership;
/// use aegis_runtime::subject::GroupId;
///
/// let leadership = Leadership::new(GroupId::default());
/// assert!(!leadership.is_active());
/// assert_eq!(leadership.term(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<State>,
}

#[derive(Debug)]
struct State {
    group: GroupId,
    /// The fencing term while active; 0 while standby (terms are KV revisions, never 0).
    /// Read on every exclusive call, so an atomic rather than the channel below.
    term: AtomicU64,
    /// Tells watchers (the runner's exclusive subscriptions) about changes.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Leadership {
    /// A standby instance's view of `group`.
    pub fn new(group: GroupId) -> Self {
        let (changes, _) = tokio::sync::watch::channel(0);
        Self {
            inner: Arc::new(State {
                group,
                term: AtomicU64::new(0),
                changes,
            }),
        }
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.inner.group
    }

    /// The fencing term while this instance is active.
    pub fn term(&self) -> Option<u64> {
        match self.inner.term.load(Ordering::Acquire) {
            0 => None,
            term => Some(term),
        }
    }

    /// Whether this instance is the active one.
    pub fn is_active(&self) -> bool {
        self.term().is_some()
    }

    /// Makes this instance active under `term` (a KV revision, > 0).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by the election
    pub(crate) fn become_active(&self, term: u64) {
        let term = term.max(1);
        self.inner.term.store(term, Ordering::Release);
        self.inner.changes.send_replace(term);
    }

    /// Makes this instance standby.
    #[allow(dead_code)] // used by the election
    pub(crate) fn step_down(&self) {
        self.inner.term.store(0, Ordering::Release);
        self.inner.changes.send_replace(0);
    }

    /// Waits until this instance's activity is `active`; returns `false` if it never can be
    /// (the state was dropped).
    pub(crate) async fn wait_until(&self, active: bool) -> bool {
        let mut changes = self.inner.changes.subscribe();
        changes
            .wait_for(|term| (*term != 0) == active)
            .await
            .is_ok()
    }
}
