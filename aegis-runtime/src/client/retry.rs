//! When and how soon a call that did not run is tried again.

use std::time::Duration;

/// Exponential backoff for calls that provably did not run (`NOT_ACTIVE`, no responders).
/// Calls that may have run (a timeout) or that ran and failed are never retried.
///
/// The default, as the Python SDK's sticky-active config: 3 retries after 100 ms, ×2 each,
/// at most 2 s apart.
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.max_attempts, 4);
/// assert_eq!(policy.delay_before_retry(1), Duration::from_millis(100));
/// assert_eq!(policy.delay_before_retry(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_delay: Duration,
    /// Growth of the wait from one retry to the next.
    pub multiplier: f64,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Also retry calls that timed out. A timed-out call may have run (its instance may
    /// have died after running it), so turn this on only for **idempotent** methods, where
    /// running twice is harmless. Off by default.
    pub retry_timeouts: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(2),
            retry_timeouts: false,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Whether a call that failed with `error` may be tried again under this policy.
    pub fn may_retry(&self, error: &crate::CallErrorKind) -> bool {
        error.did_not_run()
            || (self.retry_timeouts && matches!(error, crate::CallErrorKind::Timeout(_)))
    }

    /// The wait after attempt number `attempt` (1-based) failed.
    pub fn delay_before_retry(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32) as i32;
        let delay = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(delay)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}
