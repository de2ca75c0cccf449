//! Trace context that joins: the W3C `traceparent`/`tracestate` headers a call, an event or
//! a command carries, and the context of the span they are sent from.
//!
//! Every span Aegis opens for a call (`aegis.call`, `aegis.command`, `aegis.publish`) or a
//! handler (`rpc`, `event`, `command`, `on_start`, `on_stop`) gets a [`TraceContext`]: the
//! caller's trace with a new span id, or a new trace when there is no caller. It is
//! recorded on the span (`trace_id`, 32 lowercase hex digits, and `span_id`, 16, with
//! `parent_span` when it has a parent) and kept in the span's extensions when the
//! subscriber is a [`tracing_subscriber::Registry`] (as `tracing_subscriber::fmt()` and
//! every layered subscriber are), so a call made inside a handler, or inside any span
//! under one of these, joins the same trace. A call from a span with no context starts a
//! new trace, which the outermost span around the call keeps, so that the calls it makes
//! share one trace.
//!
//! With the `opentelemetry` feature and a `tracing-opentelemetry` layer installed, the
//! OpenTelemetry context of the current span wins: calls carry its trace and span ids, and
//! a handler span's OpenTelemetry parent is set from the extracted header (see
//! `init_otlp`, with the feature, for the one-call setup).
//!
//! Nothing of this runs when no subscriber records the span: the headers are then not
//! sent either.

#[cfg(feature = "opentelemetry")]
mod otel;

#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use otel::{OtlpError, OtlpGuard, init_otlp};

use std::fmt;
use std::sync::Arc;

use async_nats::HeaderMap;
use tracing_subscriber::Registry;
use tracing_subscriber::registry::LookupSpan;

use crate::codec::headers;

/// An `info` span named `$name` with the given fields and the ones every Aegis span with a
/// trace context records later: `trace_id`, `span_id`, `parent_span` (set by [`start`]),
/// `error` and `otel.status_code` (set by [`record_error`]). The fields given end with a
/// comma.
macro_rules! traced_span {
    ($name:literal, $($field:tt)*) => {
        ::tracing::info_span!(
            $name,
            $($field)*
            trace_id = ::tracing::field::Empty,
            span_id = ::tracing::field::Empty,
            parent_span = ::tracing::field::Empty,
            error = ::tracing::field::Empty,
            otel.status_code = ::tracing::field::Empty,
        )
    };
}
pub(crate) use traced_span;

/// A W3C trace id: 16 bytes, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A W3C span id: 8 bytes, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The trace context of one span: its trace, its own id, and what the W3C headers carry
/// besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id (the parent id of what it calls).
    pub span_id: SpanId,
    /// The W3C trace flags (bit 0: sampled).
    pub flags: u8,
    /// The vendor data of the `tracestate` header, passed along unchanged.
    pub tracestate: Option<Arc<str>>,
}

impl TraceContext {
    /// The context of a span that starts a new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId(fastrand::u128(1..)),
            span_id: SpanId(fastrand::u64(1..)),
            flags: 1,
            tracestate: None,
        }
    }

    /// The context of a new span in the same trace, a child of this one.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId(fastrand::u64(1..)),
            ..self.clone()
        }
    }

    /// The `traceparent` header value: `00-{trace id}-{span id}-{flags}`.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// Parses a `traceparent` value (and the `tracestate` beside it); `None` when it is
    /// not a valid version-00 value (malformed, or an all-zero id).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // A future version may add fields after the flags; version ff is invalid.
        if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            flags: u8::from_str_radix(flags, 16).ok()?,
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Arc::from),
        })
    }

    /// The context a message carries in its headers, if any (and valid).
    pub fn extract(headers: Option<&HeaderMap>) -> Option<Self> {
        let headers = headers?;
        let traceparent = headers.get(headers::name::TRACEPARENT)?;
        let tracestate = headers.get(headers::name::TRACESTATE);
        Self::parse(
            traceparent.as_str(),
            tracestate.map(async_nats::HeaderValue::as_str),
        )
    }

    /// Adds `traceparent` (and `tracestate`, when there is one) to `headers`.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(headers::name::TRACEPARENT, self.traceparent());
        if let Some(state) = &self.tracestate {
            headers.insert(headers::name::TRACESTATE, state.as_ref());
        }
    }

    /// The context of the current span: the one Aegis gave it or one of its ancestors
    /// (or, with the `opentelemetry` feature, its OpenTelemetry context); `None` outside
    /// any such span.
    pub fn current() -> Option<Self> {
        let span = tracing::Span::current();
        #[cfg(feature = "opentelemetry")]
        if let Some(context) = otel::context_of(&span) {
            return Some(context);
        }
        stored(&span)
    }
}

/// The context kept in `span`'s extensions or its nearest ancestor's.
fn stored(span: &tracing::Span) -> Option<TraceContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        data.scope()
            .find_map(|s| s.extensions().get::<TraceContext>().cloned())
    })
    .flatten()
}

/// Keeps `context` in `span`'s extensions (when the subscriber is a registry).
fn store(span: &tracing::Span, context: &TraceContext) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            data.extensions_mut().replace(context.clone());
        }
    });
}

/// Starts a new trace for a call made from `span`'s parent, which has no context: the
/// outermost span above it keeps the trace, so that the next call from it joins the same
/// one. `None` when there is no span above it.
fn root_above(span: &tracing::Span) -> Option<TraceContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let outermost = data.scope().skip(1).last()?;
        let root = TraceContext::new_root();
        outermost.extensions_mut().replace(root.clone());
        Some(root)
    })
    .flatten()
}

/// Gives `span` (just created, not yet entered) its trace context and records it on the
/// span: a child of `remote` (the context a message carried) when given, else of the
/// context of the span's ancestors, else a new trace. `None` (and nothing done) when no
/// subscriber records the span.
pub(crate) fn start(span: &tracing::Span, remote: Option<TraceContext>) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    #[cfg(feature = "opentelemetry")]
    {
        if let Some(remote) = &remote {
            otel::set_parent(span, remote);
        }
        if let Some(context) = otel::context_of(span) {
            record(span, &context, remote.as_ref().map(|r| r.span_id));
            store(span, &context);
            return Some(context);
        }
    }
    let parent = remote.or_else(|| stored(span));
    let context = match &parent {
        Some(parent) => parent.child(),
        None => root_above(span)
            .map(|root| root.child())
            .unwrap_or_else(TraceContext::new_root),
    };
    record(span, &context, parent.as_ref().map(|p| p.span_id));
    store(span, &context);
    Some(context)
}

/// Records the context's ids on the span (fields `trace_id`, `span_id`, `parent_span`).
fn record(span: &tracing::Span, context: &TraceContext, parent: Option<SpanId>) {
    span.record("trace_id", tracing::field::display(context.trace_id));
    span.record("span_id", tracing::field::display(context.span_id));
    if let Some(parent) = parent {
        span.record("parent_span", tracing::field::display(parent));
    }
}

/// Records a failure on `span`: the `error` field and `otel.status_code = "ERROR"`.
pub(crate) fn record_error(span: &tracing::Span, error: &dyn fmt::Display) {
    span.record("error", tracing::field::display(error));
    span.record("otel.status_code", "ERROR");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let context = TraceContext::new_root();
        let value = context.traceparent();
        assert_eq!(value.len(), 55);
        assert_eq!(TraceContext::parse(&value, None), Some(context));
    }

    #[test]
    fn the_w3c_example_parses_and_bad_values_do_not() {
        let parsed = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("congo=t61rcWkgMzE"),
        )
        .expect("valid");
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        for bad in [
            "garbage",
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }
}
