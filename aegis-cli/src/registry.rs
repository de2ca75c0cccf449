//! `aegis services`, `instances`, `leader`, `watch`: what the registry and the election say.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aegis_runtime::codec::{self, Timestamp};
use aegis_runtime::election::LeaderRecord;
use aegis_runtime::instance::{EntryOrigin, ServiceInstance};
use aegis_runtime::runner::DEFAULT_REGISTRY_TTL;
use aegis_runtime::subject::{self, GroupId, ServiceName, python_sdk};
use async_nats::jetstream::context::{AccountErrorKind, KeyValueErrorKind};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::output::{self, Format};

/// The bucket `name`; `None` when it does not exist (nothing has registered, or been
/// elected, on this server yet).
///
/// # Errors
/// [`CliError::NoJetStream`] when the server (or the account) has no JetStream: then no
/// bucket can exist, and saying "nothing is registered" would be wrong.
async fn bucket(nats: &async_nats::Client, name: &str) -> Result<Option<kv::Store>, CliError> {
    let js = jetstream::new(nats.clone());
    match js.get_key_value(name).await {
        Ok(store) => Ok(Some(store)),
        Err(err) if err.kind() == KeyValueErrorKind::GetBucket => {
            // Either the bucket is missing or JetStream is: the account info tells which.
            jetstream_available(&js).await?;
            Ok(None)
        }
        Err(err) => Err(CliError::JetStream {
            what: format!("open the bucket {name}"),
            source: Box::new(err),
        }),
    }
}

/// Whether JetStream answers for this account.
async fn jetstream_available(js: &jetstream::Context) -> Result<(), CliError> {
    match js.query_account().await {
        Ok(_) => Ok(()),
        Err(err) => match err.kind() {
            AccountErrorKind::JetStreamUnavailable | AccountErrorKind::JetStream(_) => {
                Err(CliError::NoJetStream { source: err })
            }
            _ => Err(CliError::JetStream {
                what: "ask the server whether JetStream is enabled".to_owned(),
                source: Box::new(err),
            }),
        },
    }
}

/// Every instance entry that decodes, read from the bucket: Aegis's and the Python SDK's
/// (either key form; the origin says which), an instance with both listed once by its
/// Aegis entry. Other values (monitor-api's service definitions) are left out.
async fn entries(nats: &async_nats::Client) -> Result<Vec<ServiceInstance>, CliError> {
    let Some(store) = bucket(nats, subject::REGISTRY_BUCKET).await? else {
        return Ok(Vec::new());
    };
    let mut keys = store.keys().await.map_err(|err| CliError::JetStream {
        what: "list the registry".to_owned(),
        source: Box::new(err),
    })?;
    let mut entries = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        let origin = if subject::parse_registry_key(&key).is_some() {
            EntryOrigin::Aegis
        } else if key.starts_with(python_sdk::REGISTRY_KEY_PREFIX) {
            EntryOrigin::PythonSdk
        } else {
            continue;
        };
        if let Ok(Some(value)) = store.get(&key).await
            && let Ok(mut entry) = ServiceInstance::from_json(&value)
        {
            entry.origin = origin;
            let id = (
                entry.service_name.to_string(),
                entry.instance_id.to_string(),
            );
            match entries.get(&id) {
                Some(ServiceInstance {
                    origin: EntryOrigin::Aegis,
                    ..
                }) => {}
                _ => {
                    entries.insert(id, entry);
                }
            }
        }
    }
    Ok(entries.into_values().collect())
}

/// How `instances` names an entry's origin.
fn origin_name(origin: EntryOrigin) -> &'static str {
    match origin {
        EntryOrigin::Aegis => "aegis",
        EntryOrigin::PythonSdk => "python-sdk",
    }
}

/// Whether `entry`'s last heartbeat is older than the TTL it was written with: its
/// instance is gone (killed, frozen, cut off) even though the registry still lists it.
fn is_stale(entry: &ServiceInstance, now: Timestamp) -> bool {
    entry.is_stale(entry.heartbeat_ttl().unwrap_or(DEFAULT_REGISTRY_TTL), now)
}

