//! A cap on retries, so that failures do not multiply the load on a struggling service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// How many retries a client may make: a share of its recent calls plus a small floor per
/// second (the scheme of Finagle and tower). When every instance fails, calls stop
/// multiplying into retries and fail fast with
/// [`CallErrorKind::BudgetExhausted`](crate::CallErrorKind::BudgetExhausted) instead.
///
/// The default allows retries worth 20 % of the calls of the last 10 s, plus 10 per
/// second. Clones share one budget.
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::client::RetryBudget;
///
/// let budget = RetryBudget::new(Duration::from_secs(10), 5, 0.1);
/// assert!(budget.try_withdraw()); // the floor allows a few retries at once
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Option<Arc<TpsBudget>>,
}

impl RetryBudget {
    /// Retries worth `ratio` (0.0–1000.0) of the calls of the last `window` (1–60 s), plus
    /// `floor_per_second`.
    pub fn new(window: Duration, floor_per_second: u32, ratio: f32) -> Self {
        let window = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        Self {
            inner: Some(Arc::new(TpsBudget::new(
                window,
                floor_per_second,
                ratio.clamp(0.0, 1000.0),
            ))),
        }
    }

    /// No cap at all.
    pub fn unlimited() -> Self {
        Self { inner: None }
    }

    /// Counts a call (each call earns a share of a retry).
    pub fn deposit(&self) {
        if let Some(budget) = &self.inner {
            budget.deposit();
        }
    }

    /// Takes one retry from the budget; `false` when none is left.
    pub fn try_withdraw(&self) -> bool {
        self.inner.as_ref().is_none_or(|budget| budget.withdraw())
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("limited", &self.inner.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_runs_out_without_calls_and_calls_earn_retries() {
        let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.5);
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert!(granted <= 10, "floor of 1/s over 10 s: {granted}");
        for _ in 0..100 {
            budget.deposit();
        }
        let earned = (0..100).filter(|_| budget.try_withdraw()).count();
        assert!((40..=60).contains(&earned), "50 % of 100 calls: {earned}");
        assert!(RetryBudget::unlimited().try_withdraw());
    }
}
