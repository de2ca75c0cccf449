//! The `#[on_start]` and `#[on_stop]` hooks, run through the serving core so that they follow
//! the same panic rule as every handler.

use std::sync::Arc;

use super::Core;
use super::invoke::{self, HandlerKind, Invoked};
use crate::service::{LifecycleHook, WorkFailure};

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
    let span = tracing::info_span!("on_start", service = service_name);
    match invoke::invoke(HandlerKind::OnStart, "on_start", span, None, hook(service)).await {
        Invoked::Returned(Ok(())) => Ok(()),
        Invoked::Returned(Err(err)) => Err(HookError::Failed(err)),
        Invoked::Panicked(message) => Err(HookError::Panicked { message }),
        Invoked::TimedOut(limit) => Err(HookError::TimedOut(limit)),
    }
}

/// Runs the `#[on_stop]` hook of the instance, if it has one, for at most `limit`. A
/// failure is logged, a panic logged and counted, a hook still running after `limit`
/// abandoned; the stop goes on either way.
pub(super) async fn on_stop(core: &Core, limit: std::time::Duration) {
    let Some(hook) = &core.on_stop else { return };
    let span = tracing::info_span!("on_stop", instance = %core.instance_id);
    match invoke::invoke(
        HandlerKind::OnStop,
        "on_stop",
        span,
        Some(limit),
        (hook.0)(),
    )
    .await
    {
        Invoked::Returned(Ok(())) | Invoked::Panicked(_) => {}
        Invoked::Returned(Err(err)) => {
            tracing::warn!(instance = %core.instance_id, %err, "the service's #[on_stop] method failed");
        }
        Invoked::TimedOut(limit) => {
            tracing::warn!(instance = %core.instance_id, ?limit, "the service's #[on_stop] method did not finish within the drain timeout; abandoned");
        }
    }
}