/// `aegis services`.
pub(crate) async fn services(nats: &async_nats::Client, format: Format) -> Result<(), CliError> {
    /// What the registry shows of one service.
    #[derive(Default)]
    struct Summary {
        instances: usize,
        stale: usize,
        versions: BTreeSet<String>,
    }
    let now = Timestamp::now();
    let mut services: BTreeMap<String, Summary> = BTreeMap::new();
    for entry in entries(nats).await? {
        let summary = services.entry(entry.service_name.to_string()).or_default();
        summary.instances += 1;
        summary.stale += usize::from(is_stale(&entry, now));
        summary.versions.insert(entry.version);
    }
    if format.json {
        let list: Vec<Value> = services
            .iter()
            .map(|(service, summary)| {
                json!({
                    "service": service,
                    "instances": summary.instances,
                    "stale_instances": summary.stale,
                    "versions": summary.versions,
                })
            })
            .collect();
        return output::json(&json!({ "services": list }));
    }
    if services.is_empty() {
        return output::line("no service is registered");
    }
    output::line(format_args!(
        "{:<32} {:>9}  version",
        "service", "instances"
    ))?;
    for (service, summary) in services {
        let versions = summary.versions.into_iter().collect::<Vec<_>>().join(", ");
        let stale = match summary.stale {
            0 => String::new(),
            n => format!("  ({n} stale)"),
        };
        output::line(format_args!(
            "{service:<32} {:>9}  {versions}{stale}",
            summary.instances
        ))?;
    }
    Ok(())
}

/// `aegis instances <service>`.
pub(crate) async fn instances(
    nats: &async_nats::Client,
    service: &str,
    format: Format,
) -> Result<(), CliError> {
    let service = ServiceName::new(service)?;
    let found: Vec<ServiceInstance> = entries(nats)
        .await?
        .into_iter()
        .filter(|entry| entry.service_name == service)
        .collect();
    if found.is_empty() {
        return Err(unknown_service(&service));
    }
    let now = Timestamp::now();
    let age = |entry: &ServiceInstance| {
        (now.as_datetime() - entry.last_heartbeat.as_datetime())
            .to_std()
            .unwrap_or_default()
            .as_secs_f64()
    };
    let upper = |text: String| text.to_uppercase();
    if format.json {
        let list: Vec<Value> = found
            .iter()
            .map(|entry| {
                json!({
                    "instance_id": entry.instance_id.as_str(),
                    "version": entry.version,
                    "status": upper(format!("{:?}", entry.status)),
                    "group": entry.sticky_active_group.as_ref().map(|g| g.as_str()),
                    "role": entry.sticky_active_status.map(|r| upper(format!("{r:?}"))),
                    "last_heartbeat": entry.last_heartbeat.to_string(),
                    "heartbeat_age_seconds": age(entry),
                    "ttl_seconds": entry.heartbeat_ttl().unwrap_or(DEFAULT_REGISTRY_TTL).as_secs(),
                    "stale": is_stale(entry, now),
                    "origin": origin_name(entry.origin),
                })
            })
            .collect();
        return output::json(&json!({ "service": service.as_str(), "instances": list }));
    }
    output::line(format_args!(
        "{:<32} {:<10} {:<10} {:<9} {:>14}",
        "instance", "version", "status", "role", "heartbeat age"
    ))?;
    for entry in &found {
        let role = entry
            .sticky_active_status
            .map_or("-".to_owned(), |role| upper(format!("{role:?}")));
        // A stale entry's status is what a dead instance last said: show that it is stale.
        let status = if is_stale(entry, now) {
            "STALE".to_owned()
        } else {
            upper(format!("{:?}", entry.status))
        };
        let id = match entry.origin {
            EntryOrigin::Aegis => entry.instance_id.to_string(),
            other => format!("{} ({})", entry.instance_id, origin_name(other)),
        };
        output::line(format_args!(
            "{:<32} {:<10} {:<10} {:<9} {:>13.1}s",
            id,
            entry.version,
            status,
            role,
            age(entry)
        ))?;
    }
    Ok(())
}

fn unknown_service(service: &ServiceName) -> CliError {
    CliError::UnknownService {
        service: service.to_string(),
    }
}

