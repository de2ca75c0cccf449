//! `aegis services`, `instances`, `leader`, `watch`: what the registry and the election say.

use std::collections::BTreeMap;
use std::time::Duration;

use aegis_runtime::codec::{self, Timestamp};
use aegis_runtime::election::LeaderRecord;
use aegis_runtime::instance::ServiceInstance;
use aegis_runtime::subject;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

async fn bucket(nats: &async_nats::Client, name: &str) -> Result<Option<kv::Store>, String> {
    match jetstream::new(nats.clone()).get_key_value(name).await {
        Ok(store) => Ok(Some(store)),
        Err(err) if err.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(None),
        Err(err) => Err(format!("cannot open the bucket {name}: {err}")),
    }
}

/// Every registry entry (key, entry), read from the bucket.
async fn entries(nats: &async_nats::Client) -> Result<Vec<(String, ServiceInstance)>, String> {
    let Some(store) = bucket(nats, subject::REGISTRY_BUCKET).await? else {
        return Ok(Vec::new());
    };
    let mut keys = match store.keys().await {
        Ok(keys) => keys,
        Err(err) => return Err(format!("cannot list the registry: {err}")),
    };
    let mut entries = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(value)) = store.get(&key).await
            && let Ok(entry) = ServiceInstance::from_json(&value)
        {
            entries.push((key, entry));
        }
    }
    Ok(entries)
}

/// `aegis services`.
pub(crate) async fn services(nats: &async_nats::Client) -> Result<(), String> {
    let mut counts: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (_, entry) in entries(nats).await? {
        let slot = counts
            .entry(entry.service_name.to_string())
            .or_insert((0, entry.version.clone()));
        slot.0 += 1;
    }
    if counts.is_empty() {
        println!("no service is registered");
        return Ok(());
    }
    println!("{:<32} {:>9}  version", "service", "instances");
    for (service, (count, version)) in counts {
        println!("{service:<32} {count:>9}  {version}");
    }
    Ok(())
}

/// `aegis instances <service>`.
pub(crate) async fn instances(nats: &async_nats::Client, service: &str) -> Result<(), String> {
    let found: Vec<ServiceInstance> = entries(nats)
        .await?
        .into_iter()
        .map(|(_, entry)| entry)
        .filter(|entry| entry.service_name.as_str() == service)
        .collect();
    if found.is_empty() {
        return Err(unknown_service(service));
    }
    let now = Timestamp::now().as_datetime();
    println!(
        "{:<32} {:<10} {:<10} {:<9} {:>14}",
        "instance", "version", "status", "role", "heartbeat age"
    );
    for entry in found {
        let age = (now - entry.last_heartbeat.as_datetime())
            .to_std()
            .unwrap_or_default();
        let role = entry
            .sticky_active_status
            .map_or("-".to_owned(), |role| format!("{role:?}").to_uppercase());
        println!(
            "{:<32} {:<10} {:<10} {:<9} {:>13.1}s",
            entry.instance_id.as_str(),
            entry.version,
            format!("{:?}", entry.status).to_uppercase(),
            role,
            age.as_secs_f64()
        );
    }
    Ok(())
}

fn unknown_service(service: &str) -> String {
    format!("no instance of {service} is registered (see `aegis services`)")
}

/// `aegis leader <service> [--group]`.
pub(crate) async fn leader(
    nats: &async_nats::Client,
    service: &str,
    group: &str,
) -> Result<(), String> {
    let key = format!("sticky-active.{service}.{group}.leader");
    let Some(store) = bucket(nats, subject::STICKY_ACTIVE_BUCKET).await? else {
        return Err(format!(
            "no leader election has run on this server ({key} does not exist)"
        ));
    };
    match store.entry(&key).await {
        Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
            let record: LeaderRecord = codec::decode(&entry.value)
                .map_err(|e| format!("the leader key {key} does not decode: {e}"))?;
            let now = Timestamp::now().as_epoch_seconds();
            let term = record
                .term(entry.revision)
                .map_or_else(|| "unknown".to_owned(), |term| term.to_string());
            println!(
                "leader of {service} (group {group}): {}  term {term}  elected {:.1}s ago  renewed {:.1}s ago",
                record.instance_id,
                now - record.elected_at,
                now - record.last_heartbeat
            );
            Ok(())
        }
        Ok(_) => Err(format!("{service} (group {group}) has no leader right now")),
        Err(err) => Err(format!("cannot read {key}: {err}")),
    }
}

/// `aegis watch <service>`: registry and leader changes until `duration` or Ctrl-C.
pub(crate) async fn watch(
    nats: &async_nats::Client,
    service: &str,
    duration: Option<Duration>,
) -> Result<(), String> {
    let Some(registry) = bucket(nats, subject::REGISTRY_BUCKET).await? else {
        return Err(unknown_service(service));
    };
    let mut instances = registry
        .watch_with_history(format!("service-instances.{service}.*"))
        .await
        .map_err(|e| format!("cannot watch the registry: {e}"))?;
    let mut leaders = match bucket(nats, subject::STICKY_ACTIVE_BUCKET).await? {
        Some(store) => Some(
            store
                .watch_with_history(format!("sticky-active.{service}.*.leader"))
                .await
                .map_err(|e| format!("cannot watch the election: {e}"))?,
        ),
        None => None,
    };
    println!("watching {service} (Ctrl-C to stop)");
    // The leader last shown per group: (instance, term), or `None` for no leader.
    let mut shown: std::collections::HashMap<String, Option<(String, Option<u64>)>> =
        std::collections::HashMap::new();
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
                let id = entry.key.rsplit('.').next().unwrap_or_default().to_owned();
                match entry.operation {
                    kv::Operation::Put => match ServiceInstance::from_json(&entry.value) {
                        Ok(instance) => println!(
                            "instance {id}: {:?} {}",
                            instance.status,
                            instance.sticky_active_status.map_or(String::new(), |r| format!("{r:?}"))
                        ),
                        Err(err) => println!("instance {id}: entry does not decode: {err}"),
                    },
                    kv::Operation::Delete => println!("instance {id}: left (stopped)"),
                    kv::Operation::Purge => println!("instance {id}: expired (no heartbeat)"),
                }
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
                let group = entry.key.split('.').nth(2).unwrap_or_default().to_owned();
                let before = shown.insert(group.clone(), now.clone());
                if before.as_ref() != Some(&now) {
                    let at = Timestamp::now();
                    match now {
                        Some((leader, Some(term))) => println!("{at} leader of group {group}: {leader} (term {term})"),
                        Some((leader, None)) => println!("{at} leader of group {group}: {leader} (term unknown)"),
                        None => println!("{at} leader of group {group}: none (released or expired)"),
                    }
                }
            }
        }
    }
}
