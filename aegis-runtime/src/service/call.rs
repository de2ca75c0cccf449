//! One RPC call as a handler sees it: the raw request, its context, and the encoded reply.

use std::fmt::Display;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, ExclusiveReply, RpcRequest, RpcResponse, Timestamp};

/// What a handler knows about the call it serves.
///
/// Take `ctx: &RpcContext` as the first argument of an `#[rpc]` or `#[exclusive_rpc]`
/// method to see it.
///
/// ```
/// use aegis_runtime::{RpcContext, service};
///
/// struct Orders;
///
/// #[service]
/// impl Orders {
///     #[exclusive_rpc]
///     async fn process(&self, ctx: &RpcContext) -> String {
///         format!("{} ran under term {:?}", ctx.instance_id(), ctx.term())
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RpcContext {
    service: &'static str,
    method: &'static str,
    instance_id: std::sync::Arc<str>,
    exclusive: bool,
    term: Option<u64>,
    received_at: Instant,
    message_id: String,
    trace_id: String,
    source: Option<String>,
    events: Option<crate::events::EventPublisher>,
    /// How the request came, so the reply goes back the same way.
    form: CallForm,
}

/// How a request came: as an Aegis envelope, or as the bare parameters that tools such as
/// `nats req` send (see [`codec::is_bare_call`]). The reply takes the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CallForm {
    /// An RPC request envelope: answered with an RPC response envelope.
    #[default]
    Envelope,
    /// Bare JSON parameters: answered with the bare JSON result, or an empty body with the
    /// ADR-32 error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`).
    Bare,
}

impl RpcContext {
    pub(crate) fn new(
        service: &'static str,
        method: &'static str,
        instance_id: std::sync::Arc<str>,
        exclusive: bool,
        term: Option<u64>,
        received_at: Instant,
    ) -> Self {
        Self {
            service,
            method,
            instance_id,
            exclusive,
            term,
            received_at,
            message_id: String::new(),
            trace_id: String::new(),
            source: None,
            events: None,
            form: CallForm::Envelope,
        }
    }

    /// Answers in the form of `payload`: bare when it is a bare-JSON call (not an envelope;
    /// see [`codec::is_bare_call`]). For a call whose handler did not return, whose decoded
    /// context is lost.
    pub(crate) fn answering(mut self, payload: &[u8]) -> Self {
        if codec::decode::<RpcRequest<serde::de::IgnoredAny>>(payload).is_err()
            && codec::is_bare_call(payload)
        {
            self.form = CallForm::Bare;
        }
        self
    }

    /// Lets the handler publish events through `events`.
    pub(crate) fn with_publisher(mut self, events: crate::events::EventPublisher) -> Self {
        self.events = Some(events);
        self
    }

    /// Publishes `payload` as event `event_type` of `domain` (to `events.{domain}.{event_type}`,
    /// with this service as its source).
    ///
    /// ```no_run
    /// # async fn run(ctx: &aegis_runtime::RpcContext) -> Result<(), aegis_runtime::events::PublishError> {
    /// ctx.publish("orders", "created", &serde_json::json!({"order_id": "ORD-1"})).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PublishError`](crate::events::PublishError); also when the context was not made by
    /// a running instance.
    pub async fn publish<P: serde::Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: &P,
    ) -> Result<(), crate::events::PublishError> {
        crate::events::publish_through(self.events.as_ref(), domain, event_type, payload).await
    }

    /// Publishes a [`DomainEvent`](crate::DomainEvent) on the subject its type names
    /// (`events.{DOMAIN}.{EVENT_TYPE}`), with this service as its source. List the type in
    /// `#[service(publishes = [...])]` too, so tools see the service publishes it.
    ///
    /// ```no_run
    /// # async fn run(ctx: &aegis_runtime::RpcContext) -> Result<(), aegis_runtime::events::PublishError> {
    /// #[derive(serde::Serialize, aegis_runtime::DomainEvent)]
    /// #[event(domain = "orders", event_type = "cancelled")]
    /// struct OrderCancelled {
    ///     order_id: String,
    /// }
    ///
    /// ctx.emit(&OrderCancelled { order_id: "ORD-1".into() }).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn emit<E: crate::DomainEvent>(
        &self,
        event: &E,
    ) -> Result<(), crate::events::PublishError> {
        self.publish(E::DOMAIN, E::EVENT_TYPE, event).await
    }

    /// The service name.
    pub fn service(&self) -> &str {
        self.service
    }

    /// The method name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The id of the instance running the call.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// For an exclusive method: the fencing term of the leadership under which it runs.
    /// Pass it to anything that must reject writes from an older leader.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// The request's `message_id`.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The request's `trace_id`.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Who sent the request, if it says.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// When the request arrived at this instance.
    pub fn received_at(&self) -> Instant {
        self.received_at
    }

    /// Whether the method is exclusive (its replies nest in an exclusive reply).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// A request as the runtime hands it to a generated handler: not yet decoded, so the
