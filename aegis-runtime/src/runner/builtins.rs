//! Methods every instance answers without being asked to: a detailed status, a liveness
//! check and the service's description, on `rpc.{service}.aegis_status`,
//! `rpc.{service}.aegis_health` and `rpc.{service}.aegis_describe` (and on each instance's
//! own subject). They are listed once, in [`Builtin::ALL`]: subscriptions and the
//! `$SRV.INFO` answer both read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::dispatch::{consume, send_reply, stopping, subscribe_subject};
use super::{Core, StartError};
use crate::instance::{InstanceStatus, StickyActiveStatus};
use crate::lifecycle::Lifecycle;
use crate::service::{NoParams, Reply, RpcCall, RpcContext, ServiceDescriptor, schema_of};
use crate::subject::{self, MethodName};

/// Name of the built-in status method.
pub const STATUS_METHOD: &str = "aegis_status";
/// Name of the built-in liveness method.
pub const HEALTH_METHOD: &str = "aegis_health";
/// Name of the built-in method that answers the instance's
/// [`ServiceDescriptor`](crate::ServiceDescriptor): its RPCs, commands and event
/// subscriptions with their JSON Schemas.
///
/// ```no_run
/// use aegis_runtime::codec;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// // A bare-JSON call (an empty body), as `nats req rpc.echo.aegis_describe ''` makes it.
/// let reply = nats.request("rpc.echo.aegis_describe", "".into()).await?;
/// let described = codec::decode_value(&reply.payload)?;
/// println!("{}", described["rpcs"]);
/// # Ok(())
/// # }
/// ```
pub const DESCRIBE_METHOD: &str = "aegis_describe";

/// A method every instance serves: what it is called, what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Builtin {
    /// [`STATUS_METHOD`]: a [`StatusReport`].
    Status,
    /// [`HEALTH_METHOD`]: a [`HealthReport`].
    Health,
    /// [`DESCRIBE_METHOD`]: the [`ServiceDescriptor`].
    Describe,
}

impl Builtin {
    /// Every built-in method: the one list that subscriptions and `$SRV.INFO` read.
    pub(super) const ALL: [Builtin; 3] = [Builtin::Status, Builtin::Health, Builtin::Describe];

    /// The method name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Builtin::Status => STATUS_METHOD,
            Builtin::Health => HEALTH_METHOD,
            Builtin::Describe => DESCRIBE_METHOD,
        }
    }

    /// JSON Schema of the parameters: none.
    pub(super) fn request_schema(self) -> serde_json::Value {
        schema_of::<NoParams>()
    }

    /// JSON Schema of the answer.
    pub(super) fn response_schema(self) -> serde_json::Value {
        match self {
            Builtin::Status => schema_of::<StatusReport>(),
            Builtin::Health => schema_of::<HealthReport>(),
            Builtin::Describe => crate::service::schema_of::<crate::service::ServiceDescriptor>(),
        }
    }

    /// The answer of this instance.
    fn reply(self, core: &Core, context: &RpcContext) -> Reply {
        match self {
            Builtin::Status => Reply::value(context, status_report(core)),
            Builtin::Health => Reply::value(context, health_report(core)),
            Builtin::Describe => Reply::value::<&ServiceDescriptor>(context, &core.descriptor),
        }
    }
}

/// What `aegis_status` answers: who the instance is, how it is doing, what it served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusReport {
    /// The service name.
    pub service: String,
    /// The instance id.
    pub instance_id: String,
    /// The service version.
    pub version: String,
    /// Where the instance is in its lifecycle.
    pub lifecycle: Lifecycle,
    /// ACTIVE, or UNHEALTHY while its heartbeats fail.
    pub status: InstanceStatus,
    /// Seconds since it started.
    pub uptime_seconds: f64,
    /// When it started.
    pub started_at: String,
    /// Its sticky-active group, when it has exclusive methods.
    pub group: Option<String>,
    /// Its role in that group.
    pub role: Option<StickyActiveStatus>,
    /// The fencing term while it is the active instance.
    pub term: Option<u64>,
    /// Calls in flight right now.
    pub in_flight: usize,
    /// Per method: calls, errors, the last error.
    pub methods: Vec<MethodReport>,
}

