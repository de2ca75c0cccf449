//! Events in a document: the subscriptions of a service (`receive`) and the domain events
//! it declares it publishes (`send`).

use serde_json::{Value, json};

use super::{Document, MSGPACK, reference, refine};
use crate::service::{PublishedEventDescriptor, SubscribeMode, SubscriptionDescriptor};

impl Document {
    /// A domain event the service publishes (`#[service(publishes = [...])]`): its subject
    /// as a channel, with a `send` operation.
    pub(super) fn published(&mut self, service: &str, event: &PublishedEventDescriptor) {
        let (domain, event_type) = (event.domain.as_str(), event.event_type.as_str());
        let key = format!("{service}.publish.{domain}.{event_type}");
        let payload = self.schemas.root(&format!("{key}.payload"), &event.payload);
        self.event_message(
            &key,
            format!("{domain} {event_type}"),
            json!({
                "domain": {"const": domain},
                "event_type": {"const": event_type},
                "payload": payload,
            }),
        );
        let subject = event.subject();
        self.channels.insert(
            key.clone(),
            json!({
                "address": subject,
                "title": format!("{domain} {event_type} events"),
                "description": format!(
                    "Events `{event_type}` of the domain `{domain}`, kept by the JetStream \
                     stream `EVENTS`."
                ),
                "messages": {"event": reference(&["components", "messages", &format!("{key}.event")])},
            }),
        );
        self.operations.insert(
            key.clone(),
            json!({
                "action": "send",
                "channel": reference(&["channels", &key]),
                "title": format!("{service} publishes {domain}.{event_type}"),
                "summary": format!("{service} publishes events on `{subject}`."),
                "tags": [{"name": "event"}],
                "messages": [reference(&["channels", &key, "messages", "event"])],
            }),
        );
    }

    /// An event subscription: a channel on its pattern and a `receive` operation.
    pub(super) fn subscription(&mut self, service: &str, subscription: &SubscriptionDescriptor) {
        let method = subscription.method.as_str();
        let key = format!("{service}.event.{method}");
        let payload = self
            .schemas
            .root(&format!("{key}.payload"), &subscription.payload);
        self.event_message(
            &key,
            format!("Event for {method}"),
            json!({ "payload": payload }),
        );
        let (mode, who) = match subscription.mode {
            SubscribeMode::Compete => ("compete", "one instance of the service handles each event"),
            SubscribeMode::Broadcast => ("broadcast", "every instance handles every event"),
        };
        let durable = match &subscription.durable {
            Some(name) => format!(
                " Durable consumer `{name}`: events published while no instance runs are delivered when one starts."
            ),
            None => String::new(),
        };
        self.channels.insert(
            key.clone(),
            json!({
                "address": subscription.pattern,
                "title": format!("{service} subscription {method}"),
                "description": format!(
                    "Events on the NATS subject pattern `{}` (`*` stands for one token, a final \
                     `>` for one or more), delivered from the JetStream stream `EVENTS`; {mode}: \
                     {who}.{durable}",
                    subscription.pattern
                ),
                "messages": {"event": reference(&["components", "messages", &format!("{key}.event")])},
            }),
        );
        self.operations.insert(
            key.clone(),
            json!({
                "action": "receive",
                "channel": reference(&["channels", &key]),
                "title": format!("{service}.{method}"),
                "summary": format!("{service} handles events on `{}` with `{method}`.", subscription.pattern),
                "tags": [{"name": "event"}],
                "messages": [reference(&["channels", &key, "messages", "event"])],
                "x-aegis-mode": mode,
                "x-aegis-durable": subscription.durable,
            }),
        );
    }

    /// The message `{key}.event`: the event envelope, its properties refined by `fields`
    /// (at least the `payload`'s schema).
    fn event_message(&mut self, key: &str, title: String, fields: Value) {
        let base = self.envelopes().event.clone();
        self.messages.insert(
            format!("{key}.event"),
            json!({
                "name": "event",
                "title": title,
                "summary": "The event envelope, `payload` holding the event data.",
                "description": "MessagePack by default; JSON is accepted too.",
                "contentType": MSGPACK,
                "payload": refine(&base, fields),
            }),
        );
    }
}
