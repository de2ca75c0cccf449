//! Events: publishing them, and what the `#[subscribe]` methods of an instance (served by
//! the runner) rely on.
//!
//! Events travel on `events.{domain}.{event_type}` in the Python SDK's Event envelope. The
//! stream `EVENTS` (on `events.>`, created if missing, an existing one used as it is) keeps
//! them, so that subscribers receive them through JetStream consumers:
//!
//! | `#[subscribe(…)]` | consumer | who gets an event |
//! |---|---|---|
//! | `mode = "compete"` (default) | one pull consumer per (service, pattern), shared by its instances | one instance of the service |
//! | `mode = "broadcast"` | one pull consumer per (service, pattern, instance) | every instance |
//! | `durable = "name"` | named `name` (broadcast: `name-{instance}`), kept while no instance runs | events published while the service was down are delivered when it starts |
//!
//! Without `durable`, a consumer is deleted a minute after its last instance stopped.
//! A handler error or panic is retried with backoff (nak) up to [`MAX_DELIVER`] deliveries,
//! then given up with an error log; an event whose payload does not decode is terminated at
//! once (a poison message is never redelivered) and counted in `aegis_events_poison_total`.

mod domain;
mod publisher;

use async_nats::jetstream::{self, stream};

pub use domain::DomainEvent;
pub use publisher::{EventPublisher, PublishError};

/// How many times an event is delivered to a failing handler before it is given up.
pub const MAX_DELIVER: i64 = 5;

/// How long the `EVENTS` stream keeps events it creates: a day.
const EVENTS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Gets the `EVENTS` stream, creating it (limits retention on `events.>`, a day) if
/// missing; an existing one is used as it is.
pub(crate) async fn events_stream(
    js: &jetstream::Context,
) -> Result<stream::Stream, crate::JetStreamError> {
    crate::streams::get_or_create(
        js,
        stream::Config {
            name: crate::subject::EVENTS_STREAM.to_owned(),
            subjects: vec!["events.>".to_owned()],
            max_age: EVENTS_MAX_AGE,
            ..Default::default()
        },
    )
    .await
}

/// A context made outside a running instance has no connection to publish on.
#[derive(Debug, thiserror::Error)]
#[error("this context has no NATS connection (it was not made by a running instance)")]
struct NoConnection;

/// Publishes through the publisher of a handler's context, if it has one.
pub(crate) async fn publish_through<P: serde::Serialize>(
    events: Option<&EventPublisher>,
    domain: &str,
    event_type: &str,
    payload: &P,
) -> Result<(), PublishError> {
    match events {
        Some(events) => events.publish(domain, event_type, payload).await,
        None => Err(PublishError::Transport(crate::client::TransportError::new(
            NoConnection,
        ))),
    }
}
