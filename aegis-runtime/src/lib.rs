//! # Aegis runtime
//!
//! Aegis is a declarative service framework on [NATS](https://nats.io): annotate an `impl`
//! block and its methods, and Aegis serves them as RPCs, exclusive (single-active) RPCs,
//! event subscriptions and commands, with a registry, leader election, discovery and clients
//! that retry only what provably did not run. It speaks the wire format of the Python
//! AegisSDK, so Rust and Python instances call each other.
//!
//! ## Quick start
//!
//! With `aegis-runtime`, `schemars`, `serde` (feature `derive`) and `tokio` (features
//! `macros`, `rt-multi-thread`) as dependencies, and a nats-server with JetStream:
//!
//! ```no_run
//! use aegis_runtime::{RpcContext, ServiceRunner, nats, service};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Say { text: String }
//!
//! struct Greeter;
//!
//! #[service(name = "greeter", version = "1.0.0")]
//! impl Greeter {
//!     #[rpc]
//!     async fn say(&self, ctx: &RpcContext, request: Say) -> Result<String, String> {
//!         Ok(format!("{} (from {})", request.text, ctx.instance_id()))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let nats = nats::connect("nats://127.0.0.1:4222").await?;
//!     let instance = ServiceRunner::new(Greeter).nats(nats.clone()).start().await?;
//!     let reply = GreeterClient::new(nats).say(Say { text: "hi".into() }).await?;
//!     println!("{reply}");
//!     instance.stop().await;
//!     Ok(())
//! }
//! ```
//!
//! The [guide](https://github.com/aegis-rs/aegis/blob/main/docs/guide.md) goes from here to
//! a sticky-active service; the attributes are described in [`macro@service`].
//!
//! ## Modules
//!
//! - Serving: [`runner`] (start, stop, drain an instance: [`ServiceRunner`]),
//!   [`service`](mod@service) (what `#[service]` implements, the handler contexts), [`leader`] and
//!   [`election`] (who is active in a group, with which fencing term), [`events`] and
//!   [`commands`] (event streams and the command work queue).
//! - Calling: [`client`] (deadlines, retries of calls that provably did not run, budgets,
//!   leader following, outlier ejection: [`ServiceClient`]), [`discovery`] (basic, cached,
//!   watch; round-robin, random, sticky).
//! - Connecting and operating: [`connect`] (servers, credentials, TLS from code, env or
//!   flags), [`nats`] (the async-nats this crate is built with), [`metrics`].
//! - The protocol: [`subject`] (names and their rules, subjects, KV keys), [`codec`] (the
//!   envelopes, MessagePack or JSON, byte-compatible with the Python SDK), [`instance`]
//!   (the registry entry of a live instance).
//! - `testing` (feature `testing`): a real nats-server for tests, examples and the demo.
//! - Errors: [`StartError`] (why an instance did not start), [`CallError`] (why a call
//!   failed, with a [`CallErrorKind`] to match), [`JetStreamError`] (JetStream not enabled,
//!   a permission refused on a subject, a bucket or stream Aegis cannot use, no answer in
//!   time), each with its causes as [`source`](std::error::Error::source)s.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod asyncapi;
mod backoff;
pub mod client;
pub mod codec;
pub mod commands;
pub mod connect;
pub mod discovery;
pub mod election;
pub mod events;
pub mod instance;
mod jetstream_error;
pub mod leader;
mod leadership;
mod lifecycle;
pub mod metrics;
pub mod python_sdk;
mod registry;
pub mod runner;
pub mod service;
mod stats;
mod streams;
pub mod subject;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The [async-nats](https://docs.rs/async-nats) client Aegis is built with, re-exported so
/// that the `Client` you connect with is always the one the runner and clients take.
///
/// ```no_run
/// # async fn run() -> Result<(), aegis_runtime::nats::ConnectError> {
/// let nats = aegis_runtime::nats::connect("nats://127.0.0.1:4222").await?;
/// # Ok(()) }
/// ```
pub use async_nats as nats;

pub use aegis_macros::{
    DomainEvent, command, exclusive_rpc, on_start, on_stop, rpc, schedule, service, subscribe,
};
pub use client::{
    CallError, CallErrorKind, CallOptions, CommandHandle, CommandOptions, RetryPolicy,
    ServiceClient, TransportError,
};
pub use codec::Event;
pub use connect::{ConnectConfig, ConnectError};
pub use events::DomainEvent;
pub use jetstream_error::{JetStreamError, Permission};
pub use leadership::Leadership;
pub use lifecycle::Lifecycle;
pub use python_sdk::PythonSdk;
pub use runner::{RunningService, ServiceRunner, StartError};
pub use service::DuplicateService;
pub use service::{
    EventContext, Progress, RpcContext, ScheduleContext, Service, ServiceDescriptor,
    linked_services,
};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
