//! This instance's role in its sticky-active group, as the exclusive-method guard reads it.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::instance::StickyActiveStatus;
use crate::subject::GroupId;

/// The local view of leadership: which group, the role, and the fencing term and lease
/// while this instance is the active one.
///
/// Every exclusive call reads it at the moment it would start. The term is only given out
/// while the **local lease** holds: a leader that could not renew in time (paused,
/// partitioned) stops serving by itself, before the server can expire its key and let
/// another instance take over, even before its renewal task has noticed.
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
    /// The fencing term while active; 0 while not (terms are KV revisions, never 0).
    term: AtomicU64,
    /// The local lease: nanoseconds after [`base`] until which the term may be used; 0
    /// for no limit.
    lease_until: AtomicU64,
    /// Trying to become leader right now.
    electing: AtomicU8,
    /// Tells watchers (the runner's exclusive subscriptions) about changes of the term.
    changes: tokio::sync::watch::Sender<u64>,
    /// How many shared exclusive subjects the instance serves while active.
    exclusive_subjects: AtomicUsize,
    /// The term whose shared exclusive subjects are being subscribed, and how many are: a
    /// new leader announces itself once all of them are (see [`Leadership::subscribed`]).
    subscribed: tokio::sync::watch::Sender<(u64, usize)>,
    /// The leader gauges of a served instance (none for a bare `Leadership`).
    metrics: Option<crate::metrics::LeaderMetrics>,
}

