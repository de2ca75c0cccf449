//! Event types that carry their own domain and type name.

use serde::Serialize;

/// An event type that names its subject itself: `events.{DOMAIN}.{EVENT_TYPE}`.
///
/// A service lists the domain events it publishes in `#[service(publishes = [...])]`, so
/// its descriptor and its [AsyncAPI document](crate::asyncapi) show them, and sends them
/// with `ctx.emit(&event)`, which cannot get the subject wrong. Derive it: the derive
/// checks both names against the event token rule at compile time.
///
/// ```
/// use aegis_runtime::DomainEvent;
///
/// #[derive(serde::Serialize, schemars::JsonSchema, DomainEvent)]
/// #[event(domain = "orders", event_type = "cancelled")]
/// struct OrderCancelled {
///     order_id: String,
/// }
///
/// assert_eq!(OrderCancelled::DOMAIN, "orders");
/// assert_eq!(OrderCancelled::EVENT_TYPE, "cancelled");
/// ```
///
/// An implementation by hand works too; a name that breaks the rule then shows as a
/// [`PublishError`](crate::events::PublishError) when the event is emitted.
pub trait DomainEvent: Serialize {
    /// The event's domain, the second token of its subject (`orders`).
    const DOMAIN: &'static str;
    /// The event's type, the third token of its subject (`cancelled`).
    const EVENT_TYPE: &'static str;
}
