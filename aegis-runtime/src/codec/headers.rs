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
/// so the server's span joins the caller's trace.
pub const TRACEPARENT: &str = "traceparent";

/// The same names as [`async_nats::HeaderName`]s, made at compile time: inserting or
/// looking up a `&str` name validates and copies it on every message.
pub(crate) mod name {
    use async_nats::HeaderName;

    pub(crate) const INSTANCE_ID: HeaderName = HeaderName::from_static(super::INSTANCE_ID);
    pub(crate) const TERM: HeaderName = HeaderName::from_static(super::TERM);
    pub(crate) const FORWARDED_BY: HeaderName = HeaderName::from_static(super::FORWARDED_BY);
    pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
}

/// A `traceparent` value for the trace `trace_id` (any string; its hex digits are used,
/// padded or cut to 32) and a new span.
pub fn traceparent(trace_id: &str) -> String {
    let hex: String = trace_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!("00-{hex}-{:016x}-01", fastrand::u64(1..))
}

/// The trace id and parent span id of a `traceparent` value.
pub fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    (trace.len() == 32 && span.len() == 16).then_some((trace, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_carries_the_trace_id() {
        let value = traceparent("4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
        let (trace, span) = parse_traceparent(&value).expect("valid");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.len(), 16);
        assert_eq!(parse_traceparent("garbage"), None);
    }
}