/// The instant all lease deadlines count from (monotonic).
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos_since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Leadership {
    /// A standby instance's view of `group`.
    pub fn new(group: GroupId) -> Self {
        Self::with_metrics(group, None)
    }

    /// The leadership of an instance of `service`, recorded in the leader metrics.
    pub(crate) fn for_service(service: &crate::subject::ServiceName, group: GroupId) -> Self {
        let metrics = crate::metrics::LeaderMetrics::new(service, &group);
        Self::with_metrics(group, Some(metrics))
    }

    fn with_metrics(group: GroupId, metrics: Option<crate::metrics::LeaderMetrics>) -> Self {
        let (changes, _) = tokio::sync::watch::channel(0);
        let (subscribed, _) = tokio::sync::watch::channel((0, 0));
        Self {
            inner: Arc::new(State {
                group,
                term: AtomicU64::new(0),
                lease_until: AtomicU64::new(0),
                electing: AtomicU8::new(0),
                changes,
                exclusive_subjects: AtomicUsize::new(0),
                subscribed,
                metrics,
            }),
        }
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.inner.group
    }

    /// The fencing term while this instance is active and its lease holds.
    pub fn term(&self) -> Option<u64> {
        let term = self.inner.term.load(Ordering::Acquire);
        if term == 0 {
            return None;
        }
        let lease = self.inner.lease_until.load(Ordering::Acquire);
        if lease != 0 && nanos_since_base(Instant::now()) >= lease {
            return None;
        }
        Some(term)
    }

    /// Whether this instance is the active one.
    pub fn is_active(&self) -> bool {
        self.term().is_some()
    }

    /// The role, as the registry and the status report show it.
    pub fn role(&self) -> StickyActiveStatus {
        if self.is_active() {
            StickyActiveStatus::Active
        } else if self.inner.electing.load(Ordering::Acquire) != 0 {
            StickyActiveStatus::Electing
        } else {
            StickyActiveStatus::Standby
        }
    }

    /// Makes this instance active under `term` (a KV revision, > 0), with no lease limit.
    #[cfg(test)]
    pub(crate) fn become_active(&self, term: u64) {
        self.inner.lease_until.store(0, Ordering::Release);
        self.activate(term);
    }

    /// Makes this instance active under `term` until `lease_until`.
    pub(crate) fn become_active_until(&self, term: u64, lease_until: Instant) {
        self.extend_lease(lease_until);
        self.activate(term);
    }

    fn activate(&self, term: u64) {
        let term = term.max(1);
        self.inner.electing.store(0, Ordering::Release);
        let before = self.inner.term.swap(term, Ordering::AcqRel);
        if let Some(metrics) = self.inner.metrics.as_ref().filter(|_| before == 0) {
            metrics.elected(term);
        }
        self.inner.changes.send_replace(term);
    }

    /// Moves the local lease to `until` (after a successful renewal).
    pub(crate) fn extend_lease(&self, until: Instant) {
        self.inner
            .lease_until
            .store(nanos_since_base(until), Ordering::Release);
    }

    /// Marks an election attempt under way (or over).
    pub(crate) fn set_electing(&self, electing: bool) {
        self.inner
            .electing
            .store(u8::from(electing), Ordering::Release);
    }

    /// Makes this instance standby.
    pub(crate) fn step_down(&self) {
        let before = self.inner.term.swap(0, Ordering::AcqRel);
        if let Some(metrics) = self.inner.metrics.as_ref().filter(|_| before != 0) {
            metrics.lost();
        }
        self.inner.electing.store(0, Ordering::Release);
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

    /// Sets how many shared exclusive subjects the instance subscribes while active.
    pub(crate) fn set_exclusive_subjects(&self, count: usize) {
        self.inner
            .exclusive_subjects
            .store(count, Ordering::Release);
    }

    /// Records that one shared exclusive subject is subscribed under `term`.
    pub(crate) fn subscribed(&self, term: u64) {
        self.inner.subscribed.send_modify(|(under, count)| {
            if *under == term {
                *count += 1;
            } else {
                (*under, *count) = (term, 1);
            }
        });
    }

    /// Waits until every shared exclusive subject is subscribed under `term`: the server
    /// has the subscriptions before anything this connection sends afterwards, so an
    /// announcement of the new leader is never seen before it can be called.
    pub(crate) async fn all_subscribed(&self, term: u64) {
        let expected = self.inner.exclusive_subjects.load(Ordering::Acquire);
        if expected == 0 {
            // Nothing to subscribe (a service elected for its exclusive schedules only).
            return;
        }
        let mut subscribed = self.inner.subscribed.subscribe();
        let _ = subscribed
            .wait_for(|(under, count)| *under == term && *count >= expected)
            .await;
    }

    /// Time left on the local lease, if active with one.
    #[allow(dead_code)]
    pub(crate) fn lease_left(&self) -> Option<Duration> {
        let lease = self.inner.lease_until.load(Ordering::Acquire);
        (lease != 0)
            .then(|| Duration::from_nanos(lease.saturating_sub(nanos_since_base(Instant::now()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_term_is_given_only_while_the_lease_holds() {
        let leadership = Leadership::new(GroupId::default());
        leadership.become_active_until(7, Instant::now() + Duration::from_secs(60));
        assert_eq!(leadership.term(), Some(7));
        assert_eq!(leadership.role(), StickyActiveStatus::Active);
        leadership.extend_lease(Instant::now());
        assert_eq!(leadership.term(), None, "an expired lease serves nothing");
        assert_eq!(leadership.role(), StickyActiveStatus::Standby);
    }

    #[tokio::test]
    async fn all_subscribed_waits_for_every_exclusive_subject_under_the_term() {
        let leadership = Leadership::new(GroupId::default());
        leadership.set_exclusive_subjects(2);
        // One subject of an earlier term and one of this term are not enough.
        leadership.subscribed(3);
        leadership.subscribed(5);
        let waiting = tokio::time::timeout(Duration::from_millis(50), leadership.all_subscribed(5));
        assert!(waiting.await.is_err(), "one of two subjects subscribed");
        leadership.subscribed(5);
        tokio::time::timeout(Duration::from_secs(5), leadership.all_subscribed(5))
            .await
            .expect("both subjects subscribed under term 5");
    }

    #[test]
    fn stepping_down_and_electing_show_in_the_role() {
        let leadership = Leadership::new(GroupId::default());
        leadership.set_electing(true);
        assert_eq!(leadership.role(), StickyActiveStatus::Electing);
        leadership.become_active(3);
        assert_eq!(leadership.role(), StickyActiveStatus::Active);
        leadership.step_down();
        assert_eq!(
            (leadership.term(), leadership.role()),
            (None, StickyActiveStatus::Standby)
        );
    }
}
