//! # Aegis runtime
//!
//! Aegis is a declarative service framework on [NATS](https://nats.io): annotate an `impl`
//! block and its methods, and Aegis serves them as RPCs, exclusive (single-active) RPCs,
//! event subscriptions and commands, with a registry, leader election, discovery and clients
//! that retry only what provably did not run. It speaks the wire format of the Python
//! AegisSDK, so Rust and Python instances call each other.
//!
//! This crate is the one users depend on. Its modules:
//!
//! - [`subject`]: names and their rules; NATS subjects and KV keys of the protocol.
//! - [`codec`]: the envelopes (RPC request and response, event, command, exclusive reply),
//!   MessagePack or JSON, byte-compatible with the Python SDK.
//! - [`instance`]: the registry entry of a live instance.
//! - [`connect`]: one way to connect to NATS (servers, auth, TLS), from code, env or flags.
//! - `testing` (feature `testing`): a real nats-server for tests, examples and the demo.
//!
//! ```
//! use aegis_runtime::codec::{self, RpcRequest};
//! use aegis_runtime::subject::{self, MethodName, ServiceName};
//! use serde_json::json;
//!
//! let service = ServiceName::new("order-svc")?;
//! let method = MethodName::new("process_order")?;
//! let subject = subject::rpc(&service, &method);
//! let payload = codec::encode(&RpcRequest::new(method.as_str(), json!({"order_id": "ORD-1"})))?;
//! assert_eq!(subject, "rpc.order-svc.process_order");
//! assert_eq!(payload[0], 0x89, "a MessagePack map of nine fields");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod codec;
pub mod commands;
pub mod connect;
pub mod discovery;
pub mod election;
pub mod events;
pub mod instance;
pub mod leader;
mod leadership;
mod lifecycle;
pub mod metrics;
mod registry;
pub mod runner;
pub mod service;
mod stats;
pub mod subject;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aegis_macros::{command, exclusive_rpc, on_start, on_stop, rpc, service, subscribe};
pub use client::{
    CallError, CallErrorKind, CallOptions, CommandHandle, CommandOptions, RetryPolicy,
    ServiceClient,
};
pub use codec::Event;
pub use connect::{ConnectConfig, ConnectError};
pub use leadership::Leadership;
pub use lifecycle::Lifecycle;
pub use runner::{RunningService, ServiceRunner, StartError};
pub use service::DuplicateService;
pub use service::{
    EventContext, Progress, RpcContext, Service, ServiceDescriptor, linked_services,
};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
