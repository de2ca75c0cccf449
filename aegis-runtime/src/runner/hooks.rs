//! The `#[on_start]` and `#[on_stop]` hooks, run through the serving core so that they follow
//! the same panic rule as every handler.

use std::sync::Arc;

use super::Core;
use super::invoke::{self, HandlerKind, Invoked};
use crate::service::{LifecycleHook, WorkFailure};
use crate::telemetry;

/// Why the service's `#[on_start]` method failed: the source of
/// [`StartError::Hook`](super::StartError::Hook).
///
/// ```
/// use aegis_runtime::StartError;
/// use aegis_runtime::runner::HookError;
///
/// fn panicked(err: &StartError) -> bool {
///     matches!(err, StartError::Hook(HookError::Panicked { .. }))
/// }
/// # let _ = panicked;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The method returned an error.
    #[error("{0}")]
    Failed(#[source] WorkFailure),
    /// The method panicked.
    #[error("the handler panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// The method ran past its limit and was dropped.
    #[error("it ran longer than {0:?}")]
    TimedOut(std::time::Duration),
}

/// Runs the `#[on_start]` hook of `service`: `Err` with what went wrong when it failed or
/// panicked (the start then fails before anything is registered).
pub(super) async fn on_start<S>(
    service_name: &'static str,
    hook: LifecycleHook<S>,
    service: Arc<S>,
) -> Result<(), HookError> {
    let span = hook_span(HandlerKind::OnStart, service_name);
    let ran = invoke::invoke(
        HandlerKind::OnStart,
        "on_start",
        span.clone(),
        None,
        hook(service),
    );
    match ran.await {
        Invoked::Returned(Ok(())) => Ok(()),
        Invoked::Returned(Err(err)) => {
            telemetry::record_error(&span, &err);
            Err(HookError::Failed(err))
        }
        Invoked::Panicked(message) => Err(HookError::Panicked { message }),
        Invoked::TimedOut(limit) => Err(HookError::TimedOut(limit)),
    }
}

/// Runs the `#[on_stop]` hook of the instance, if it has one, for at most `limit`. A
/// failure is logged, a panic logged and counted, a hook still running after `limit`
/// abandoned; the stop goes on either way.
pub(super) async fn on_stop(core: &Core, limit: std::time::Duration) {
    let Some(hook) = &core.on_stop else { return };
    let span = hook_span(HandlerKind::OnStop, core.name);
    span.record("instance", tracing::field::display(&core.instance_id));
    match invoke::invoke(
        HandlerKind::OnStop,
        "on_stop",
        span.clone(),
        Some(limit),
        (hook.0)(),
    )
    .await
    {
        Invoked::Returned(Ok(())) | Invoked::Panicked(_) => {}
        Invoked::Returned(Err(err)) => {
            telemetry::record_error(&span, &err);
            tracing::warn!(instance = %core.instance_id, %err, "the service's #[on_stop] method failed");
        }
        Invoked::TimedOut(limit) => {
            tracing::warn!(instance = %core.instance_id, ?limit, "the service's #[on_stop] method did not finish within the drain timeout; abandoned");
        }
    }
}

/// The span a lifecycle hook runs in, with a trace context (that of the span the instance
/// is started or stopped from, or a new trace), so that the calls the hook makes are traced
/// under it.
fn hook_span(kind: HandlerKind, service: &'static str) -> tracing::Span {
    let span = match kind {
        HandlerKind::OnStop => crate::telemetry::traced_span!(
            "on_stop",
            kind = kind.as_str(),
            service,
            instance = tracing::field::Empty,
        ),
        _ => crate::telemetry::traced_span!("on_start", kind = kind.as_str(), service,),
    };
    telemetry::start(&span, None);
    span
}