/// `aegis leader <service> [--group]`.
pub(crate) async fn leader(
    nats: &async_nats::Client,
    service: &str,
    group: &str,
    format: Format,
) -> Result<(), CliError> {
    let service = ServiceName::new(service)?;
    let group = GroupId::new(group)?;
    let key = subject::leader_key(&service, &group);
    let entry = match bucket(nats, subject::STICKY_ACTIVE_BUCKET).await? {
        Some(store) => store.entry(&key).await.map_err(|err| CliError::JetStream {
            what: format!("read {key}"),
            source: Box::new(err),
        })?,
        None => None,
    };
    // No Aegis leader: a Python SDK instance may lead the group, on the SDK's key.
    let (key, entry, origin) = match entry.filter(|entry| entry.operation == kv::Operation::Put) {
        Some(entry) => (key, Some(entry), EntryOrigin::Aegis),
        None => {
            let key = python_sdk::leader_key(&service, &group);
            let entry = match bucket(nats, &python_sdk::election_bucket(&service)).await? {
                Some(store) => store.entry(&key).await.map_err(|err| CliError::JetStream {
                    what: format!("read {key}"),
                    source: Box::new(err),
                })?,
                None => None,
            };
            let entry = entry.filter(|entry| entry.operation == kv::Operation::Put);
            (key, entry, EntryOrigin::PythonSdk)
        }
    };
    let Some(entry) = entry else {
        // No leader: say whether the service exists at all.
        let registered = entries(nats)
            .await?
            .iter()
            .any(|entry| entry.service_name == service);
        return Err(if registered {
            CliError::NoLeader {
                service: service.to_string(),
                group: group.to_string(),
            }
        } else {
            unknown_service(&service)
        });
    };
    let record: LeaderRecord = codec::decode(&entry.value).map_err(|source| CliError::Decode {
        what: format!("leader key {key}"),
        source: Box::new(source),
    })?;
    let now = Timestamp::now().as_epoch_seconds();
    let term = record.term(entry.revision);
    let elected = now - record.elected_at;
    let renewed = now - record.last_heartbeat;
    if format.json {
        return output::json(&json!({
            "service": service.as_str(),
            "group": group.as_str(),
            "leader": record.instance_id,
            "term": term,
            "elected_seconds_ago": elected,
            "renewed_seconds_ago": renewed,
            "origin": origin_name(origin),
        }));
    }
    let term = term.map_or_else(|| "unknown".to_owned(), |term| term.to_string());
    let by = match origin {
        EntryOrigin::Aegis => String::new(),
        // The SDK never renews its key: "renewed" is its election.
        other => format!("  ({}, on {key})", origin_name(other)),
    };
    output::line(format_args!(
        "leader of {service} (group {group}): {}  term {term}  elected {elected:.1}s ago  renewed {renewed:.1}s ago{by}",
        record.instance_id,
    ))
}

/// One change `watch` reports.
enum Change {
    /// An instance wrote its entry.
    Instance {
        id: String,
        entry: Result<ServiceInstance, codec::DecodeError>,
    },
    /// An instance deleted its entry (a stop).
    Left { id: String },
    /// An entry expired (no heartbeat within its TTL).
    Expired { id: String },
    /// The leader of a group changed: (instance, term), or `None` for no leader.
    Leader {
        group: String,
        leader: Option<(String, Option<u64>)>,
    },
}

impl Change {
    fn print(&self, format: Format) -> Result<(), CliError> {
        let at = Timestamp::now();
        if format.json {
            return output::json_line(&self.to_json(at));
        }
        match self {
            Self::Instance {
                id,
                entry: Ok(instance),
            } => output::line(format_args!(
                "instance {id}: {:?} {}",
                instance.status,
                instance
                    .sticky_active_status
                    .map_or(String::new(), |r| format!("{r:?}"))
            )),
            Self::Instance {
                id,
                entry: Err(err),
            } => output::line(format_args!("instance {id}: entry does not decode: {err}")),
            Self::Left { id } => output::line(format_args!("instance {id}: left (stopped)")),
            Self::Expired { id } => {
                output::line(format_args!("instance {id}: expired (no heartbeat)"))
            }
            Self::Leader { group, leader } => match leader {
                Some((leader, Some(term))) => output::line(format_args!(
                    "{at} leader of group {group}: {leader} (term {term})"
                )),
                Some((leader, None)) => output::line(format_args!(
                    "{at} leader of group {group}: {leader} (term unknown)"
                )),
                None => output::line(format_args!(
                    "{at} leader of group {group}: none (released or expired)"
                )),
            },
        }
    }

    /// The change as one line of `watch --json`.
    fn to_json(&self, at: Timestamp) -> Value {
        let at = at.to_string();
        match self {
            Self::Instance { id, entry } => {
                let (status, role, error) = match entry {
                    Ok(instance) => (
                        Some(format!("{:?}", instance.status).to_uppercase()),
                        instance
                            .sticky_active_status
                            .map(|r| format!("{r:?}").to_uppercase()),
                        None,
                    ),
                    Err(err) => (None, None, Some(err.to_string())),
                };
                json!({
                    "at": at, "event": "instance", "instance_id": id, "change": "updated",
                    "status": status, "role": role, "error": error,
                })
            }
            Self::Left { id } => {
                json!({"at": at, "event": "instance", "instance_id": id, "change": "left"})
            }
            Self::Expired { id } => {
                json!({"at": at, "event": "instance", "instance_id": id, "change": "expired"})
            }
            Self::Leader { group, leader } => json!({
                "at": at, "event": "leader", "group": group,
                "leader": leader.as_ref().map(|(id, _)| id),
                "term": leader.as_ref().and_then(|(_, term)| *term),
            }),
        }
    }
}

