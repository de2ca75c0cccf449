//! What `#[service]` generates: the [`Service`] trait, its static [`ServiceDefinition`], and
//! the [`ServiceDescriptor`] with JSON Schemas of every method.
//!
//! Users write an annotated `impl` block; the macro implements [`Service`] for the type.
//! The runtime reads the definition to subscribe subjects and dispatch calls; nothing here
//! needs to be written by hand.

mod call;
mod context;
mod descriptor;
mod schedule;
mod work;

use std::sync::Arc;

pub use call::{NoParams, Outcome, Reply, RpcCall, RpcContext};
pub use context::{EventContext, Progress};
pub(crate) use descriptor::schema_of;
pub use descriptor::{
    DescriptorEntry, DuplicateService, MethodDescriptor, PublishedEventDescriptor,
    ScheduleDescriptor, ServiceDescriptor, SubscriptionDescriptor, linked_services,
};
pub use schedule::{
    MissedTicks, ScheduleContext, ScheduleDefinition, ScheduleHandler, ScheduleMode, Timing,
};
pub use work::{
    CommandCall, CommandInfo, CommandOutcome, CommandOutput, Completed, EventCall, UnitOutcome,
    WorkFailure,
};

/// A boxed, sendable future, as handler functions return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A service: implemented by `#[service]` on the user's type.
///
/// ```
/// use aegis_runtime::{Service, service};
///
/// struct Echo;
///
/// #[service(name = "echo-definition", version = "1.0.0")]
/// impl Echo {
///     #[rpc]
///     async fn ping(&self) -> String {
///         "pong".to_owned()
///     }
/// }
///
/// let definition = Echo::definition();
/// assert_eq!(definition.name, "echo-definition");
/// assert_eq!(definition.rpcs[0].name, "ping");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an Aegis service",
    note = "annotate its `impl` block with `#[aegis_runtime::service]`"
)]
pub trait Service: Send + Sync + Sized + 'static {
    #[doc(hidden)] // glue for the generated code, not public API
    /// The static table of the service's handlers.
    fn definition() -> &'static ServiceDefinition<Self>;
}

#[doc(hidden)] // glue for the generated code, not public API
/// Everything the runtime needs to serve a service: names and handler tables.
#[derive(Debug)]
pub struct ServiceDefinition<S: 'static> {
    /// The service name (checked against the rules by the macro).
    pub name: &'static str,
    /// The service version, `MAJOR.MINOR.PATCH`.
    pub version: &'static str,
    /// The RPC methods, plain and exclusive.
    pub rpcs: &'static [RpcDefinition<S>],
    /// The event subscriptions.
    pub subscriptions: &'static [SubscriptionDefinition<S>],
    /// The commands.
    pub commands: &'static [CommandDefinition<S>],
    /// The `#[schedule]` methods.
    pub schedules: &'static [ScheduleDefinition<S>],
    /// The `#[on_start]` method: runs before the instance registers and serves; an error
    /// fails the start.
    pub on_start: Option<LifecycleHook<S>>,
    /// The `#[on_stop]` method: runs after the instance stopped serving and drained.
    pub on_stop: Option<LifecycleHook<S>>,
    /// Builds the descriptor with JSON Schemas.
    pub describe: fn() -> ServiceDescriptor,
}

#[doc(hidden)] // glue for the generated code, not public API
/// A handler of RPC calls: decodes the request, runs the user's method, encodes the reply.
pub type RpcHandler<S> = fn(Arc<S>, RpcCall) -> BoxFuture<'static, Reply>;

#[doc(hidden)] // glue for the generated code, not public API
/// One RPC method of a service.
pub struct RpcDefinition<S: 'static> {
    /// The method name on the wire.
    pub name: &'static str,
    /// Whether only the active instance of the group may run it (`#[exclusive_rpc]`).
    pub exclusive: bool,
    /// The generated handler.
    pub handler: RpcHandler<S>,
}

impl<S: 'static> std::fmt::Debug for RpcDefinition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcDefinition")
            .field("name", &self.name)
            .field("exclusive", &self.exclusive)
            .finish_non_exhaustive()
    }
}

/// How instances of a service share the events of a subscription.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeMode {
    /// One instance of the service handles each event.
    Compete,
    /// Every instance handles every event.
    Broadcast,
}

#[doc(hidden)] // glue for the generated code, not public API
/// A lifecycle hook (`#[on_start]`, `#[on_stop]`).
pub type LifecycleHook<S> = fn(Arc<S>) -> BoxFuture<'static, Result<(), WorkFailure>>;

#[doc(hidden)] // glue for the generated code, not public API
/// A handler of events: decodes the event, runs the user's method.
pub type EventHandler<S> = fn(Arc<S>, EventCall) -> BoxFuture<'static, Result<(), WorkFailure>>;

#[doc(hidden)] // glue for the generated code, not public API
/// A handler of commands: decodes the command, runs the user's method, encodes the outcome.
pub type CommandHandler<S> = fn(Arc<S>, CommandCall) -> BoxFuture<'static, CommandOutcome>;

#[doc(hidden)] // glue for the generated code, not public API
/// One event subscription of a service (`#[subscribe]`).
pub struct SubscriptionDefinition<S: 'static> {
    /// The Rust method that handles the events.
    pub method: &'static str,
    /// The subject pattern, `events.…`.
    pub pattern: &'static str,
    /// Compete or broadcast.
    pub mode: SubscribeMode,
    /// The durable consumer name, when events published while the service is down must
    /// still be delivered.
    pub durable: Option<&'static str>,
    /// The generated handler.
    pub handler: EventHandler<S>,
}

#[doc(hidden)] // glue for the generated code, not public API
/// One command of a service (`#[command]`).
pub struct CommandDefinition<S: 'static> {
    /// The command name on the wire.
    pub name: &'static str,
    /// The generated handler.
    pub handler: CommandHandler<S>,
}

impl<S: 'static> std::fmt::Debug for SubscriptionDefinition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionDefinition")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field("mode", &self.mode)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl<S: 'static> std::fmt::Debug for CommandDefinition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandDefinition")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<S: 'static> ServiceDefinition<S> {
    /// The RPC method called `name`.
    pub fn rpc(&self, name: &str) -> Option<&RpcDefinition<S>> {
        self.rpcs.iter().find(|rpc| rpc.name == name)
    }

    /// Whether any method is exclusive.
    pub fn has_exclusive_methods(&self) -> bool {
        self.rpcs.iter().any(|rpc| rpc.exclusive)
    }

    /// Whether the service takes part in the leader election of its group: it has an
    /// exclusive method or an exclusive schedule.
    pub fn elects_leader(&self) -> bool {
        self.has_exclusive_methods()
            || self
                .schedules
                .iter()
                .any(|schedule| schedule.mode == ScheduleMode::Exclusive)
    }
}
