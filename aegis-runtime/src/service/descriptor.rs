//! Descriptions of services with JSON Schemas, and the list of services linked into a binary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MissedTicks, ScheduleMode, SubscribeMode};

/// A service as tools see it: its methods with the JSON Schemas of their requests and
/// responses. Built by the function `#[service]` generates; see [`linked_services`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceDescriptor {
    /// The service name.
    pub name: String,
    /// The service version.
    pub version: String,
    /// RPC methods, plain and exclusive.
    pub rpcs: Vec<MethodDescriptor>,
    /// Commands.
    pub commands: Vec<MethodDescriptor>,
    /// Event subscriptions.
    pub subscriptions: Vec<SubscriptionDescriptor>,
    /// `#[schedule]` methods (absent in descriptors of older instances).
    #[serde(default)]
    pub schedules: Vec<ScheduleDescriptor>,
    /// The domain events it declares it publishes (`#[service(publishes = [...])]`; absent
    /// in descriptors of older instances).
    #[serde(default)]
    pub publishes: Vec<PublishedEventDescriptor>,
}

/// One RPC method or command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MethodDescriptor {
    /// The name on the wire.
    pub name: String,
    /// Whether only the active instance runs it.
    pub exclusive: bool,
    /// JSON Schema of the request parameters.
    pub request: Value,
    /// JSON Schema of the result.
    pub response: Value,
}

/// One event subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionDescriptor {
    /// The Rust method that handles the events.
    pub method: String,
    /// The subject pattern.
    pub pattern: String,
    /// Compete or broadcast.
    pub mode: SubscribeMode,
    /// The durable consumer name, if any.
    pub durable: Option<String>,
    /// JSON Schema of the event payload.
    pub payload: Value,
}

/// One domain event a service publishes: a [`DomainEvent`](crate::DomainEvent) type listed
/// in `#[service(publishes = [...])]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublishedEventDescriptor {
    /// The domain, the second token of the subject.
    pub domain: String,
    /// The event type, the third token of the subject.
    pub event_type: String,
    /// JSON Schema of the event payload.
    pub payload: Value,
}

impl PublishedEventDescriptor {
    /// The subject the event is published on: `events.{domain}.{event_type}`.
    pub fn subject(&self) -> String {
        crate::subject::declared_event(&self.domain, &self.event_type)
    }
}

/// One `#[schedule]` method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleDescriptor {
    /// The Rust method, which names the schedule.
    pub method: String,
    /// The interval in milliseconds, for `every = "…"`.
    pub every_ms: Option<u64>,
    /// The cron expression (seconds first, UTC), for `cron = "…"`.
    pub cron: Option<String>,
    /// Which instances run it.
    pub mode: ScheduleMode,
    /// What happens to ticks that could not start on time.
    pub missed: MissedTicks,
    /// The largest random delay before a run, in milliseconds.
    pub jitter_ms: u64,
}

#[doc(hidden)] // glue for the generated code, not public API
/// A linked service, registered by `#[service]` through `inventory` (const data only:
/// the descriptor is built when asked for).
#[derive(Debug)]
pub struct DescriptorEntry {
    /// The service name.
    pub name: &'static str,
    /// Builds the descriptor.
    pub describe: fn() -> ServiceDescriptor,
}

inventory::collect!(DescriptorEntry);

/// Two linked types that claim the same service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "more than one type in this binary is the service {name:?}; give each a distinct `#[service(name = \"…\")]`"
)]
pub struct DuplicateService {
    /// The name claimed twice.
    pub name: String,
}

/// Every service linked into this binary, sorted by name.
///
/// ```
/// use aegis_runtime::{linked_services, service};
///
/// struct Echo;
///
/// #[service(name = "echo-linked")]
/// impl Echo {
///     #[rpc]
///     async fn ping(&self) {}
/// }
///
/// let services = linked_services()?;
/// assert!(services.iter().any(|s| s.name == "echo-linked"));
/// # Ok::<(), aegis_runtime::DuplicateService>(())
/// ```
///
/// # Errors
/// [`DuplicateService`] when two types claim one name: only one of them could be served.
pub fn linked_services() -> Result<Vec<ServiceDescriptor>, DuplicateService> {
    let mut by_name = BTreeMap::new();
    for entry in inventory::iter::<DescriptorEntry> {
        if by_name.insert(entry.name, entry.describe).is_some() {
            return Err(DuplicateService {
                name: entry.name.to_owned(),
            });
        }
    }
    Ok(by_name.values().map(|describe| describe()).collect())
}

/// The JSON Schema of `T`, as a JSON value.
pub(crate) fn schema_of<T: schemars::JsonSchema + ?Sized>() -> Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}