/// `aegis watch <service>`: registry and leader changes until `duration` or Ctrl-C.
pub(crate) async fn watch(
    nats: &async_nats::Client,
    service: &str,
    duration: Option<Duration>,
    format: Format,
) -> Result<(), CliError> {
    let service = ServiceName::new(service)?;
    let Some(registry) = bucket(nats, subject::REGISTRY_BUCKET).await? else {
        return Err(unknown_service(&service));
    };
    let mut instances = registry
        // The Python SDK's keys have no dots: they are the single-token ones.
        .watch_many_with_history([subject::registry_service_filter(&service), "*".to_owned()])
        .await
        .map_err(|err| CliError::JetStream {
            what: "watch the registry".to_owned(),
            source: Box::new(err),
        })?;
    let watch_leaders = |bucket: Option<kv::Store>, filter: String| async move {
        match bucket {
            Some(store) => store
                .watch_with_history(filter)
                .await
                .map(|watch| Some(watch.boxed()))
                .map_err(|err| CliError::JetStream {
                    what: "watch the election".to_owned(),
                    source: Box::new(err),
                }),
            None => Ok(None),
        }
    };
    let aegis_leaders = watch_leaders(
        bucket(nats, subject::STICKY_ACTIVE_BUCKET).await?,
        subject::leader_filter(&service),
    )
    .await?;
    // A Python SDK member's leadership shows only on the SDK's key (a Rust leader of a
    // mixed group holds both).
    let sdk_leaders = watch_leaders(
        bucket(nats, &python_sdk::election_bucket(&service)).await?,
        ">".to_owned(),
    )
    .await?;
    let mut leaders = match (aegis_leaders, sdk_leaders) {
        (Some(aegis), Some(sdk)) => Some(futures_util::stream::select(aegis, sdk).boxed()),
        (one, other) => one.or(other),
    };
    // Instances seen with an Aegis entry: their Python SDK copies are not shown again.
    let mut aegis_ids = BTreeSet::new();
    if format.json {
        // Stdout carries only JSON lines.
        eprintln!("watching {service} (Ctrl-C to stop)");
    } else {
        output::line(format_args!("watching {service} (Ctrl-C to stop)"))?;
    }
    // The leader last shown per group: (instance, term), or `None` for no leader.
    let mut shown: HashMap<String, Option<(String, Option<u64>)>> = HashMap::new();
    let until = async {
        match duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return Ok(()),
            Some(Ok(entry)) = instances.next() => {
                let id = match subject::parse_registry_key(&entry.key) {
                    Some((of, id)) if of == service => {
                        aegis_ids.insert(id.to_string());
                        id.to_string()
                    }
                    Some(_) => continue,
                    None => match python_sdk::instance_of(&service, &entry.key) {
                        Some(id) if !aegis_ids.contains(id) => format!("{id} (python-sdk)"),
                        _ => continue, // another service's, or not an instance's key
                    },
                };
                let change = match entry.operation {
                    kv::Operation::Put => Change::Instance {
                        id,
                        entry: ServiceInstance::from_json(&entry.value),
                    },
                    kv::Operation::Delete => Change::Left { id },
                    kv::Operation::Purge => Change::Expired { id },
                };
                change.print(format)?;
            }
            Some(Ok(entry)) = async {
                match leaders.as_mut() {
                    Some(leaders) => leaders.next().await,
                    None => std::future::pending().await,
                }
            } => {
                // Renewals rewrite the key every third of the TTL: show changes only.
                let now = match entry.operation {
                    kv::Operation::Put => match codec::decode::<LeaderRecord>(&entry.value) {
                        Ok(record) => {
                            let term = record.term(entry.revision);
                            Some((record.instance_id, term))
                        }
                        Err(_) => Some(("an undecodable record".to_owned(), None)),
                    },
                    _ => None,
                };
                let group = match subject::parse_leader_key(&entry.key) {
                    Some((_, group)) => group.to_string(),
                    None => match python_sdk::group_of_leader_key(&service, &entry.key) {
                        Some(group) => format!("{group} (python-sdk key)"),
                        None => continue,
                    },
                };
                let before = shown.insert(group.clone(), now.clone());
                if before.as_ref() != Some(&now) {
                    Change::Leader { group, leader: now }.print(format)?;
                }
            }
        }
    }
}
