//! The one exponential backoff of the runtime: client retries ([`RetryPolicy`]), heartbeat
//! retries, and reopening the discovery and leader watches all wait by it.
//!
//! [`RetryPolicy`]: crate::RetryPolicy

use std::time::Duration;

/// Waits that grow from `initial` by `multiplier` per failure, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exponential {
    pub(crate) initial: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max: Duration,
}

impl Exponential {
    /// `initial`, doubling up to `max`.
    pub(crate) const fn doubling(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            multiplier: 2.0,
            max,
        }
    }

    /// The wait after `failures` failures in a row: `initial` after the first.
    pub(crate) fn after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(32) as i32;
        let wait = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(wait)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// An [`Exponential`] with its count of failures in a row, for loops that retry until
/// something works.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    schedule: Exponential,
    failures: u32,
}

impl Backoff {
    pub(crate) const fn new(schedule: Exponential) -> Self {
        Self {
            schedule,
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub(crate) fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.after(self.failures)
    }

    /// Something worked (or changed): the next wait is the shortest again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `wait` less a random share of it, up to `spread` (0–1): many processes that failed
/// together do not try again together.
pub(crate) fn jittered(wait: Duration, spread: f64) -> Duration {
    wait.mul_f64(1.0 - spread.clamp(0.0, 1.0) * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_from_the_first_and_stop_at_the_cap() {
        let schedule = Exponential::doubling(100 * MS, 500 * MS);
        let waits: Vec<Duration> = (1..=5).map(|n| schedule.after(n)).collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        assert_eq!(schedule.after(u32::MAX), 500 * MS, "no overflow");
        assert_eq!(schedule.after(0), 100 * MS, "no failure yet: the shortest");
    }

    #[test]
    fn a_reset_starts_over() {
        let mut backoff = Backoff::new(Exponential::doubling(10 * MS, 80 * MS));
        assert_eq!(
            [backoff.next(), backoff.next(), backoff.next()],
            [10 * MS, 20 * MS, 40 * MS]
        );
        backoff.reset();
        assert_eq!(backoff.next(), 10 * MS);
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..1000 {
            let wait = jittered(100 * MS, 0.5);
            assert!(wait >= 50 * MS && wait <= 100 * MS, "{wait:?}");
        }
        assert_eq!(jittered(100 * MS, 0.0), 100 * MS);
        assert!(jittered(100 * MS, 7.0) <= 100 * MS, "spread is clamped");
    }
}
