//! What event and command handlers receive besides their payload.

use crate::codec::{self, CommandProgress};
use crate::subject;

/// What an event handler knows about the event it handles.
///
/// Take `ctx: &EventContext` in a `#[subscribe]` method to see it.
#[derive(Debug, Clone)]
pub struct EventContext {
    subject: String,
    instance_id: std::sync::Arc<str>,
    delivery: u64,
    events: Option<crate::events::EventPublisher>,
}

impl EventContext {
    /// A context for an event received on `subject`, delivered for the `delivery`-th time.
    pub fn new(
        subject: impl Into<String>,
        instance_id: std::sync::Arc<str>,
        delivery: u64,
    ) -> Self {
        Self {
            subject: subject.into(),
            instance_id,
            delivery,
            events: None,
        }
    }

    /// Lets the handler publish events through `events`.
    pub(crate) fn with_publisher(mut self, events: crate::events::EventPublisher) -> Self {
        self.events = Some(events);
        self
    }

    /// Publishes `payload` as event `event_type` of `domain`, with this service as its
    /// source; see [`RpcContext::publish`](crate::RpcContext::publish).
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

    /// Publishes a [`DomainEvent`](crate::DomainEvent) on the subject its type names, with
    /// this service as its source; see [`RpcContext::emit`](crate::RpcContext::emit).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn emit<E: crate::DomainEvent>(
        &self,
        event: &E,
    ) -> Result<(), crate::events::PublishError> {
        self.publish(E::DOMAIN, E::EVENT_TYPE, event).await
    }

    /// The subject the event was published on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The instance handling it.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// How many times it has been delivered (1 the first time).
    pub fn delivery(&self) -> u64 {
        self.delivery
    }
}

/// Reports the progress of a running command on `commands.progress.{command_id}`.
///
/// Take `progress: Progress` in a `#[command]` method.
///
/// ```no_run
/// # async fn run(progress: aegis_runtime::Progress) -> Result<(), async_nats::PublishError> {
/// progress.report(50.0, "half way").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Progress {
    nats: async_nats::Client,
    command_id: String,
}

impl Progress {
    /// Progress of the command whose `message_id` is `command_id`.
    pub fn new(nats: async_nats::Client, command_id: impl Into<String>) -> Self {
        Self {
            nats,
            command_id: command_id.into(),
        }
    }

    /// The command's id.
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    /// Publishes that the command is `percent` (clamped to 0–100) done, at step `status`.
    ///
    /// # Errors
    /// The client's publish error.
    pub async fn report(
        &self,
        percent: f64,
        status: impl Into<String>,
    ) -> Result<(), async_nats::PublishError> {
        let percent = if percent.is_nan() {
            0.0
        } else {
            percent.clamp(0.0, 100.0)
        };
        let message = CommandProgress::new(self.command_id.clone(), percent, status);
        // A progress message always encodes: strings and finite floats only.
        let payload = codec::encode(&message).unwrap_or_default();
        self.nats
            .publish(subject::command_progress(&self.command_id), payload.into())
            .await
    }
}
