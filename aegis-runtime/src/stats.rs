//! Per-method counters: what the status RPC and `$SRV.STATS` report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one endpoint (an RPC method).
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`EndpointStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EndpointSnapshot {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) processing: Duration,
    pub(crate) last_error: Option<String>,
}

impl EndpointStats {
    /// Counts a request when it arrives, before it runs.
    pub(crate) fn received(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a request ended.
    pub(crate) fn finished(&self, took: Duration, error: Option<String>) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.processing_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(error);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> EndpointSnapshot {
        EndpointSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            processing: Duration::from_nanos(self.processing_nanos.load(Ordering::Relaxed)),
            last_error: self.last_error.lock().ok().and_then(|last| last.clone()),
        }
    }
}
