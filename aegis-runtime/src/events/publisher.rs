//! Publishing events.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde::Serialize;
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::client::TransportError;
use crate::codec::{self, Event};
use crate::events::DomainEvent;
use crate::jetstream_error::BoxError;
use crate::subject::{self, EventToken, InvalidName};
use crate::telemetry;

/// Publishes events in the Python SDK's envelope on `events.{domain}.{event_type}`: to
/// JetStream (stream `EVENTS`, created if missing), waiting for the stream to store each
/// one, or over core NATS when the server has no JetStream.
///
/// Handlers get one from their context (`ctx.publisher()`); clones share their state.
///
/// ```no_run
/// use aegis_runtime::events::EventPublisher;
/// use serde_json::json;
///
/// # async fn run(nats: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let events = EventPublisher::new(nats).with_source("billing");
/// events.publish("orders", "created", &json!({"order_id": "ORD-1"})).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EventPublisher {
    /// Behind one `Arc`: every RPC context holds a clone.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nats: async_nats::Client,
    source: String,
    /// Whether the `EVENTS` stream is there (checked, or created, once).
    jetstream: Arc<OnceCell<Option<jetstream::Context>>>,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The domain or the event type breaks the naming rule.
    #[error("{0}")]
    InvalidName(#[from] InvalidName),
    /// The payload cannot be encoded.
    #[error("the event cannot be encoded: {0}")]
    Encode(#[source] codec::EncodeError),
    /// NATS refused it or did not confirm it; the [`TransportError`] holds async-nats's
    /// error.
    #[error("the event was not published: {0}")]
    Transport(#[source] TransportError),
}

impl EventPublisher {
    /// A publisher over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                nats,
                source: "aegis".to_owned(),
                jetstream: Arc::default(),
            }),
        }
    }

    /// Sets the envelope's `source` (the publishing service).
    #[must_use]
    pub fn with_source(self, source: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                nats: self.inner.nats.clone(),
                source: source.into(),
                jetstream: self.inner.jetstream.clone(),
            }),
        }
    }

    /// Publishes `payload` as event `event_type` of `domain`.
    ///
    /// # Errors
    /// [`PublishError`]: a name that breaks the rule, a payload that does not encode, or
    /// NATS not taking it.
    pub async fn publish<P: Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: &P,
    ) -> Result<(), PublishError> {
        let subject = subject::event(&EventToken::new(domain)?, &EventToken::new(event_type)?);
        let span = crate::telemetry::traced_span!("aegis.publish", domain, event_type,);
        // The subscribers' handler spans join the publisher's trace through the headers,
        // sent only when a subscriber records this span.
        let trace = telemetry::start(&span, None);
        let mut event =
            Event::new(domain, event_type, payload).with_source(self.inner.source.as_str());
        let headers = trace.map(|trace| {
            // One trace id format on both sides: the envelope's is the W3C one too.
            event.trace_id = trace.trace_id.to_string();
            let mut headers = HeaderMap::new();
            trace.inject(&mut headers);
            headers
        });
        let sent = self
            .send(subject, headers, event)
            .instrument(span.clone())
            .await;
        if let Err(err) = &sent {
            telemetry::record_error(&span, err);
        }
        sent
    }

    /// Publishes a [`DomainEvent`] on the subject its type names.
    ///
    /// ```no_run
    /// # async fn run(events: aegis_runtime::events::EventPublisher) -> Result<(), aegis_runtime::events::PublishError> {
    /// #[derive(serde::Serialize, aegis_runtime::DomainEvent)]
    /// #[event(domain = "orders", event_type = "cancelled")]
    /// struct OrderCancelled {
    ///     order_id: String,
    /// }
    ///
    /// events.emit(&OrderCancelled { order_id: "ORD-1".into() }).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn emit<E: DomainEvent>(&self, event: &E) -> Result<(), PublishError> {
        self.publish(E::DOMAIN, E::EVENT_TYPE, event).await
    }

    async fn send<P: Serialize>(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        event: Event<&P>,
    ) -> Result<(), PublishError> {
        let bytes = codec::encode(&event).map_err(PublishError::Encode)?;
        let transport = |e: BoxError| PublishError::Transport(TransportError::new(e));
        match (self.stream().await, headers) {
            (Some(js), Some(headers)) => {
                js.publish_with_headers(subject, headers, bytes.into())
                    .await
                    .map_err(|e| transport(e.into()))?
                    .await
                    .map_err(|e| transport(e.into()))?;
            }
            (Some(js), None) => {
                js.publish(subject, bytes.into())
                    .await
                    .map_err(|e| transport(e.into()))?
                    .await
                    .map_err(|e| transport(e.into()))?;
            }
            (None, Some(headers)) => self
                .inner
                .nats
                .publish_with_headers(subject, headers, bytes.into())
                .await
                .map_err(|e| transport(e.into()))?,
            (None, None) => self
                .inner
                .nats
                .publish(subject, bytes.into())
                .await
                .map_err(|e| transport(e.into()))?,
        }
        Ok(())
    }

    async fn stream(&self) -> Option<&jetstream::Context> {
        self.inner
            .jetstream
            .get_or_init(|| async {
                let js = jetstream::new(self.inner.nats.clone());
                match super::events_stream(&js).await {
                    Ok(_) => Some(js),
                    Err(err) => {
                        tracing::warn!(%err, "publishing events over core NATS: they are not stored");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }
}
