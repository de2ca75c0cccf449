//! Per-method counters: what the status RPC and `$SRV.STATS` report.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::ServerMetrics;
use crate::service::Outcome;
use crate::subject::ServiceName;

/// The window of "recent" errors.
pub(crate) const RECENT: Duration = Duration::from_secs(60);

/// Counters of one endpoint (an RPC method), and its metric handles.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    metrics: ServerMetrics,
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<Option<String>>,
    recent_errors: Mutex<VecDeque<Instant>>,
}

/// A snapshot of [`EndpointStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EndpointSnapshot {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) processing: Duration,
    pub(crate) last_error: Option<String>,
    /// Errors in the last [`RECENT`].
    pub(crate) recent_errors: u64,
}

impl EndpointStats {
    /// The stats of `method` of `service`.
    pub(crate) fn new(service: &ServiceName, method: &'static str) -> Self {
        Self {
            metrics: ServerMetrics::new(service, method),
            requests: AtomicU64::default(),
            errors: AtomicU64::default(),
            processing_nanos: AtomicU64::default(),
            last_error: Mutex::default(),
            recent_errors: Mutex::default(),
        }
    }

    /// Counts a request as its handler starts; `received` is when it arrived. Returns
    /// the handler's start, for [`finished`](Self::finished).
    pub(crate) fn received(&self, received: Instant) -> Instant {
        let now = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.started(received, now);
        now
    }

    /// Records how a request ended: it arrived at `received`, its handler started at
    /// `running` and answered with `outcome`; `error` describes a failure.
    pub(crate) fn finished(
        &self,
        received: Instant,
        running: Instant,
        outcome: Outcome,
        error: Option<String>,
    ) {
        let now = Instant::now();
        // The micro protocol's processing time counts from receipt, as it always did.
        let took = now.saturating_duration_since(received);
        let error_kind = match outcome {
            Outcome::Ok | Outcome::NotActive => None,
            Outcome::HandlerError => Some("handler"),
            Outcome::BadRequest => Some("bad_request"),
            Outcome::DeadlineExceeded => Some("deadline_exceeded"),
        };
        self.metrics.finished(
            now.saturating_duration_since(running),
            error_kind,
            outcome == Outcome::NotActive,
        );
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.processing_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                // Bounded: a handler's error text is the user's, and `$SRV.STATS` answers
                // every endpoint's last one in one message.
                *last = Some(crate::codec::abridge(error));
            }
            if let Ok(mut recent) = self.recent_errors.lock() {
                let now = Instant::now();
                recent.push_back(now);
                forget_old(&mut recent, now);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> EndpointSnapshot {
        EndpointSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            processing: Duration::from_nanos(self.processing_nanos.load(Ordering::Relaxed)),
            last_error: self.last_error.lock().ok().and_then(|last| last.clone()),
            recent_errors: self
                .recent_errors
                .lock()
                .map(|mut recent| {
                    forget_old(&mut recent, Instant::now());
                    recent.len() as u64
                })
                .unwrap_or_default(),
        }
    }
}

/// Drops the errors older than the window (the queue is in time order).
fn forget_old(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|at| now.duration_since(*at) > RECENT)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_errors_and_recent_errors() {
        let stats = EndpointStats::new(&ServiceName::new("svc").expect("a valid name"), "method");
        let Some(received) = Instant::now().checked_sub(Duration::from_millis(5)) else {
            return;
        };
        let running = stats.received(received);
        stats.finished(received, running, Outcome::Ok, None);
        let running = stats.received(received);
        stats.finished(
            received,
            running,
            Outcome::HandlerError,
            Some("boom".into()),
        );
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.requests, snapshot.errors, snapshot.recent_errors),
            (2, 1, 1)
        );
        // Each counts from receipt: at least the 5 ms before the handler started.
        assert!(snapshot.processing >= Duration::from_millis(10));
        assert_eq!(snapshot.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn old_errors_leave_the_window() {
        let now = Instant::now();
        let Some(old) = now.checked_sub(RECENT + Duration::from_secs(1)) else {
            return;
        };
        let mut recent = VecDeque::from([old, now]);
        forget_old(&mut recent, now);
        assert_eq!(recent, VecDeque::from([now]));
    }
}
