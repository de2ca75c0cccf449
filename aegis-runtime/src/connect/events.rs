//! What happens to a connection after it is made, logged and counted: disconnections,
//! reconnections, and the server's errors, a refused permission above all, which async-nats
//! otherwise only reports to an event callback nobody set.

use async_nats::{Event, ServerError};

/// Logs `event` and counts it in `aegis_nats_connection_events_total`.
pub(super) async fn record(event: Event) {
    let label = match &event {
        Event::Connected => "connected",
        Event::Disconnected => "disconnected",
        Event::LameDuckMode => "lame_duck",
        Event::Draining => "draining",
        Event::Closed => "closed",
        Event::SlowConsumer(_) => "slow_consumer",
        Event::ServerError(error) if is_permission_violation(error) => "permissions_violation",
        Event::ServerError(_) => "server_error",
        Event::ClientError(_) => "client_error",
    };
    metrics::counter!(crate::metrics::CONNECTION_EVENTS, "event" => label).increment(1);
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        Event::LameDuckMode => {
            tracing::warn!(
                "the NATS server is shutting down (lame duck mode); reconnecting to another"
            )
        }
        Event::Draining | Event::Closed => tracing::info!(event = label, "NATS connection"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                sid,
                "a subscription cannot keep up; the NATS client drops its messages"
            )
        }
        // The server's own words name the operation and the subject.
        Event::ServerError(error) if is_permission_violation(&error) => tracing::error!(
            %error,
            "the NATS server refused an operation: the user lacks this permission (docs/security.md)"
        ),
        Event::ServerError(error) => tracing::warn!(%error, "the NATS server reported an error"),
        Event::ClientError(error) => tracing::warn!(%error, "NATS client error"),
    }
}

/// The server's words when `event` is a refused permission.
pub(super) fn permission_violation(event: &Event) -> Option<String> {
    match event {
        Event::ServerError(error) if is_permission_violation(error) => Some(error.to_string()),
        _ => None,
    }
}

/// Whether the server's error is a refused permission (`Permissions Violation for Publish
/// to "…"`, `… for Subscription to "…"`).
fn is_permission_violation(error: &ServerError) -> bool {
    matches!(error, ServerError::Other(text) if text.to_ascii_lowercase().contains("permissions violation"))
}