/// The counters of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MethodReport {
    /// The method name.
    pub name: String,
    /// Whether it is exclusive.
    pub exclusive: bool,
    /// Calls received.
    pub calls: u64,
    /// Calls that failed (handler errors, undecodable requests).
    pub errors: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Failures in the last minute.
    pub errors_last_minute: u64,
}

/// What `aegis_health` answers: the shape of the Python SDK's `health_check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthReport {
    /// The instance id.
    pub instance_id: String,
    /// The service name.
    pub service: String,
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// Whether it is the active instance of its group.
    pub is_active: bool,
    /// Where it is in its lifecycle.
    pub lifecycle: Lifecycle,
}

pub(super) fn status_report(core: &Core) -> StatusReport {
    let has_group = core.elects_leader;
    let role = has_group.then(|| {
        if core.leadership.is_active() {
            StickyActiveStatus::Active
        } else {
            StickyActiveStatus::Standby
        }
    });
    StatusReport {
        service: core.service_name.to_string(),
        instance_id: core.instance_id.to_string(),
        version: core.version.to_owned(),
        lifecycle: core.lifecycle.get(),
        status: core.status(),
        uptime_seconds: core.started.elapsed().as_secs_f64(),
        started_at: core.started_at.to_string(),
        group: has_group.then(|| core.leadership.group().to_string()),
        role,
        term: core.leadership.term(),
        in_flight: core
            .concurrency
            .saturating_sub(core.permits.available_permits()),
        methods: core
            .endpoints
            .iter()
            .map(|endpoint| {
                let stats = endpoint.stats.snapshot();
                MethodReport {
                    name: endpoint.name.to_owned(),
                    exclusive: endpoint.exclusive,
                    calls: stats.requests,
                    errors: stats.errors,
                    last_error: stats.last_error,
                    errors_last_minute: stats.recent_errors,
                }
            })
            .collect(),
    }
}

fn health_report(core: &Core) -> HealthReport {
    let healthy =
        core.status() == InstanceStatus::Active && core.lifecycle.get() == Lifecycle::Started;
    HealthReport {
        instance_id: core.instance_id.to_string(),
        service: core.service_name.to_string(),
        status: if healthy { "healthy" } else { "unhealthy" }.to_owned(),
        is_active: core.leadership.is_active(),
        lifecycle: core.lifecycle.get(),
    }
}

/// Subscribes every built-in method, on the group's and the instance's subjects.
pub(super) async fn subscribe(
    core: &Arc<Core>,
    listeners: &mut JoinSet<()>,
) -> Result<(), StartError> {
    for method in Builtin::ALL {
        let name = MethodName::new(method.name())?;
        let any = subject::rpc(&core.service_name, &name);
        let one = subject::rpc_instance(&core.service_name, &core.instance_id, &name);
        let queue = Some(subject::rpc_queue_group(&core.service_name));
        for subscriber in [
            subscribe_subject(&core.nats, any, queue).await?,
            subscribe_subject(&core.nats, one, None).await?,
        ] {
            listeners.spawn(answer(core.clone(), method, subscriber));
        }
    }
    Ok(())
}

/// Answers the calls of one built-in method (envelopes, and bare-JSON calls as `nats req`
/// sends them: `nats req rpc.echo.aegis_status ''`).
async fn answer(core: Arc<Core>, method: Builtin, subscriber: async_nats::Subscriber) {
    let accept = |message: async_nats::Message| {
        let core = core.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let context = RpcContext::new(
                core.name,
                method.name(),
                core.instance_key.clone(),
                false,
                None,
                std::time::Instant::now(),
            );
            let reply = match RpcCall::new(message.payload, context).decode::<NoParams>() {
                Ok((context, _)) => method.reply(&core, &context),
                Err(bad_request) => bad_request,
            };
            send_reply(&core, reply_to, reply, None).await;
        }
    };
    consume(&core.nats, subscriber, stopping(&core), accept).await;
}
