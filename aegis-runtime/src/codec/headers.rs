//! NATS headers Aegis adds to messages. Additions never go in the envelope: the Python SDK
//! rejects unknown fields.

/// On a reply: the id of the instance that answered.
pub const INSTANCE_ID: &str = "Aegis-Instance";
/// On a reply of an exclusive method: the fencing term it ran under.
pub const TERM: &str = "Aegis-Term";
/// On a request: when the caller stops waiting, in milliseconds since the Unix epoch. A
/// server that receives it later does not run the call and answers `DEADLINE_EXCEEDED`.
pub const DEADLINE: &str = "Aegis-Deadline";
/// On a request: the W3C trace context (`00-{trace id}-{span id}-01`) of the calling span,
/// so the server's span joins the caller's trace.
pub const TRACEPARENT: &str = "traceparent";

/// The same names as [`async_nats::HeaderName`]s, made at compile time: inserting or
/// looking up a `&str` name validates and copies it on every message.
pub(crate) mod name {
    use async_nats::HeaderName;

    pub(crate) const INSTANCE_ID: HeaderName = HeaderName::from_static(super::INSTANCE_ID);
    pub(crate) const TERM: HeaderName = HeaderName::from_static(super::TERM);
    pub(crate) const DEADLINE: HeaderName = HeaderName::from_static(super::DEADLINE);
    pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
}

/// The error text that starts the reply to a request whose deadline had passed.
pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";

/// The `Aegis-Deadline` value for a deadline `timeout` from now.
pub fn deadline_after(timeout: std::time::Duration) -> String {
    let deadline = std::time::SystemTime::now() + timeout;
    deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

/// How long ago the deadline in an `Aegis-Deadline` value passed; `None` when it has not
/// (or the value is not a number of milliseconds).
pub fn deadline_passed_by(value: &str) -> Option<std::time::Duration> {
    let deadline =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(value.trim().parse::<u64>().ok()?);
    std::time::SystemTime::now().duration_since(deadline).ok()
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
    use std::time::Duration;

    #[test]
    fn deadlines_round_trip_through_the_header() {
        assert_eq!(
            deadline_passed_by(&deadline_after(Duration::from_secs(5))),
            None
        );
        let past = deadline_after(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(deadline_passed_by(&past).is_some_and(|d| d >= Duration::from_millis(4)));
        assert_eq!(deadline_passed_by("soon"), None);
    }

    #[test]
    fn traceparent_carries_the_trace_id() {
        let value = traceparent("4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
        let (trace, span) = parse_traceparent(&value).expect("valid");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.len(), 16);
        assert_eq!(parse_traceparent("garbage"), None);
    }
}
