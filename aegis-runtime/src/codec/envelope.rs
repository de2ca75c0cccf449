//! The four envelopes: RPC request, RPC response, event and command.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BrokenRule, Timestamp, WireMessage, new_message_id};

/// Defines an envelope struct whose map starts with the six fields every message carries,
/// in the order the Python SDK writes them, followed by the envelope's own fields.
macro_rules! envelope {
    (
        $(#[$meta:meta])*
        pub struct $name:ident<$param:ident = Value> {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name<$param = Value> {
            /// Unique id of this message, a UUID v4 string.
            pub message_id: String,
            /// Id shared by the messages of one logical operation, for tracing.
            pub trace_id: String,
            /// For a reply, the `message_id` of the message it answers.
            pub correlation_id: Option<String>,
            /// When the message was created.
            pub timestamp: Timestamp,
            /// Who sent it (a client or instance id), if known.
            pub source: Option<String>,
            /// Who it is for (a service name), if known.
            pub target: Option<String>,
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl<$param> $name<$param> {
            /// A message with a fresh id, trace and timestamp, no correlation, source or
            /// target, and the given fields.
            #[allow(clippy::too_many_arguments)]
            fn fresh($($field: $ty),*) -> Self {
                Self {
                    message_id: new_message_id(),
                    trace_id: new_message_id(),
                    correlation_id: None,
                    timestamp: Timestamp::now(),
                    source: None,
                    target: None,
                    $($field,)*
                }
            }

            /// Sets who sends the message.
            #[must_use]
            pub fn with_source(mut self, source: impl Into<String>) -> Self {
                self.source = Some(source.into());
                self
            }

            /// Sets who the message is for (a service name).
            #[must_use]
            pub fn with_target(mut self, target: impl Into<String>) -> Self {
                self.target = Some(target.into());
                self
            }

            /// Sets the trace id, to tie the message to an operation already under way.
            #[must_use]
            pub fn with_trace_id(mut self, trace_id: impl Into<String>) -> Self {
                self.trace_id = trace_id.into();
                self
            }
        }
    };
}

envelope! {
    /// A call of a method: published on `rpc.{service}.{method}` with a reply subject.
    ///
    /// `params` is a map (the handler's request type, serialized); it defaults to a dynamic
    /// [`serde_json::Value`], and may be any serde type for typed access.
    ///
    /// ```
    /// use aegis_runtime::codec::RpcRequest;
    /// use serde_json::json;
    ///
    /// let request = RpcRequest::new("process_order", json!({"order_id": "ORD-1"}))
    ///     .with_target("order-svc")
    ///     .with_timeout(2.5);
    /// assert_eq!(request.method, "process_order");
    /// assert_eq!(request.timeout, 2.5);
    /// ```
    pub struct RpcRequest<P = Value> {
        /// The method to call.
        pub method: String,
        /// The arguments: a map.
        pub params: P,
        /// How long the caller waits, in seconds, from `timestamp`: together they are the
        /// request's [deadline](RpcRequest::deadline).
        pub timeout: f64,
    }
}

envelope! {
    /// The answer to an [`RpcRequest`]: `success` is true exactly when `error` is nil.
    ///
    /// ```
    /// use aegis_runtime::codec::{RpcRequest, RpcResponse};
    /// use serde_json::json;
    ///
    /// let request = RpcRequest::new("health_check", json!({}));
    /// let response: RpcResponse = RpcResponse::err(&request, "database down");
    /// assert_eq!(response.into_result(), Err("database down".to_owned()));
    /// ```
    pub struct RpcResponse<R = Value> {
        /// Whether the method ran and returned normally.
        pub success: bool,
        /// The returned value (nil for none, and on failure).
        pub result: Option<R>,
        /// The failure message, nil on success.
        pub error: Option<String>,
    }
}

envelope! {
    /// A domain event, published on `events.{domain}.{event_type}`.
    ///
    /// ```
    /// use aegis_runtime::codec::Event;
    /// use serde_json::json;
    ///
    /// let event = Event::new("order", "created", json!({"order_id": "O-1"}));
    /// assert_eq!(event.version, "1.0");
    /// ```
    pub struct Event<P = Value> {
        /// The domain, first token after `events.`.
        pub domain: String,
        /// The event type, second token after `events.`.
        pub event_type: String,
        /// The event data.
        pub payload: P,
        /// Version of the event schema, `"1.0"` by default.
        pub version: String,
    }
}

envelope! {
    /// A unit of work for one instance of a service, published on
    /// `commands.{service}.{command}`.
    ///
    /// ```
    /// use aegis_runtime::codec::{Command, Priority};
    /// use serde_json::json;
    ///
    /// let command = Command::new("reindex", json!({"n": 3})).with_priority(Priority::High);
    /// assert_eq!(command.max_retries, 3);
    /// ```
    pub struct Command<P = Value> {
        /// The command name.
        pub command: String,
        /// The command's arguments.
        pub payload: P,
        /// Scheduling priority inside an instance.
        pub priority: Priority,
        /// How often a failed command may be redelivered.
        pub max_retries: u32,
        /// How long the handler may run, in seconds.
        pub timeout: f64,
    }
}

/// Priority of a [`Command`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Runs after everything else.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Runs before normal work.
    High,
    /// Runs first.
    Critical,
}

/// Default timeout of an [`RpcRequest`], in seconds (the Python SDK's default).
pub const DEFAULT_RPC_TIMEOUT_SECS: f64 = 5.0;

impl<P> RpcRequest<P> {
    /// A new request for `method` with `params`, a fresh id and trace, and a 5 s timeout.
    pub fn new(method: impl Into<String>, params: P) -> Self {
        Self::fresh(method.into(), params, DEFAULT_RPC_TIMEOUT_SECS)
    }

    /// Sets the timeout in seconds.
    #[must_use]
    pub fn with_timeout(mut self, seconds: f64) -> Self {
        self.timeout = seconds;
        self
    }

    /// The timeout as a duration; `None` when it is not a positive finite number.
    pub fn timeout_duration(&self) -> Option<std::time::Duration> {
        std::time::Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
    }

    /// When the caller stops waiting for the reply: the request's `timestamp` plus its
    /// `timeout`, as the Python SDK and Aegis clients write them. `None` when the timeout
    /// is not a positive finite number, or so large that the deadline is past any time
    /// this clock can hold (no deadline).
    ///
    /// The deadline travels in these two fields rather than in a header, so requests of
    /// Python clients carry one too, and a request costs no header to write and parse.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use aegis_runtime::codec::RpcRequest;
    ///
    /// let request = RpcRequest::new("health_check", ()).with_timeout(2.0);
    /// let deadline = request.deadline().expect("a deadline");
    /// assert_eq!(deadline, SystemTime::from(request.timestamp) + Duration::from_secs(2));
    /// assert_eq!(request.deadline_passed_by(SystemTime::now()), None);
    /// let later = deadline + Duration::from_millis(300);
    /// assert_eq!(request.deadline_passed_by(later), Some(Duration::from_millis(300)));
    /// ```
    pub fn deadline(&self) -> Option<std::time::SystemTime> {
        std::time::SystemTime::from(self.timestamp).checked_add(self.timeout_duration()?)
    }

    /// How long before `now` the request's [deadline](Self::deadline) passed; `None` when
    /// it has not passed or there is none.
    pub fn deadline_passed_by(&self, now: std::time::SystemTime) -> Option<std::time::Duration> {
        now.duration_since(self.deadline()?)
            .ok()
            .filter(|late| !late.is_zero())
    }
}

impl<R> RpcResponse<R> {
    fn reply_to<P>(
        request: &RpcRequest<P>,
        success: bool,
        result: Option<R>,
        error: Option<String>,
    ) -> Self {
        let mut response = Self::fresh(success, result, error).with_trace_id(&request.trace_id);
        response.correlation_id = Some(request.message_id.clone());
        response
    }

    /// A successful answer to `request` carrying `result`.
    pub fn ok<P>(request: &RpcRequest<P>, result: R) -> Self {
        Self::reply_to(request, true, Some(result), None)
    }

    /// A failed answer to `request` with the message `error`.
    pub fn err<P>(request: &RpcRequest<P>, error: impl Into<String>) -> Self {
        Self::reply_to(request, false, None, Some(error.into()))
    }

    /// The result on success, the error message on failure.
    ///
    /// # Errors
    /// The `error` message when `success` is false.
    pub fn into_result(self) -> Result<Option<R>, String> {
        match (self.success, self.error) {
            (true, _) => Ok(self.result),
            (false, error) => Err(error.unwrap_or_default()),
        }
    }
}

/// Version written in new events, as the Python SDK does.
pub const EVENT_VERSION: &str = "1.0";

impl<P> Event<P> {
    /// A new event of `domain`/`event_type` carrying `payload`.
    pub fn new(domain: impl Into<String>, event_type: impl Into<String>, payload: P) -> Self {
        Self::fresh(
            domain.into(),
            event_type.into(),
            payload,
            EVENT_VERSION.to_owned(),
        )
    }
}

/// Defaults of a new [`Command`]: 3 retries and a 300 s timeout, as in the Python SDK.
pub const DEFAULT_COMMAND_MAX_RETRIES: u32 = 3;
/// Default timeout of a new [`Command`], in seconds.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: f64 = 300.0;

impl<P> Command<P> {
    /// A new command `command` carrying `payload`, normal priority.
    pub fn new(command: impl Into<String>, payload: P) -> Self {
        Self::fresh(
            command.into(),
            payload,
            Priority::Normal,
            DEFAULT_COMMAND_MAX_RETRIES,
            DEFAULT_COMMAND_TIMEOUT_SECS,
        )
    }

    /// Sets the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

fn check_timeout(timeout: f64) -> Result<(), BrokenRule> {
    if timeout.is_finite() && timeout >= 0.0 {
        Ok(())
    } else {
        Err(BrokenRule::new(format!(
            "`timeout` must be a non-negative number of seconds, got {timeout}"
        )))
    }
}

impl<P: DeserializeOwned> WireMessage for RpcRequest<P> {
    const NAME: &'static str = "RPC request";

    fn check(&self) -> Result<(), BrokenRule> {
        check_timeout(self.timeout)
    }
}

impl<R: DeserializeOwned> WireMessage for RpcResponse<R> {
    const NAME: &'static str = "RPC response";

    fn check(&self) -> Result<(), BrokenRule> {
        check_success_matches_error(self.success, self.error.as_deref())
    }
}

impl<P: DeserializeOwned> WireMessage for Event<P> {
    const NAME: &'static str = "event";
}

impl<P: DeserializeOwned> WireMessage for Command<P> {
    const NAME: &'static str = "command";

    fn check(&self) -> Result<(), BrokenRule> {
        check_timeout(self.timeout)
    }
}

/// The rule shared by responses and exclusive replies: `success` ⇔ `error` is nil.
pub(super) fn check_success_matches_error(
    success: bool,
    error: Option<&str>,
) -> Result<(), BrokenRule> {
    match (success, error) {
        (true, Some(error)) => Err(BrokenRule::new(format!(
            "`success` is true but `error` is set ({error:?})"
        ))),
        (false, None) => Err(BrokenRule::new("`success` is false but `error` is nil")),
        _ => Ok(()),
    }
}