/// handler decodes straight into the method's parameter type, in one pass.
pub struct RpcCall {
    payload: Bytes,
    context: RpcContext,
}

impl std::fmt::Debug for RpcCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCall")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl RpcCall {
    pub(crate) fn new(payload: Bytes, context: RpcContext) -> Self {
        Self { payload, context }
    }

    /// Decodes the request with `params` of type `P`: an envelope, or else a
    /// [bare-JSON call](codec::is_bare_call) (the body is the parameters; it has no
    /// deadline), whose reply then takes the bare form too.
    ///
    /// # Errors
    /// A ready error [`Reply`] that says what is wrong with the request, or that its
    /// [deadline](RpcRequest::deadline) has passed: the caller has given up, so the method
    /// must not run (a retry may already be under way elsewhere).
    pub fn decode<P: Serialize + DeserializeOwned>(self) -> Result<(RpcContext, P), Reply> {
        let mut context = self.context;
        match codec::decode::<RpcRequest<P>>(&self.payload) {
            Ok(request) => {
                let late = request.deadline_passed_by(SystemTime::now());
                context.message_id = request.message_id;
                context.trace_id = request.trace_id;
                context.source = request.source;
                // The runner's span of the call is current: it gets the request's id.
                tracing::Span::current().record("correlation_id", context.message_id.as_str());
                if let Some(late) = late {
                    tracing::debug!(?late, "not running a call whose deadline has passed");
                    return Err(Reply::deadline_exceeded(&context, late));
                }
                Ok((context, request.params))
            }
            // Not an envelope: the bare parameters of a call from a NATS tool? Only looked
            // at once the envelope failed, so envelope calls pay nothing for it.
            Err(_) if codec::is_bare_call(&self.payload) => {
                context.form = CallForm::Bare;
                match codec::decode_params::<P>(&self.payload) {
                    Ok(params) => Ok((context, params)),
                    Err(err) => Err(Reply::bad_request(&context, &err)),
                }
            }
            Err(err) => {
                // Answer with the request's ids when at least its header is readable.
                if let Ok(header) = codec::decode::<RpcRequest<serde_json::Value>>(&self.payload) {
                    context.message_id = header.message_id;
                    context.trace_id = header.trace_id;
                }
                Err(Reply::bad_request(&context, &err))
            }
        }
    }
}

/// Parameters of a method that takes none: encodes as an empty map (as the Python SDK
/// sends), and accepts whatever it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoParams;

impl Serialize for NoParams {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for NoParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| NoParams)
    }
}

impl schemars::JsonSchema for NoParams {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NoParams".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "No parameters: an empty map",
            "maxProperties": 0
        })
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// How a call ended, for stats and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The method ran and returned a value.
    Ok,
    /// The method ran and returned an error (or panicked).
    HandlerError,
    /// The request could not be decoded; the method did not run.
    BadRequest,
    /// The instance is not active; the exclusive method did not run.
    NotActive,
    /// The caller's deadline had passed; the method did not run.
    DeadlineExceeded,
}

