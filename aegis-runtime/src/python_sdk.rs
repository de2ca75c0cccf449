//! Working beside Python AegisSDK instances of the same services (docs/python-interop.md).
//!
//! RPC envelopes (exclusive calls to an SDK-led group included), events and discovery
//! interoperate without settings, and an instance that finds the SDK's consumer of one of
//! its commands leaves that command to it. Four things cost something or give something
//! up, so they are asked for:
//!
//! - [`share_leadership`](PythonSdk::share_leadership): a group that has SDK members
//!   must never have two leaders. The SDK elects on its own key
//!   (`sticky-active_{service}_{group}_leader` in the bucket `election_{service}`), so a
//!   Rust member also holds that key while it leads: one more KV write per renewal, and
//!   one more bucket per service.
//! - [`visible`](PythonSdk::visible): the SDK lists only its own registry key form, so an
//!   instance that SDK clients should discover writes a second entry in that form: one
//!   more KV write per heartbeat.
//! - [`leave_commands`](PythonSdk::leave_commands): a command is handled on one side
//!   only (the SDK binds one instance per command, the work queue one consumer per
//!   subject); this instance makes no command consumer, so SDK instances keep theirs.
//! - [`share_events`](PythonSdk::share_events): compete events handled once across both
//!   languages, through the SDK's consumer (one subject per service, the SDK's limit).
//!
//! ```no_run
//! use aegis_runtime::{PythonSdk, RpcContext, ServiceRunner, service};
//!
//! struct Orders;
//!
//! #[service(name = "order-svc")]
//! impl Orders {
//!     #[exclusive_rpc]
//!     async fn process_order(&self, ctx: &RpcContext) -> u64 {
//!         ctx.term().unwrap_or_default()
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let running = ServiceRunner::new(Orders)
//!     .url("nats://127.0.0.1:4222")
//!     .group("default")
//!     .python_sdk(PythonSdk::new().share_leadership().visible())
//!     .start()
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

/// The SDK's default registry TTL (`Service(registry_ttl=30)`).
pub const DEFAULT_SDK_REGISTRY_TTL: Duration = Duration::from_secs(30);

/// How an instance works beside Python AegisSDK instances: nothing extra by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonSdk {
    share_leadership: bool,
    visible: bool,
    leave_commands: bool,
    share_events: bool,
    sdk_registry_ttl: Duration,
}

impl Default for PythonSdk {
    fn default() -> Self {
        Self::new()
    }
}

impl PythonSdk {
    /// No interop beyond the wire format: Aegis keys only.
    pub fn new() -> Self {
        Self {
            share_leadership: false,
            visible: false,
            leave_commands: false,
            share_events: false,
            sdk_registry_ttl: DEFAULT_SDK_REGISTRY_TTL,
        }
    }

    /// The group may have SDK members: lead only while holding the SDK's leader key too,
    /// and never while it names a live SDK instance.
    ///
    /// An SDK leader never renews its key, so it counts as alive while its registry
    /// heartbeat is younger than the SDK's registry TTL
    /// ([`registry_ttl`](Self::registry_ttl)); a crashed SDK leader is replaced
    /// that long after its last heartbeat. A Rust leader's hold on the SDK key has its own
    /// TTL, so a crashed Rust leader is replaced as fast as without SDK members.
    pub fn share_leadership(mut self) -> Self {
        self.share_leadership = true;
        self
    }

    /// Also write a registry entry in the SDK's form
    /// (`service-instances__{service}__{instance}`, the SDK's 7 keys only), so SDK
    /// discovery lists this instance. It expires with the instance's own entry.
    pub fn visible(mut self) -> Self {
        self.visible = true;
        self
    }

    /// The service's commands are handled by its Python SDK instances: this instance
    /// makes no command consumer.
    ///
    /// The SDK takes a command with a push consumer named `{service}-{command}` bound to
    /// one instance, and the work-queue stream `COMMANDS` admits one consumer per subject,
    /// so a command is handled on one side only. Without this option an instance that
    /// finds the SDK's consumer leaves that command to it anyway (and says so); with it,
    /// an SDK instance that starts later can still make its consumer.
    pub fn leave_commands(mut self) -> Self {
        self.leave_commands = true;
        self
    }

    /// Whether commands are left to the SDK instances.
    pub fn leaves_commands(&self) -> bool {
        self.leave_commands
    }

    /// Compete event subscriptions of an exact subject share their events with the
    /// service's SDK instances: each event is handled once by one instance of either
    /// language, instead of once per language.
    ///
    /// The SDK takes such events through one push consumer per service (durable and
    /// deliver group: the service name, lowercased); this instance joins it, or makes it in
    /// that form so SDK instances started later join it. The SDK filters that one consumer
    /// on its first subscription's subject (upstream defect B9), so only a subscription of
    /// that subject can share; another keeps a consumer of its own (and says so).
    /// Wildcard subscriptions cannot share: the SDK takes them with core NATS.
    pub fn share_events(mut self) -> Self {
        self.share_events = true;
        self
    }

    /// Whether compete events are shared with the SDK instances.
    pub fn shares_events(&self) -> bool {
        self.share_events
    }

    /// The `registry_ttl` the SDK instances run with (default 30 s, the SDK's default):
    /// how old an SDK instance's heartbeat may be before it counts as gone.
    pub fn registry_ttl(mut self, ttl: Duration) -> Self {
        self.sdk_registry_ttl = ttl;
        self
    }

    /// Whether leadership is shared with SDK members.
    pub fn shares_leadership(&self) -> bool {
        self.share_leadership
    }

    /// Whether an SDK-form registry entry is written.
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// The SDK instances' registry TTL.
    pub fn sdk_registry_ttl(&self) -> Duration {
        self.sdk_registry_ttl
    }
}
