//! When and how soon a call that did not run is tried again.

use std::time::Duration;

/// Exponential backoff with jitter for calls that provably did not run (`NOT_ACTIVE`, no
/// responders, an instance that is gone). A call that ran and failed is never retried; one
/// that timed out only when the method is idempotent (it may have run).
///
/// Retries also stop at the call's deadline and when the client's
/// [`RetryBudget`](super::RetryBudget) is spent.
///
/// - [`RetryPolicy::default`], for plain methods: as the Python SDK's sticky-active
///   config, 3 retries after 100 ms, ×2 each (at most 2 s apart), with 20 % jitter.
/// - [`RetryPolicy::until_deadline`], the default of exclusive methods: retries as long as
///   the deadline allows, 25 ms doubling to at most 500 ms apart, so a leader failover of
///   about one lease costs latency, not a failed call.
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.max_attempts, 4);
/// assert_eq!(policy.backoff(1), Duration::from_millis(100));
/// assert_eq!(policy.backoff(3), Duration::from_millis(400));
/// // With jitter, each wait is between 80 % and 100 % of the backoff.
/// let wait = policy.delay_before_retry(3);
/// assert!(wait >= Duration::from_millis(320) && wait <= Duration::from_millis(400));
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
    /// Share of each wait that is random, 0.0–1.0: a wait is `backoff × (1 − jitter × r)`
    /// with `r` uniform in 0–1, so clients that failed together do not retry together.
    pub jitter: f64,
    /// For idempotent methods only: how long one attempt waits for its reply before it is
    /// tried again; `None`: a third of the call's deadline. (An attempt of a method that is
    /// not idempotent always waits until the deadline: it could not be retried anyway.)
    pub attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        StickyActiveConfig::default().into()
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

    /// Retries until the call's deadline, waits growing from 25 ms to at most 500 ms: the
    /// default of exclusive methods. The first retries come quickly because a graceful
    /// handover takes milliseconds; later ones spread out while a crashed leader's lease
    /// runs out.
    pub fn until_deadline() -> Self {
        Self {
            max_attempts: u32::MAX,
            initial_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(500),
            ..Self::default()
        }
    }

    /// The wait after attempt number `attempt` (1-based) failed, before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::Exponential {
            initial: self.initial_delay,
            multiplier: self.multiplier,
            max: self.max_delay,
        }
        .after(attempt)
    }

    /// The wait after attempt number `attempt` (1-based) failed, jitter applied.
    pub fn delay_before_retry(&self, attempt: u32) -> Duration {
        crate::backoff::jittered(self.backoff(attempt), self.jitter)
    }
}

/// The retry settings of the Python SDK's `StickyActiveConfig`, with its defaults: 3
/// retries, 100 ms before the first, ×2 each time. Converts into a [`RetryPolicy`].
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::client::StickyActiveConfig;
/// use aegis_runtime::RetryPolicy;
///
/// let policy: RetryPolicy = StickyActiveConfig { max_retries: 5, ..Default::default() }.into();
/// assert_eq!(policy.max_attempts, 6);
/// assert_eq!(policy.initial_delay, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StickyActiveConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub retry_delay: Duration,
    /// Growth of the wait from one retry to the next.
    pub backoff_multiplier: f64,
    /// Longest wait between two attempts.
    pub max_retry_delay: Duration,
}

impl Default for StickyActiveConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_delay: Duration::from_millis(100),
            backoff_multiplier: 2.0,
            max_retry_delay: Duration::from_secs(2),
        }
    }
}

impl From<StickyActiveConfig> for RetryPolicy {
    fn from(config: StickyActiveConfig) -> Self {
        Self {
            max_attempts: config.max_retries.saturating_add(1),
            initial_delay: config.retry_delay,
            multiplier: config.backoff_multiplier,
            max_delay: config.max_retry_delay,
            jitter: 0.2,
            attempt_timeout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::until_deadline();
        let waits: Vec<u128> = (1..=7).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [25, 50, 100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let policy = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        for _ in 0..1000 {
            let wait = policy.delay_before_retry(1);
            assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100));
        }
        let exact = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(exact.delay_before_retry(2), Duration::from_millis(200));
    }
}
