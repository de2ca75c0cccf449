//! JetStream deliveries of events: serving the `#[subscribe]` methods of an instance from
//! their consumers, each event through the serving core ([`super::invoke`]).
//!
//! A handler that fails or panics is redelivered with backoff (nak) up to
//! [`MAX_DELIVER`] deliveries, then terminated; an event whose payload does not decode is
//! terminated at once and counted as poison.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::invoke::{self, Delivery, HandlerKind, Invoked};
use crate::JetStreamError;
use crate::events::{EventPublisher, MAX_DELIVER};
use crate::service::{EventCall, EventContext, SubscribeMode, SubscriptionDefinition, WorkFailure};
use crate::subject::{InstanceId, ServiceName};
use crate::telemetry::{self, TraceContext};

/// How long the server waits for an ack before it redelivers an event.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a consumer without `durable` outlives its last instance.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// The deliveries of one subscription: from Aegis's pull consumer, or from the Python
/// SDK's push consumer shared with SDK instances.
type Deliveries = futures_util::stream::BoxStream<
    'static,
    Result<jetstream::Message, Box<dyn std::error::Error + Send + Sync>>,
>;

/// The consumer of one subscription, created (or found) before the instance serves.
pub(crate) struct Subscription {
    messages: Deliveries,
    name: String,
}

/// The durable the Python SDK's compete subscriptions of `service` share (and their deliver
/// group): the service name, lowercased (the SDK's `ServiceName` lowercases it).
fn sdk_compete_durable(service: &ServiceName) -> String {
    service.to_lowercase()
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
    /// Gets or creates the consumer of `definition` for this instance. With
    /// `share_with_sdk`, a compete subscription of an exact subject joins the Python
    /// SDK's consumer of it (see [`Subscription::open_shared`]).
    pub(crate) async fn open<S>(
        nats: &async_nats::Client,
        service: &ServiceName,
        instance: &InstanceId,
        definition: &SubscriptionDefinition<S>,
        share_with_sdk: bool,
    ) -> Result<Self, JetStreamError> {
        let js = jetstream::new(nats.clone());
        let stream = crate::events::events_stream(&js).await?;
        let exact = !definition.pattern.contains(['*', '>']);
        if share_with_sdk
            && exact
            && definition.mode == SubscribeMode::Compete
            && let Some(shared) =
                Self::open_shared(nats, &stream, service, definition.pattern).await?
        {
            return Ok(shared);
        }
        let name = consumer_name(
            service,
            instance,
            definition.pattern,
            definition.mode,
            definition.durable,
        );
        let config = consumer::pull::Config {
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
        };
        let consumer: consumer::PullConsumer = crate::jetstream_error::patiently(
            || {
                format!(
                    "create the event consumer {name} of the stream {}",
                    crate::subject::EVENTS_STREAM
                )
            },
            || stream.get_or_create_consumer(&name, config.clone()),
        )
        .await?;
        let messages = consumer.messages().await.map_err(|e| {
            JetStreamError::from_nats(format!("consume the event consumer {name}"), e)
        })?;
        Ok(Self {
            messages: messages.map(|m| m.map_err(Into::into)).boxed(),
            name,
        })
    }

    /// Joins the Python SDK's compete consumer of `subject`, so each event is handled once
    /// by the Rust and the SDK instances together: the push consumer the SDK makes for a
    /// compete subscription (durable and deliver group: the service name, lowercased),
    /// created in that form when missing, so SDK instances started later bind to it. This
    /// instance takes its deliveries in the same deliver group.
    ///
    /// `None` when the SDK's durable exists for another subject: the SDK shares one durable
    /// among all compete subscriptions of a service and filters it on the first one
    /// (upstream defect B9), so only that subscription can be shared.
    async fn open_shared(
        nats: &async_nats::Client,
        stream: &jetstream::stream::Stream,
        service: &ServiceName,
        subject: &str,
    ) -> Result<Option<Self>, JetStreamError> {
        let name = sdk_compete_durable(service);
        let config = consumer::push::Config {
            durable_name: Some(name.clone()),
            deliver_subject: nats.new_inbox(),
            deliver_group: Some(name.clone()),
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            ..Default::default()
        };
        let consumer: consumer::PushConsumer = crate::jetstream_error::patiently(
            || {
                format!(
                    "join the Python SDK's event consumer {name} of the stream {}",
                    crate::subject::EVENTS_STREAM
                )
            },
            || stream.get_or_create_consumer(&name, config.clone()),
        )
        .await?;
        let found = &consumer.cached_info().config;
        if found.filter_subject != subject || found.deliver_group.as_deref() != Some(&name) {
            tracing::warn!(
                consumer = %name, %subject, filter = %found.filter_subject,
                "the Python SDK's compete consumer of this service is for another subject; this subscription keeps a consumer of its own (events of it are handled once by the Rust and once by the SDK instances)"
            );
            return Ok(None);
        }
        let messages = consumer.messages().await.map_err(|e| {
            JetStreamError::from_nats(format!("consume the event consumer {name}"), e)
        })?;
        Ok(Some(Self {
            messages: messages.map(|m| m.map_err(Into::into)).boxed(),
            name,
        }))
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
            let delivered = message
                .info()
                .map(|info| info.delivered)
                .unwrap_or(1)
                .max(1);
            invoke::serve(
                permit,
                EventDelivery {
                    service: service.clone(),
                    instance: instance.clone(),
                    events: events.clone(),
                    definition,
                    message,
                    delivered,
                },
            );
        }
    }
}

