//! Serving the `#[subscribe]` methods of an instance from JetStream consumers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::{EventPublisher, MAX_DELIVER};
use crate::service::{EventCall, EventContext, SubscribeMode, SubscriptionDefinition, WorkFailure};
use crate::subject::{InstanceId, ServiceName};

/// How long the server waits for an ack before it redelivers an event.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a consumer without `durable` outlives its last instance.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// The consumer of one subscription, created (or found) before the instance serves.
pub(crate) struct Subscription {
    messages: consumer::pull::Stream,
    name: String,
}

/// The consumer name of a subscription: its `durable`, or the service and the pattern
/// (`.` → `_`, `*` → `any`, `>` → `all`), one per pattern so that two subscriptions of a
/// service never share one; broadcast consumers add the instance id.
pub(crate) fn consumer_name(
    service: &ServiceName,
    instance: &InstanceId,
    pattern: &str,
    mode: SubscribeMode,
    durable: Option<&str>,
) -> String {
    let base = match durable {
        Some(durable) => durable.to_owned(),
        None => {
            let pattern: String = pattern
                .split('.')
                .map(|token| match token {
                    "*" => "any",
                    ">" => "all",
                    token => token,
                })
                .collect::<Vec<_>>()
                .join("_");
            format!("{service}-{pattern}")
        }
    };
    match mode {
        SubscribeMode::Compete => base,
        SubscribeMode::Broadcast => format!("{base}-{instance}"),
    }
}

impl Subscription {
    /// Gets or creates the consumer of `definition` for this instance.
    pub(crate) async fn open<S>(
        nats: &async_nats::Client,
        service: &ServiceName,
        instance: &InstanceId,
        definition: &SubscriptionDefinition<S>,
    ) -> Result<Self, String> {
        let js = jetstream::new(nats.clone());
        let stream = super::events_stream(&js).await?;
        let name = consumer_name(
            service,
            instance,
            definition.pattern,
            definition.mode,
            definition.durable,
        );
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: definition.pattern.to_owned(),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: MAX_DELIVER,
                    inactive_threshold: if definition.durable.is_some() {
                        Duration::ZERO
                    } else {
                        INACTIVE_THRESHOLD
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("cannot create the event consumer {name}: {e}"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("cannot consume {name}: {e}"))?;
        Ok(Self { messages, name })
    }

    /// Hands every event to the handler (concurrently, within `permits`) until the
    /// consumer ends or the task is dropped.
    pub(crate) async fn serve<S: Send + Sync + 'static>(
        mut self,
        service: Arc<S>,
        instance: Arc<str>,
        events: EventPublisher,
        definition: &'static SubscriptionDefinition<S>,
        permits: Arc<Semaphore>,
    ) {
        while let Some(message) = self.messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::warn!(consumer = %self.name, %err, "event consumer error");
                    continue;
                }
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (service, instance, events) = (service.clone(), instance.clone(), events.clone());
            tokio::spawn(async move {
                handle(service, instance, events, definition, message).await;
                drop(permit);
            });
        }
    }
}

/// Runs the handler on one delivery and acks, naks or terminates it as the outcome says.
async fn handle<S: Send + Sync + 'static>(
    service: Arc<S>,
    instance: Arc<str>,
    events: EventPublisher,
    definition: &'static SubscriptionDefinition<S>,
    message: jetstream::Message,
) {
    let delivered = message
        .info()
        .map(|info| info.delivered)
        .unwrap_or(1)
        .max(1);
    let context = EventContext::new(message.subject.to_string(), instance, delivered as u64)
        .with_publisher(events);
    let call = EventCall::new(message.payload.clone(), context);
    let outcome = AssertUnwindSafe((definition.handler)(service, call))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(WorkFailure::Failed("the handler panicked".into())));
    let method = definition.method;
    let ack = match outcome {
        Ok(()) => AckKind::Ack,
        Err(WorkFailure::BadPayload(error)) => {
            tracing::error!(method, subject = %message.subject, %error, "event payload does not decode: dropped");
            metrics::counter!(crate::metrics::POISON_EVENTS, "method" => method).increment(1);
            AckKind::Term
        }
        Err(failure) if delivered >= MAX_DELIVER => {
            tracing::error!(method, subject = %message.subject, delivered, %failure, "event handler failed on every delivery: giving up");
            AckKind::Term
        }
        Err(failure) => {
            let backoff = Duration::from_millis(100 << (delivered - 1).clamp(0, 6));
            tracing::warn!(method, delivered, %failure, ?backoff, "event handler failed; redelivering");
            AckKind::Nak(Some(backoff))
        }
    };
    if let Err(err) = message.ack_with(ack).await {
        tracing::warn!(method, %err, "cannot acknowledge an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_distinct_per_pattern_and_legal() {
        let service = ServiceName::new("orders").expect("name");
        let instance = InstanceId::new("orders-1").expect("id");
        let name =
            |pattern, mode, durable| consumer_name(&service, &instance, pattern, mode, durable);
        assert_eq!(
            name("events.orders.*", SubscribeMode::Compete, None),
            "orders-events_orders_any"
        );
        assert_eq!(
            name("events.payments.>", SubscribeMode::Compete, None),
            "orders-events_payments_all"
        );
        assert_eq!(
            name("events.orders.*", SubscribeMode::Broadcast, None),
            "orders-events_orders_any-orders-1"
        );
        assert_eq!(
            name("events.orders.*", SubscribeMode::Compete, Some("audit")),
            "audit"
        );
    }
}
