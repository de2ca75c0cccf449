//! The NATS micro protocol (ADR-32), so `nats micro ls/info/stats` show Aegis services.
//!
//! Written here rather than through `async_nats::service` because Aegis's endpoints are
//! served by its own dispatch (exclusive subscriptions follow leadership, and the error of
//! an envelope call is an envelope; only a bare-JSON call gets a `Nats-Service-Error`
//! header); this module only reports.
//!
//! `$SRV.INFO` lists every endpoint a user can call on the instance: its RPCs, its
//! commands and the built-in methods, each with metadata `kind` (`rpc`, `exclusive_rpc`,
//! `command`, `builtin`), `exclusive` and the JSON Schemas `request_schema` and
//! `response_schema`. `$SRV.STATS` counts the RPCs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Answer to `$SRV.INFO…` (`io.nats.micro.v1.info_response`): async-nats's own type.
pub use async_nats::service::Info as MicroInfo;
/// Answer to `$SRV.PING…` (`io.nats.micro.v1.ping_response`): async-nats's own type.
pub use async_nats::service::PingResponse as MicroPing;
/// One endpoint in [`MicroInfo`]; its metadata has `kind` (`rpc`, `exclusive_rpc`,
/// `command` or `builtin`), `exclusive` (`true` or `false`), `request_schema` and
/// `response_schema` (JSON Schemas, as JSON text).
pub use async_nats::service::endpoint::Info as MicroEndpointInfo;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::builtins::Builtin;
use super::dispatch::{consume, stopping, subscribe_subject};
use super::{Core, StartError};
use crate::subject::{self, MethodName, MicroVerb};

/// Answer to `$SRV.STATS…` (`io.nats.micro.v1.stats_response`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroStats {
    /// Always `io.nats.micro.v1.stats_response`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service name.
    pub name: String,
    /// The instance id.
    pub id: String,
    /// The service version.
    pub version: String,
    /// Service metadata.
    pub metadata: BTreeMap<String, String>,
    /// When the instance started (RFC 3339).
    pub started: String,
    /// Per-endpoint counters.
    pub endpoints: Vec<MicroEndpointStats>,
}

/// One endpoint in [`MicroStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroEndpointStats {
    /// The method name.
    pub name: String,
    /// The subject it is served on.
    pub subject: String,
    /// The queue group.
    pub queue_group: String,
    /// Requests received (counted on receipt).
    pub num_requests: u64,
    /// Requests that failed.
    pub num_errors: u64,
    /// The last failure, empty when none.
    pub last_error: String,
    /// Total processing time, in nanoseconds.
    pub processing_time: u64,
    /// Average processing time, in nanoseconds.
    pub average_processing_time: u64,
}

// async-nats's own `Stats` has no `metadata`, which ADR-32 gives every answer: this one
// is ours; `PING` and `INFO` answers are async-nats's types.

const PING: &str = "io.nats.micro.v1.ping_response";
const INFO: &str = "io.nats.micro.v1.info_response";
const STATS: &str = "io.nats.micro.v1.stats_response";

/// Subscribes `$SRV.{VERB}`, `$SRV.{VERB}.{name}` and `$SRV.{VERB}.{name}.{id}`.
pub(super) async fn subscribe(
    core: &Arc<Core>,
    listeners: &mut JoinSet<()>,
) -> Result<(), StartError> {
    for verb in MicroVerb::ALL {
        for subject in subject::micro(verb, &core.service_name, &core.instance_id) {
            let subscriber = subscribe_subject(&core.nats, subject, None).await?;
            listeners.spawn(answer(core.clone(), verb, subscriber));
        }
    }
    Ok(())
}

