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
    EventCall, MethodDescriptor, NoParams, Reply, RpcCall, RpcContext, RpcDefinition, Service,
    ServiceDefinition, ServiceDescriptor, SubscribeMode, SubscriptionDefinition,
    SubscriptionDescriptor, UnitOutcome, WorkFailure,
};

/// A client of a service whose name the macro already checked.
pub fn client_for(nats: async_nats::Client, service: &'static str) -> ServiceClient {
    ServiceClient::for_service(nats, crate::subject::ServiceName::from_checked(service))
}

/// The JSON Schema of `T`.
pub fn schema_of<T: schemars::JsonSchema + ?Sized>() -> serde_json::Value {
    crate::service::schema_of::<T>()
}

/// Bound of RPC request types; asserted at the user's type so errors point there.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis request type",
    label = "needs `Serialize`, `Deserialize` and `JsonSchema`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait RequestType:
    serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static
{
}
impl<T: serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static>
    RequestType for T
{
}

/// Bound of RPC response types; asserted at the user's type so errors point there.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an Aegis response type",
    label = "needs `Serialize`, `Deserialize` and `JsonSchema`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait ResponseType:
    serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static
{
}
impl<T: serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static>
    ResponseType for T
{
}

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
pub const fn assert_error<T: ErrorType + ?Sized>() {}
pub const fn assert_service<T: ServiceType + ?Sized>() {}
