//! NATS headers Aegis adds to messages. Additions never go in the envelope: the Python SDK
//! rejects unknown fields. Plain requests and replies carry none (a header costs the
//! server and both clients a parse per message): a request's deadline is its envelope's
//! `timestamp` + `timeout` (see [`RpcRequest::deadline`](super::RpcRequest::deadline)).

/// On a reply: the id of the instance that answered.
pub const INSTANCE_ID: &str = "Aegis-Instance";
/// On a reply of an exclusive method: the fencing term it ran under.
pub const TERM: &str = "Aegis-Term";
/// On a request an instance forwarded to the leader (it reached an instance that is not
/// the leader): the forwarding instance. A forwarded call is never forwarded again.
pub const FORWARDED_BY: &str = "Aegis-Forwarded-By";
/// On a request: the W3C trace context (`00-{trace id}-{span id}-01`) of the calling span,
/// so the server's span joins the caller's trace (see [`crate::telemetry`]).
pub const TRACEPARENT: &str = "traceparent";
/// Beside [`TRACEPARENT`]: the W3C vendor trace state, passed along unchanged.
pub const TRACESTATE: &str = "tracestate";

/// On the reply to a bare-JSON call that failed (see
/// [`is_bare_call`](super::is_bare_call)): what went wrong, as text (ADR-32, the NATS
/// micro protocol; `async_nats::service::NATS_SERVICE_ERROR`). The body is then empty.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Beside [`SERVICE_ERROR`]: the error code, `400` (the parameters did not decode), `500`
/// (the handler failed or panicked) or `503` (not the active instance: the method did not
/// run).
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// The same names as [`async_nats::HeaderName`]s, made at compile time: inserting or
/// looking up a `&str` name validates and copies it on every message.
pub(crate) mod name {
    use async_nats::HeaderName;

    pub(crate) const INSTANCE_ID: HeaderName = HeaderName::from_static(super::INSTANCE_ID);
    pub(crate) const TERM: HeaderName = HeaderName::from_static(super::TERM);
    pub(crate) const FORWARDED_BY: HeaderName = HeaderName::from_static(super::FORWARDED_BY);
    pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
    pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static(super::TRACESTATE);
    pub(crate) const SERVICE_ERROR: HeaderName = HeaderName::from_static(super::SERVICE_ERROR);
    pub(crate) const SERVICE_ERROR_CODE: HeaderName =
        HeaderName::from_static(super::SERVICE_ERROR_CODE);
}
