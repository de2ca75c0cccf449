//! The lifecycle of an instance, with the transitions it may take.

use serde::{Deserialize, Serialize};

/// Where an instance is in its life.
///
/// `INITIALIZING → STARTING → STARTED → STOPPING → STOPPED`, and `FAILED` from any state
/// but `STOPPED`. Any other transition is refused.
///
/// ```
/// use aegis_runtime::Lifecycle;
///
/// assert!(Lifecycle::Started.can_become(Lifecycle::Stopping));
/// assert!(!Lifecycle::Stopped.can_become(Lifecycle::Started));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    /// Being configured.
    Initializing,
    /// Subscribing and registering.
    Starting,
    /// Serving.
    Started,
    /// Draining calls in flight before it stops.
    Stopping,
    /// Stopped; it serves nothing.
    Stopped,
    /// Could not start, or broke while running.
    Failed,
}

impl Lifecycle {
    /// Whether an instance in this state may move to `next`.
    pub fn can_become(self, next: Lifecycle) -> bool {
        use Lifecycle::*;
        matches!(
            (self, next),
            (Initializing, Starting)
                | (Starting, Started)
                | (Started, Stopping)
                | (Stopping, Stopped)
                | (Initializing | Starting | Started | Stopping, Failed)
        )
    }
}

/// The current state, shared by the runner and whoever asks.
#[derive(Debug)]
pub(crate) struct LifecycleCell {
    state: tokio::sync::watch::Sender<Lifecycle>,
}

impl LifecycleCell {
    pub(crate) fn new() -> Self {
        Self {
            state: tokio::sync::watch::channel(Lifecycle::Initializing).0,
        }
    }

    pub(crate) fn get(&self) -> Lifecycle {
        *self.state.borrow()
    }

    /// Moves to `next`, refusing (and logging) a transition the lifecycle does not allow.
    pub(crate) fn set(&self, next: Lifecycle) -> bool {
        let mut moved = false;
        self.state.send_if_modified(|state| {
            moved = state.can_become(next);
            if moved {
                tracing::debug!(from = ?*state, to = ?next, "lifecycle");
                *state = next;
            } else {
                tracing::warn!(from = ?*state, to = ?next, "refused lifecycle transition");
            }
            moved
        });
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_transitions_and_failure_are_allowed() {
        use Lifecycle::*;
        let all = [Initializing, Starting, Started, Stopping, Stopped, Failed];
        let allowed = [
            (Initializing, Starting),
            (Starting, Started),
            (Started, Stopping),
            (Stopping, Stopped),
            (Initializing, Failed),
            (Starting, Failed),
            (Started, Failed),
            (Stopping, Failed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn the_cell_refuses_invalid_moves() {
        let cell = LifecycleCell::new();
        assert!(!cell.set(Lifecycle::Started));
        assert_eq!(cell.get(), Lifecycle::Initializing);
        assert!(cell.set(Lifecycle::Starting));
        assert!(cell.set(Lifecycle::Started));
        assert_eq!(cell.get(), Lifecycle::Started);
    }

    #[test]
    fn states_are_written_as_the_python_sdk_writes_them() {
        assert_eq!(
            serde_json::to_string(&Lifecycle::Started).ok().as_deref(),
            Some("\"STARTED\"")
        );
    }
}
