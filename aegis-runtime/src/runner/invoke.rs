//! The one path every delivery takes to its handler, whatever its source: request/reply
//! subjects (shared, instance, exclusive), JetStream consumers (events, commands), and the
//! lifecycle hooks.
//!
//! Like a stack of tower layers around a handler, [`invoke`] owns the concerns every kind
//! shares: the span, the run-time limit, the capture of a panic (logged and counted in
//! [`HANDLER_PANICS`](crate::metrics::HANDLER_PANICS)), so that a rule never differs per
//! handler kind. A source describes its delivery as a [`Delivery`]: how to start the handler,
//! and how to settle what it ran to (a reply; an ack, nak or term; a callback). [`serve`]
//! runs one delivery in its own task, holding the concurrency permit the source acquired
//! until the delivery is settled.
//!
//! A panic becomes [`Invoked::Panicked`] with the panic's message; what follows is the
//! source's documented rule (docs/runtime.md, "Panics and failures, per handler kind").

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::telemetry::{self, TraceContext};

/// The kinds of handler the runtime runs, as logs and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerKind {
    /// An `#[rpc]` method.
    Rpc,
    /// An `#[exclusive_rpc]` method.
    ExclusiveRpc,
    /// A `#[subscribe]` method.
    Event,
    /// A `#[command]` method.
    Command,
    /// A `#[schedule]` method.
    Schedule,
    /// The `#[on_start]` hook.
    OnStart,
    /// The `#[on_stop]` hook.
    OnStop,
}

impl HandlerKind {
    /// The `kind` label of metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rpc => "rpc",
            Self::ExclusiveRpc => "exclusive_rpc",
            Self::Event => "event",
            Self::Command => "command",
            Self::Schedule => "schedule",
            Self::OnStart => "on_start",
            Self::OnStop => "on_stop",
        }
    }
}

/// What running a handler came to.
#[derive(Debug)]
pub(crate) enum Invoked<T> {
    /// The handler returned.
    Returned(T),
    /// The handler panicked; the panic's message.
    Panicked(String),
    /// The handler ran past its limit and was dropped.
    TimedOut(Duration),
}

/// One delivery as its source hands it to the serving core.
pub(crate) trait Delivery: Send + Sized + 'static {
    /// What the handler returns.
    type Output: Send;

    /// Which kind of handler runs.
    fn kind(&self) -> HandlerKind;

    /// The handler's method name, for logs and metrics.
    fn method(&self) -> &'static str;

    /// The span the handler runs in (and its delivery is settled in), with the fields
    /// `trace_id`, `span_id`, `parent_span`, `error` and `otel.status_code` declared empty.
    fn span(&self) -> tracing::Span;

    /// The trace context the message carried (`traceparent`), if any.
    fn remote_trace(&self) -> Option<TraceContext> {
        None
    }

    /// How long the handler may run; `None` for no limit (a caller's deadline is checked
    /// when the request is decoded, before the method runs).
    fn limit(&self) -> Option<Duration> {
        None
    }

    /// Starts the handler (decoding happens inside it, under the panic guard).
    fn start(&mut self) -> impl Future<Output = Self::Output> + Send + 'static;

    /// Acts on the outcome: replies, acks, naks or terminates, records stats.
    fn settle(self, invoked: Invoked<Self::Output>) -> impl Future<Output = ()> + Send;
}

/// Runs `delivery` in its own task and settles it; `permit` is released only after that,
/// so a stop that waits for every permit waits for every settlement too.
///
/// The delivery is started (its synchronous part: an exclusive call reads its term) before
/// this returns, in the order its source accepted it: a source that has handed over its
/// last message knows every call it accepted has read its term, so a leader that leaves
/// its subjects before it steps down answers all of them as leader.
pub(crate) fn serve<D: Delivery>(permit: OwnedSemaphorePermit, mut delivery: D) {
    let handler = delivery.start();
    tokio::spawn(async move {
        let span = delivery.span();
        telemetry::start(&span, delivery.remote_trace());
        let invoked = invoke(
            delivery.kind(),
            delivery.method(),
            span.clone(),
            delivery.limit(),
            handler,
        )
        .await;
        // Settled inside the span: its logs carry the call's fields, and it records the
        // outcome on the span.
        delivery.settle(invoked).instrument(span).await;
        drop(permit);
    });
}

/// Runs `handler` inside `span`, within `limit` when given, catching a panic: the one rule
/// every kind of handler and hook follows.
pub(crate) async fn invoke<F: Future>(
    kind: HandlerKind,
    method: &'static str,
    span: tracing::Span,
    limit: Option<Duration>,
    handler: F,
) -> Invoked<F::Output> {
    let recorder = span.clone();
    let guarded =
        async {
            AssertUnwindSafe(handler).catch_unwind().await.map_err(|panic| {
            // Logged here, inside the span, so the line carries the call's fields. At
            // `error`: a panic is a bug of the service, unlike an error the handler
            // returns (an outcome its caller handles, logged at `info` or `warn`).
            let message = panic_message(panic.as_ref());
            telemetry::record_error(&tracing::Span::current(), &panicked(&message));
            tracing::error!(kind = kind.as_str(), method, panic = %message, "handler panicked");
            metrics::counter!(
                crate::metrics::HANDLER_PANICS,
                "kind" => kind.as_str(),
                "method" => method
            )
            .increment(1);
            message
        })
        }
        .instrument(span);
    let ran = match limit {
        None => guarded.await,
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(ran) => ran,
            Err(_elapsed) => {
                let failure = format!("the handler ran longer than {limit:?}");
                telemetry::record_error(&recorder, &failure);
                return Invoked::TimedOut(limit);
            }
        },
    };
    match ran {
        Ok(output) => Invoked::Returned(output),
        Err(message) => Invoked::Panicked(message),
    }
}

/// The message a panic was raised with (`panic!("…")` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// How a panic is described to whoever waits for the outcome.
pub(crate) fn panicked(message: &str) -> String {
    format!("the handler panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        let invoked = invoke(
            HandlerKind::Rpc,
            "boom",
            tracing::Span::none(),
            None,
            async { panic!("boom {}", 1) },
        )
        .await;
        assert!(matches!(invoked, Invoked::<()>::Panicked(m) if m == "boom 1"));
        let invoked = invoke(
            HandlerKind::Rpc,
            "boom",
            tracing::Span::none(),
            None,
            async { std::panic::panic_any(7_u8) },
        )
        .await;
        assert!(matches!(invoked, Invoked::<()>::Panicked(m) if m == "a panic without a message"));
    }

    #[tokio::test]
    async fn a_handler_past_its_limit_times_out_and_one_within_returns() {
        let slow = invoke(
            HandlerKind::Command,
            "slow",
            tracing::Span::none(),
            Some(Duration::from_millis(10)),
            std::future::pending::<()>(),
        )
        .await;
        assert!(matches!(slow, Invoked::TimedOut(limit) if limit == Duration::from_millis(10)));
        let quick = invoke(
            HandlerKind::Command,
            "quick",
            tracing::Span::none(),
            Some(Duration::from_secs(10)),
            async { 5 },
        )
        .await;
        assert!(matches!(quick, Invoked::Returned(5)));
    }
}
