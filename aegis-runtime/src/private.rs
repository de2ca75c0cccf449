//! Not public API: the items generated code names, through `::aegis_runtime::__private`.
//!
//! Everything `#[service]` expands to goes through this module, so users never add serde,
//! schemars, inventory or async-nats to their own dependencies for the generated code.

#![allow(missing_docs)]

pub use ::async_nats;
pub use ::inventory;
pub use ::schemars;
pub use ::serde;
pub use ::std::boxed::Box;
pub use ::std::string::String;
pub use ::std::sync::Arc;

pub use crate::client::{CallError, CallOptions, ServiceClient};
pub use crate::client::{CommandHandle, CommandOptions};
pub use crate::service::{
    BoxFuture, CommandCall, CommandDefinition, CommandOutcome, Completed, DescriptorEntry,
    EventCall, MethodDescriptor, MissedTicks, NoParams, PublishedEventDescriptor, Reply, RpcCall,
    RpcContext, RpcDefinition, ScheduleContext, ScheduleDefinition, ScheduleDescriptor,
    ScheduleMode, Service, ServiceDefinition, ServiceDescriptor, SubscribeMode,
    SubscriptionDefinition, SubscriptionDescriptor, Timing, UnitOutcome, WorkFailure,
};

/// A client of a service whose name the macro already checked.
pub fn client_for(nats: async_nats::Client, service: &'static str) -> ServiceClient {
    ServiceClient::for_service(nats, crate::subject::ServiceName::from_checked(service))
}

/// Asks for the JSON Schema of `T` without requiring `T: JsonSchema`: with
/// [`ProbeSchema`] and [`ProbeNoSchema`] in scope, `schema_probe::<T>().schema()` is the
/// schema when `T` has one, and `null` otherwise (method resolution tries `SchemaProbe<T>`
/// before `&SchemaProbe<T>`). The descriptor asks this way so a type without
/// `JsonSchema` is reported once, by [`assert_schema`] at the user's type, and not once
/// more per schema in the descriptor. The `null` is never served: the assertion fails the
/// build first.
pub struct SchemaProbe<T: ?Sized>(::core::marker::PhantomData<T>);

/// See [`SchemaProbe`].
pub const fn schema_probe<T: ?Sized>() -> SchemaProbe<T> {
    SchemaProbe(::core::marker::PhantomData)
}

/// The schema of a type that has one; see [`SchemaProbe`].
pub trait ProbeSchema {
    fn schema(self) -> serde_json::Value;
}

impl<T: schemars::JsonSchema + ?Sized> ProbeSchema for SchemaProbe<T> {
    fn schema(self) -> serde_json::Value {
        crate::service::schema_of::<T>()
    }
}

/// The fallback for a type without a schema (already reported); see [`SchemaProbe`].
pub trait ProbeNoSchema {
    fn schema(self) -> serde_json::Value;
}

impl<T: ?Sized> ProbeNoSchema for &SchemaProbe<T> {
    fn schema(self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Asks for the subject tokens of a `publishes = [...]` type without requiring
/// `T: DomainEvent`, as [`SchemaProbe`] asks for a schema: a type that is not a domain
/// event is reported once, by [`assert_domain_event`], and its descriptor entry (empty
/// tokens) is never served, as the assertion fails the build first.
pub struct EventProbe<T: ?Sized>(::core::marker::PhantomData<T>);

/// See [`EventProbe`].
pub const fn event_probe<T: ?Sized>() -> EventProbe<T> {
    EventProbe(::core::marker::PhantomData)
}

/// The descriptor entry of a domain event; see [`EventProbe`].
pub trait ProbeEvent {
    fn published(self, payload: serde_json::Value) -> PublishedEventDescriptor;
}

impl<T: crate::DomainEvent> ProbeEvent for EventProbe<T> {
    fn published(self, payload: serde_json::Value) -> PublishedEventDescriptor {
        PublishedEventDescriptor {
            domain: T::DOMAIN.to_owned(),
            event_type: T::EVENT_TYPE.to_owned(),
            payload,
        }
    }
}

/// The fallback for a type that is not a domain event (already reported); see
/// [`EventProbe`].
pub trait ProbeNoEvent {
    fn published(self, payload: serde_json::Value) -> PublishedEventDescriptor;
}

impl<T: ?Sized> ProbeNoEvent for &EventProbe<T> {
    fn published(self, payload: serde_json::Value) -> PublishedEventDescriptor {
        PublishedEventDescriptor {
            domain: String::new(),
            event_type: String::new(),
            payload,
        }
    }
}

/// Bound of request, event and command payloads; asserted at the user's type so errors
/// point there. `JsonSchema` is asserted on its own ([`SchemaType`]), so a type missing
/// only that derive gets one error that names it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis request type",
    label = "needs `Serialize` and `Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait RequestType: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> RequestType for T {}

/// Bound of RPC and command results; asserted at the user's type so errors point there.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis response type",
    label = "needs `Serialize` and `Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait ResponseType: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> ResponseType for T {}

/// Bound of every payload and result: the descriptor publishes their JSON Schema.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `schemars::JsonSchema`",
    label = "Aegis publishes the JSON Schema of this type",
    note = "derive it: `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait SchemaType: schemars::JsonSchema {}
impl<T: schemars::JsonSchema + ?Sized> SchemaType for T {}

/// Bound of the types in `#[service(publishes = [...])]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "listed in `publishes`, so it needs `DomainEvent`",
    note = "derive it: `#[derive(serde::Serialize, schemars::JsonSchema, aegis_runtime::DomainEvent)]` with `#[event(domain = \"…\", event_type = \"…\")]`"
)]
pub trait DomainEventType: crate::DomainEvent {}
impl<T: crate::DomainEvent> DomainEventType for T {}

/// Bound of handler error types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis handler error",
    label = "needs `Display`",
    note = "the error travels to the caller as its `Display` text"
)]
pub trait ErrorType: ::core::fmt::Display {}
impl<T: ::core::fmt::Display> ErrorType for T {}

/// Bound of service types: shared by concurrent handlers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis service",
    label = "must be `Send + Sync + 'static`",
    note = "handlers run concurrently on many tasks; keep shared state in `Arc`/`Mutex`"
)]
pub trait ServiceType: Send + Sync + 'static {}
impl<T: Send + Sync + 'static> ServiceType for T {}

pub const fn assert_request<T: RequestType>() {}
pub const fn assert_response<T: ResponseType>() {}
pub const fn assert_domain_event<T: DomainEventType>() {}
pub const fn assert_schema<T: SchemaType + ?Sized>() {}
pub const fn assert_error<T: ErrorType + ?Sized>() {}
pub const fn assert_service<T: ServiceType + ?Sized>() {}