async fn answer(core: Arc<Core>, verb: MicroVerb, subscriber: async_nats::Subscriber) {
    let accept = |message: async_nats::Message| {
        let core = core.clone();
        async move {
            let Some(reply_to) = message.reply else {
                return;
            };
            let body = match verb {
                MicroVerb::Ping => serde_json::to_vec(&ping(&core)),
                MicroVerb::Info => serde_json::to_vec(&info(&core)),
                MicroVerb::Stats => serde_json::to_vec(&stats(&core)),
            };
            match body {
                Ok(body) => {
                    if let Err(err) = core.nats.publish(reply_to, body.into()).await {
                        tracing::debug!(%err, "cannot answer a $SRV request");
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot encode a $SRV answer"),
            }
        }
    };
    consume(&core.nats, subscriber, stopping(&core), accept).await;
}

/// The instance's metadata: the framework, and while it is the leader of its group, the
/// group and the fencing term its exclusive handlers see (the number `aegis leader` and
/// the status method show too).
fn metadata<M: FromIterator<(String, String)> + Extend<(String, String)>>(core: &Core) -> M {
    let mut metadata = M::from_iter([("framework".to_owned(), "aegis".to_owned())]);
    if let Some(term) = core.leadership.term() {
        metadata.extend([
            (
                "leader_group".to_owned(),
                core.leadership.group().to_string(),
            ),
            ("leader_term".to_owned(), term.to_string()),
        ]);
    }
    metadata
}

fn ping(core: &Core) -> MicroPing {
    MicroPing {
        kind: PING.to_owned(),
        name: core.service_name.to_string(),
        id: core.instance_id.to_string(),
        version: core.version.to_owned(),
        metadata: metadata(core),
    }
}

/// The subject an endpoint is served on, and its queue group.
fn endpoint_subject(core: &Core, name: &str) -> (String, String) {
    let method = MethodName::new(name)
        .map(|m| subject::rpc(&core.service_name, &m))
        .unwrap_or_default();
    (method, subject::rpc_queue_group(&core.service_name))
}

/// An INFO endpoint.
fn endpoint(
    name: &str,
    (subject, queue_group): (String, String),
    kind: &str,
    exclusive: bool,
    schemas: Option<(&serde_json::Value, &serde_json::Value)>,
) -> MicroEndpointInfo {
    let mut metadata = HashMap::from([
        ("kind".to_owned(), kind.to_owned()),
        ("exclusive".to_owned(), exclusive.to_string()),
    ]);
    if let Some((request, response)) = schemas {
        metadata.insert("request_schema".to_owned(), request.to_string());
        metadata.insert("response_schema".to_owned(), response.to_string());
    }
    MicroEndpointInfo {
        name: name.to_owned(),
        subject,
        queue_group,
        metadata,
    }
}

/// Every endpoint a user can call here: each listed under the subject through which this
/// instance takes calls from anyone.
///
/// That is the group's subject (in the queue group `rpc.{service}`), except for an
/// exclusive method on an instance that is not the leader: it does not serve the shared
/// subject, so its endpoint names its own subject `rpc.{service}.{instance}.{method}`
/// (where it forwards calls to the leader), without a queue group. Commands are taken
/// from the JetStream stream `COMMANDS`, so they have no queue group either.
fn info(core: &Core) -> MicroInfo {
    let leading = core.leadership.term().is_some();
    let rpc_schemas = |name: &str| {
        core.descriptor
            .rpcs
            .iter()
            .find(|m| m.name == name)
            .map(|m| (&m.request, &m.response))
    };
    let mut endpoints: Vec<MicroEndpointInfo> = core
        .endpoints
        .iter()
        .map(|rpc| {
            let (kind, served) = if !rpc.exclusive {
                ("rpc", endpoint_subject(core, rpc.name))
            } else if leading {
                ("exclusive_rpc", endpoint_subject(core, rpc.name))
            } else {
                (
                    "exclusive_rpc",
                    (instance_subject(core, rpc.name), String::new()),
                )
            };
            endpoint(rpc.name, served, kind, rpc.exclusive, rpc_schemas(rpc.name))
        })
        .collect();
    endpoints.extend(core.descriptor.commands.iter().map(|command| {
        let subject = MethodName::new(&command.name)
            .map(|m| subject::command(&core.service_name, &m))
            .unwrap_or_default();
        endpoint(
            &command.name,
            (subject, String::new()),
            "command",
            false,
            Some((&command.request, &command.response)),
        )
    }));
    endpoints.extend(Builtin::ALL.into_iter().map(|builtin| {
        let (request, response) = (builtin.request_schema(), builtin.response_schema());
        endpoint(
            builtin.name(),
            endpoint_subject(core, builtin.name()),
            "builtin",
            false,
            Some((&request, &response)),
        )
    }));
    MicroInfo {
        kind: INFO.to_owned(),
        name: core.service_name.to_string(),
        id: core.instance_id.to_string(),
        version: core.version.to_owned(),
        metadata: metadata(core),
        description: format!("Aegis service {}", core.service_name),
        endpoints,
    }
}

/// This instance's own subject of RPC method `name`.
fn instance_subject(core: &Core, name: &str) -> String {
    MethodName::new(name)
        .map(|m| subject::rpc_instance(&core.service_name, &core.instance_id, &m))
        .unwrap_or_default()
}

fn stats(core: &Core) -> MicroStats {
    let endpoints = core
        .endpoints
        .iter()
        .map(|endpoint| {
            let (subject, queue_group) = endpoint_subject(core, endpoint.name);
            let stats = endpoint.stats.snapshot();
            let total = u64::try_from(stats.processing.as_nanos()).unwrap_or(u64::MAX);
            MicroEndpointStats {
                name: endpoint.name.to_owned(),
                subject,
                queue_group,
                num_requests: stats.requests,
                num_errors: stats.errors,
                last_error: stats.last_error.unwrap_or_default(),
                processing_time: total,
                average_processing_time: total.checked_div(stats.requests).unwrap_or(0),
            }
        })
        .collect();
    MicroStats {
        kind: STATS.to_owned(),
        name: core.service_name.to_string(),
        id: core.instance_id.to_string(),
        version: core.version.to_owned(),
        metadata: metadata(core),
        started: core.started_at.to_string(),
        endpoints,
    }
}
