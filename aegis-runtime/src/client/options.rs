//! How one call is made.

use std::time::Duration;

/// How one call is made: whether the method is exclusive (runs only on the active
/// instance) or idempotent (safe to run twice), and its deadline.
///
/// Generated clients pass the options the method's attributes say; untyped callers pass
/// them to [`ServiceClient::call_with_options`](super::ServiceClient::call_with_options).
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::client::CallOptions;
///
/// let options = CallOptions::exclusive()
///     .idempotent(true)
///     .deadline(Duration::from_millis(800));
/// assert!(options.is_exclusive() && options.is_idempotent());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    exclusive: bool,
    idempotent: bool,
    deadline: Option<Duration>,
}

impl CallOptions {
    /// A plain method.
    pub fn rpc() -> Self {
        Self::default()
    }

    /// An exclusive method: `NOT_ACTIVE` answers are unwrapped and retried.
    pub fn exclusive() -> Self {
        Self {
            exclusive: true,
            ..Self::default()
        }
    }

    /// Marks the method idempotent: running it twice is harmless, so a call that timed out
    /// (and may have run) is retried too.
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Sets this call's deadline, instead of the client's.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Whether the method is exclusive.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Whether the method is idempotent.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// This call's own deadline, if it has one.
    pub fn deadline_override(&self) -> Option<Duration> {
        self.deadline
    }
}
