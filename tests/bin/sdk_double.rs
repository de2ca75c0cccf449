//! A stand-in for one Python AegisSDK instance of a sticky-active service, writing exactly
//! what the SDK writes (../shared/protocol/python-sdk-protocol.md §4–§5 and its captured
//! requests), so the interop tests need no Python: the buckets made as the SDK makes them,
//! the 7-key registry entry under `service-instances__{service}__{instance}` refreshed by a
//! get and a plain put every heartbeat (no TTL), the leader key
//! `sticky-active_{service}_{group}_leader` in `election_{service}` taken with a KV create
//! and never renewed, and the SDK's takeover: a watch of the key, and on a delete or
//! purge a 1 s sleep, then a create.
//!
//! `aegis-sdk-double --nats URL --service S --instance I [--group G] [--heartbeat-ms N]`
//! prints `ready leader` or `ready standby holder=ID`, then `leader` when it takes over,
//! and `standby holder=ID` when another writer's value replaces its own.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

fn now_iso() -> String {
    // The SDK's `datetime.now(UTC).isoformat()`: microseconds and `+00:00`.
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `NATSKVStore.connect(bucket)`: bind to the bucket, or create its stream as the SDK
/// does (the captured `STREAM.CREATE`, then `STREAM.UPDATE` with `allow_msg_ttl`).
async fn sdk_bucket(js: &jetstream::Context, bucket: &str) -> kv::Store {
    if let Ok(store) = js.get_key_value(bucket).await {
        return store;
    }
    let mut config = json!({
        "name": format!("KV_{bucket}"), "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits", "max_bytes": -1, "discard": "new",
        "discard_new_per_subject": false, "max_age": 0, "max_msgs_per_subject": 10,
        "max_msg_size": 1_048_576, "storage": "file", "num_replicas": 1, "no_ack": false,
        "duplicate_window": 0, "sealed": false, "deny_delete": true, "deny_purge": false,
        "allow_rollup_hdrs": true, "allow_direct": true
    });
    let created: Value = js
        .request(format!("STREAM.CREATE.KV_{bucket}"), &config)
        .await
        .expect("stream create answered");
    assert!(created.get("error").is_none(), "create: {created}");
    config["allow_msg_ttl"] = json!(true);
    let updated: Value = js
        .request(format!("STREAM.UPDATE.KV_{bucket}"), &config)
        .await
        .expect("stream update answered");
    assert!(updated.get("error").is_none(), "update: {updated}");
    js.get_key_value(bucket).await.expect("bucket")
}

/// `kv.create(key, value)` as nats-py does it: expected last subject sequence 0, and on a
/// tombstone once more at the tombstone's revision.
async fn sdk_create(store: &kv::Store, key: &str, value: &Value) -> bool {
    let bytes = serde_json::to_vec(value).expect("json");
    store.create(key, bytes.into()).await.is_ok()
}

async fn holder(store: &kv::Store, key: &str) -> String {
    match store.get(key).await {
        Ok(Some(value)) => serde_json::from_slice::<Value>(&value)
            .ok()
            .and_then(|v| v["instance_id"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[tokio::main]
async fn main() {
    let nats = async_nats::connect(arg("--nats").expect("--nats URL"))
        .await
        .expect("connect");
    let service = arg("--service").expect("--service");
    let instance = arg("--instance").expect("--instance");
    let group = arg("--group").unwrap_or_else(|| "default".to_owned());
    let heartbeat = Duration::from_millis(
        arg("--heartbeat-ms")
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(10_000),
    );
    let js = jetstream::new(nats);
    let registry = sdk_bucket(&js, "service_registry").await;
    let election = sdk_bucket(&js, &format!("election_{}", service.replace('-', "_"))).await;

    let start_time = now_iso();
    let registry_key = format!("service-instances__{service}__{instance}");
    let entry = {
        let (service, instance, start_time) =
            (service.clone(), instance.clone(), start_time.clone());
        move |group: Option<&str>| {
            json!({
                "serviceName": service, "instanceId": instance, "version": "1.0.0",
                "status": "ACTIVE", "lastHeartbeat": now_iso(), "stickyActiveGroup": group,
                "metadata": {"start_time": start_time}
            })
        }
    };
    let put = |value: Value| {
        let registry = registry.clone();
        let key = registry_key.clone();
        async move {
            registry
                .put(key, serde_json::to_vec(&value).expect("json").into())
                .await
                .expect("registry put");
        }
    };
    put(entry(None)).await;

    let leader_key = format!("sticky-active_{service}_{group}_leader");
    let record = |metadata: Value| {
        let now = epoch();
        json!({"instance_id": instance, "elected_at": now, "last_heartbeat": now, "metadata": metadata})
    };
    let mut leading = sdk_create(
        &election,
        &leader_key,
        &record(json!({"start_time": start_time})),
    )
    .await;
    put(entry(Some(&group))).await;
    if leading {
        say("ready leader");
    } else {
        say(&format!(
            "ready standby holder={}",
            holder(&election, &leader_key).await
        ));
    }

    // The heartbeat loop: a get, then a plain put with a fresh lastHeartbeat.
    let beating = {
        let registry = registry.clone();
        let key = registry_key.clone();
        let group = group.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(heartbeat).await;
                let _ = registry.get(&key).await;
                let value = serde_json::to_vec(&entry(Some(&group))).expect("json");
                let _ = registry.put(&key, value.into()).await;
            }
        })
    };

    // The monitoring watch of the leader key: nats-py's `include_history=False` delivers
    // the key's last entry first (deliver policy last_per_subject), so a release made
    // before the watch opened is seen too.
    let mut watch = election
        .watch_with_history(&leader_key)
        .await
        .expect("watch");
    while let Some(Ok(change)) = watch.next().await {
        match change.operation {
            kv::Operation::Delete | kv::Operation::Purge => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !leading && sdk_create(&election, &leader_key, &record(json!({}))).await {
                    leading = true;
                    say("leader");
                }
            }
            kv::Operation::Put => {
                let named = serde_json::from_slice::<Value>(&change.value)
                    .ok()
                    .and_then(|v| v["instance_id"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if leading && named != instance {
                    leading = false;
                    say(&format!("standby holder={named}"));
                }
            }
        }
    }
    beating.abort();
}