#[doc(hidden)] // glue for the generated code, not public API
/// An encoded RPC response, ready to publish.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) payload: Vec<u8>,
    pub(crate) outcome: Outcome,
    /// The error the reply carries, for the instance's stats (`$SRV.STATS` `last_error`);
    /// for a bare reply, the text of its `Nats-Service-Error` header as well.
    pub(crate) error: Option<String>,
    /// The form of the request it answers: a bare reply is the result as JSON, or an
    /// empty body with ADR-32 error headers.
    pub(crate) form: CallForm,
}

/// The most bytes of error text a bare reply's `Nats-Service-Error` header carries: a
/// header counts against the server's maximum payload, and an error can quote the input.
const MAX_SERVICE_ERROR_LEN: usize = 1024;

impl Reply {
    /// The error the reply carries, if any.
    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// How the call ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The encoded response envelope; for a bare call, the result as JSON (empty when it
    /// failed).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// For the reply to a bare call that failed: the ADR-32 error, as the values of the
    /// `Nats-Service-Error-Code` and `Nats-Service-Error` headers. The code says why:
    /// 400 the parameters did not decode, 500 the handler failed (or panicked), 503 this
    /// instance is not the active one (the method did not run), 504 the deadline passed.
    /// The text is on one line and at most `MAX_SERVICE_ERROR_LEN` bytes long.
    pub(crate) fn service_error(&self) -> Option<(&'static str, String)> {
        if self.form != CallForm::Bare {
            return None;
        }
        let code = match self.outcome {
            Outcome::Ok => return None,
            Outcome::BadRequest => "400",
            Outcome::HandlerError => "500",
            Outcome::NotActive => "503",
            Outcome::DeadlineExceeded => "504",
        };
        let error = self
            .error
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or("the call failed");
        // A header value may not hold a line break (it would end the header), nor should it
        // hold other control characters.
        let mut text: String = error
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > MAX_SERVICE_ERROR_LEN {
            let mut end = MAX_SERVICE_ERROR_LEN;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        Some((code, text))
    }

    /// The reply to a bare call: `result` as JSON when it succeeded, else an empty body
    /// and the `error` for the ADR-32 headers.
    fn bare<R: Serialize>(
        context: &RpcContext,
        result: Result<R, String>,
        outcome: Outcome,
    ) -> Self {
        let encoded = result.and_then(|value| {
            serde_json::to_vec(&value).map_err(|err| {
                format!(
                    "the result of `{}` cannot be encoded as JSON: {err}",
                    context.method
                )
            })
        });
        match encoded {
            Ok(payload) => Self {
                payload,
                outcome,
                error: None,
                form: CallForm::Bare,
            },
            Err(error) => Self {
                payload: Vec::new(),
                outcome: if outcome == Outcome::Ok {
                    Outcome::HandlerError
                } else {
                    outcome
                },
                error: Some(error),
                form: CallForm::Bare,
            },
        }
    }

    /// A successful reply carrying `value` (nested in an exclusive reply for an exclusive
    /// method).
    pub fn value<R: Serialize>(context: &RpcContext, value: R) -> Self {
        if context.form == CallForm::Bare {
            // Plain JSON, for an exclusive method too: the reply's form says it ran.
            return Self::bare(context, Ok(value), Outcome::Ok);
        }
        if context.exclusive {
            Self::encode(
                context,
                true,
                Some(ExclusiveReply::ok(value)),
                None,
                Outcome::Ok,
            )
        } else {
            Self::encode(context, true, Some(value), None, Outcome::Ok)
        }
    }

    /// The reply to a method that returned a `Result`.
    pub fn result<R: Serialize, E: Display>(context: &RpcContext, result: Result<R, E>) -> Self {
        match result {
            Ok(value) => Self::value(context, value),
            Err(error) => Self::handler_error(context, &error),
        }
    }

    /// The method ran and failed with `error`.
    pub fn handler_error(context: &RpcContext, error: &dyn Display) -> Self {
        let message = error.to_string();
        if context.form == CallForm::Bare {
            return Self::bare::<()>(context, Err(message), Outcome::HandlerError);
        }
        let mut reply = if context.exclusive {
            let reply = ExclusiveReply::<()>::execution_error(message.clone());
            Self::encode(context, true, Some(reply), None, Outcome::HandlerError)
        } else {
            Self::encode::<()>(
                context,
                false,
                None,
                Some(message.clone()),
                Outcome::HandlerError,
            )
        };
        if reply.error.is_none() {
            reply.error = Some(message);
        }
        reply
    }

    /// The instance is not the active one; the exclusive method did not run.
    pub(crate) fn not_active(context: &RpcContext, group: &str) -> Self {
        let message = format!(
            "This instance is not active. Instance {} is in STANDBY mode for group {group}.",
            context.instance_id
        );
        if context.form == CallForm::Bare {
            let message = format!("{}: {message}", ExclusiveReply::<()>::NOT_ACTIVE);
            return Self::bare::<()>(context, Err(message), Outcome::NotActive);
        }
        let reply = ExclusiveReply::<()>::not_active(message);
        Self::encode(context, true, Some(reply), None, Outcome::NotActive)
    }

    /// The caller's deadline passed `late` before the call could run; it did not run.
    /// A top-level error (`DEADLINE_EXCEEDED: …`) for every kind of method.
    fn deadline_exceeded(context: &RpcContext, late: std::time::Duration) -> Self {
        let message = format!(
            "{}: the caller's deadline (the request's timestamp + timeout) passed {late:?} before \
             instance {} could run {}; it did not run (if this is unexpected, check that the \
             hosts' clocks agree)",
            codec::DEADLINE_EXCEEDED,
            context.instance_id,
            context.method
        );
        Self::encode::<()>(
            context,
            false,
            None,
            Some(message),
            Outcome::DeadlineExceeded,
        )
    }

    fn bad_request(context: &RpcContext, error: &codec::DecodeError) -> Self {
        if context.form == CallForm::Bare {
            return Self::bare::<()>(context, Err(error.to_string()), Outcome::BadRequest);
        }
        Self::encode::<()>(
            context,
            false,
            None,
            Some(error.to_string()),
            Outcome::BadRequest,
        )
    }

    fn encode<R: Serialize>(
        context: &RpcContext,
        success: bool,
        result: Option<R>,
        error: Option<String>,
        outcome: Outcome,
    ) -> Self {
        // Kept for the stats only when the call failed: a successful reply allocates nothing.
        let kept = error.clone().filter(|_| outcome != Outcome::Ok);
        let response = RpcResponse {
            message_id: codec::new_message_id(),
            trace_id: context.trace_id.clone(),
            // Unknown when the request did not decode: nil, as the Python SDK answers.
            correlation_id: (!context.message_id.is_empty()).then(|| context.message_id.clone()),
            timestamp: Timestamp::now(),
            source: Some(context.instance_id.to_string()),
            target: None,
            success,
            result,
            error,
        };
        match codec::encode(&response) {
            Ok(payload) => Self {
                payload,
                outcome,
                error: kept,
                form: CallForm::Envelope,
            },
            Err(err) => {
                // The user's value could not be encoded (a map with non-string keys, say):
                // the caller still gets an answer saying so.
                let message = format!(
                    "the result of `{}` cannot be encoded: {err}",
                    context.method
                );
                let failure = RpcResponse::<()> {
                    success: false,
                    result: None,
                    error: Some(message.clone()),
                    message_id: response.message_id,
                    trace_id: response.trace_id,
                    correlation_id: response.correlation_id,
                    timestamp: response.timestamp,
                    source: response.source,
                    target: None,
                };
                let payload = codec::encode(&failure).unwrap_or_default();
                Self {
                    payload,
                    outcome: Outcome::HandlerError,
                    error: Some(message),
                    form: CallForm::Envelope,
                }
            }
        }
    }
}