/// One JetStream delivery of an event to a `#[subscribe]` method.
struct EventDelivery<S: 'static> {
    service: Arc<S>,
    instance: Arc<str>,
    events: EventPublisher,
    definition: &'static SubscriptionDefinition<S>,
    message: jetstream::Message,
    /// How many times the event has been delivered, this time included.
    delivered: i64,
}

impl<S: Send + Sync + 'static> Delivery for EventDelivery<S> {
    type Output = Result<(), WorkFailure>;

    fn kind(&self) -> HandlerKind {
        HandlerKind::Event
    }

    fn method(&self) -> &'static str {
        self.definition.method
    }

    fn span(&self) -> tracing::Span {
        crate::telemetry::traced_span!(
            "event",
            kind = "event",
            method = self.definition.method,
            subject = %self.message.subject,
            instance = %self.instance,
            delivery = self.delivered,
        )
    }

    fn remote_trace(&self) -> Option<TraceContext> {
        TraceContext::extract(self.message.headers.as_ref())
    }

    fn start(&mut self) -> impl Future<Output = Self::Output> + Send + 'static {
        let context = EventContext::new(
            self.message.subject.to_string(),
            self.instance.clone(),
            self.delivered as u64,
        )
        .with_publisher(self.events.clone());
        let call = EventCall::new(self.message.payload.clone(), context);
        (self.definition.handler)(self.service.clone(), call)
    }

    /// Acks, naks or terminates the event as the outcome says.
    async fn settle(self, invoked: Invoked<Self::Output>) {
        let (method, delivered) = (self.definition.method, self.delivered);
        let subject = &self.message.subject;
        let failure = match invoked {
            Invoked::Returned(Ok(())) => None,
            Invoked::Returned(Err(failure)) => Some(failure),
            // A panic is a failure of this delivery, like a returned error: retried with the
            // same bound (the handler may depend on something that recovers).
            Invoked::Panicked(message) => Some(WorkFailure::Failed(invoke::panicked(&message))),
            Invoked::TimedOut(limit) => Some(WorkFailure::Failed(format!(
                "the handler ran longer than {limit:?}"
            ))),
        };
        if let Some(failure) = &failure {
            telemetry::record_error(&tracing::Span::current(), failure);
        }
        let ack = match failure {
            None => AckKind::Ack,
            Some(WorkFailure::BadPayload(error)) => {
                tracing::error!(method, %subject, %error, "event payload does not decode: dropped");
                metrics::counter!(crate::metrics::POISON_EVENTS, "method" => method).increment(1);
                AckKind::Term
            }
            Some(failure) if delivered >= MAX_DELIVER => {
                tracing::error!(method, %subject, delivered, %failure, "event handler failed on every delivery: giving up");
                AckKind::Term
            }
            Some(failure) => {
                let backoff = Duration::from_millis(100 << (delivered - 1).clamp(0, 6));
                tracing::warn!(method, delivered, %failure, ?backoff, "event handler failed; redelivering");
                AckKind::Nak(Some(backoff))
            }
        };
        crate::metrics::event_acked(method, &ack);
        if let Err(err) = self.message.ack_with(ack).await {
            tracing::warn!(method, %err, "cannot acknowledge an event");
        }
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
