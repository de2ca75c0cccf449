//! The error of a call.

use std::time::Duration;

use crate::codec::DecodeError;
use crate::subject::{InvalidName, ServiceName};

/// A failed call: which service and method, after how many attempts, and why.
///
/// ```
/// # use aegis_runtime::{CallError, CallErrorKind};
/// fn describe(err: &CallError) -> &'static str {
///     match err.kind() {
///         CallErrorKind::Handler(_) => "the method ran and failed",
///         CallErrorKind::NotActive(_) | CallErrorKind::NoResponders => "it did not run",
///         CallErrorKind::Timeout(_) | CallErrorKind::DeadlineExceeded(_) => "it may have run",
///         CallErrorKind::BudgetExhausted(_) => "it did not run: too many retries lately",
///         _ => "something else",
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("call of {service}.{method} failed after {attempts} attempt(s): {kind}")]
pub struct CallError {
    service: String,
    method: String,
    attempts: u32,
    kind: CallErrorKind,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The method ran and returned an error; its message.
    #[error("the handler failed: {0}")]
    Handler(String),
    /// Only standby instances answered: the exclusive method did not run.
    #[error("no active instance ran it (NOT_ACTIVE: {0})")]
    NotActive(String),
    /// No instance of the service is subscribed: the method did not run.
    #[error("no instance of the service is running (no responders)")]
    NoResponders,
    /// No reply within the attempt's timeout; the method may or may not have run.
    #[error("no reply within {0:?}; the method may have run")]
    Timeout(Duration),
    /// The call's deadline passed: either no reply came in time (the method may have run),
    /// or the server received the request too late and did not run it; the message says
    /// which.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// No instance could be chosen, so no request was sent and the method did not run:
    /// instances are registered but none is usable (all UNHEALTHY or stale,
    /// [`DiscoveryError::Unavailable`]), or the discovery did not answer before the call's
    /// deadline ([`DiscoveryError::TimedOut`]).
    ///
    /// [`DiscoveryError::Unavailable`]: crate::discovery::DiscoveryError::Unavailable
    /// [`DiscoveryError::TimedOut`]: crate::discovery::DiscoveryError::TimedOut
    #[error("no request sent, the method did not run: {0}")]
    Unavailable(#[source] crate::discovery::DiscoveryError),
    /// The call did not run and may not be retried: the client's retry budget is spent
    /// (too many retries lately). The error of the last attempt.
    #[error("retry budget exhausted (too many retries lately); last attempt: {0}")]
    BudgetExhausted(Box<CallErrorKind>),
    /// The reply could not be decoded.
    #[error("{0}")]
    Decode(#[source] DecodeError),
    /// The reply had no result where one was expected.
    #[error("{0}")]
    MissingResult(String),
    /// The request could not be encoded.
    #[error("the request cannot be encoded: {0}")]
    Encode(#[source] crate::codec::EncodeError),
    /// The method name breaks the naming rule.
    #[error("{0}")]
    InvalidName(#[source] InvalidName),
    /// The NATS connection failed; the [`TransportError`] holds async-nats's error.
    #[error("NATS error: {0}")]
    Transport(#[source] TransportError),
}

/// What failed on the NATS connection: async-nats's error (a
/// [`RequestError`](async_nats::RequestError), a
/// [`SubscribeError`](async_nats::SubscribeError), a JetStream
/// [`PublishError`](async_nats::jetstream::context::PublishError), a
/// [`JetStreamError`](crate::JetStreamError), …) as its source, shown as it shows itself.
///
/// ```
/// use aegis_runtime::{CallError, CallErrorKind};
///
/// fn timed_out_on_the_wire(err: &CallError) -> bool {
///     match err.kind() {
///         CallErrorKind::Transport(transport) => transport
///             .inner()
///             .downcast_ref::<async_nats::RequestError>()
///             .is_some_and(|e| e.kind() == async_nats::RequestErrorKind::TimedOut),
///         _ => false,
///     }
/// }
/// # let _ = timed_out_on_the_wire;
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct TransportError {
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl TransportError {
    /// Wraps `error`, for tools that make a request themselves and report it as a
    /// [`CallError`].
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            source: error.into(),
        }
    }

    /// The error that failed the operation, to downcast to async-nats's types.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

/// The connection was closed while a reply was awaited.
#[derive(Debug, thiserror::Error)]
#[error("the connection closed")]
pub(crate) struct ConnectionClosed;

impl CallErrorKind {
    /// Whether the call provably did not run, so retrying it cannot run it twice.
    pub fn did_not_run(&self) -> bool {
        matches!(
            self,
            CallErrorKind::NotActive(_) | CallErrorKind::NoResponders
        )
    }

    /// A short name of the kind, as in the `kind` label of `aegis_client_errors_total`.
    pub fn name(&self) -> &'static str {
        match self {
            CallErrorKind::Handler(_) => "handler",
            CallErrorKind::NotActive(_) => "not_active",
            CallErrorKind::NoResponders => "no_responders",
            CallErrorKind::Timeout(_) => "timeout",
            CallErrorKind::DeadlineExceeded(_) => "deadline_exceeded",
            CallErrorKind::Unavailable(_) => "unavailable",
            CallErrorKind::BudgetExhausted(_) => "budget_exhausted",
            CallErrorKind::Decode(_) => "decode",
            CallErrorKind::MissingResult(_) => "missing_result",
            CallErrorKind::Encode(_) => "encode",
            CallErrorKind::InvalidName(_) => "invalid_name",
            CallErrorKind::Transport(_) => "transport",
        }
    }
}

impl CallError {
    pub(crate) fn new(
        service: &ServiceName,
        method: &str,
        attempts: u32,
        kind: CallErrorKind,
    ) -> Self {
        Self {
            service: service.to_string(),
            method: method.to_owned(),
            attempts,
            kind,
        }
    }

    /// Why the call failed.
    pub fn kind(&self) -> &CallErrorKind {
        &self.kind
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The service called.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The handler's error message, when the method ran and failed.
    pub fn handler_message(&self) -> Option<&str> {
        match &self.kind {
            CallErrorKind::Handler(message) => Some(message),
            _ => None,
        }
    }
}
