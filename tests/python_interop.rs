//! Rust and Python AegisSDK instances in one sticky-active group: never two leaders.
//!
//! The Python side is `aegis-sdk-double` (tests/bin/sdk_double.rs), a process that writes
//! exactly what the SDK writes (its buckets, its 7-key registry entry beaten without a
//! TTL, its never-renewed leader key `sticky-active_{service}_{group}_leader` in
//! `election_{service}`), so no Python is needed. Real nats-server, real processes,
//! SIGKILL for a crash.

#![allow(clippy::print_stdout)] // the measured takeover time is printed

mod support;

use std::time::{Duration, Instant};

use aegis_examples::process::ChildProcess;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{PythonSdk, RpcContext, RunningService, ServiceRunner, service};
use async_nats::jetstream;
use support::until;

/// A sticky-active service with one exclusive method.
struct Mixed;

#[service(name = "mixed-svc", version = "1.0.0")]
impl Mixed {
    /// Runs on the leader only.
    #[exclusive_rpc]
    async fn work(&self, ctx: &RpcContext) -> String {
        ctx.instance_id().to_owned()
    }
}

const SDK_BUCKET: &str = "election_mixed_svc";
const SDK_KEY: &str = "sticky-active_mixed-svc_default_leader";
/// The SDK instances' registry TTL in these tests (the SDK's `registry_ttl`), and their
/// heartbeat interval.
const SDK_REGISTRY_TTL: Duration = Duration::from_secs(2);
const SDK_HEARTBEAT: &str = "500";

async fn rust_member(url: &str, id: &str) -> RunningService {
    ServiceRunner::new(Mixed)
        .url(url)
        .instance_id(id)
        .leader_ttl(Duration::from_secs(1))
        .python_sdk(
            PythonSdk::new()
                .share_leadership()
                .registry_ttl(SDK_REGISTRY_TTL),
        )
        .start()
        .await
        .expect("the Rust member starts")
}

fn sdk_member(url: &str, id: &str) -> (ChildProcess, String) {
    ChildProcess::start(
        "aegis-sdk-double",
        &[
            "--nats",
            url,
            "--service",
            "mixed-svc",
            "--instance",
            id,
            "--heartbeat-ms",
            SDK_HEARTBEAT,
        ],
    )
}

/// The instance the SDK's leader key names, if any.
async fn sdk_holder(js: &jetstream::Context) -> Option<String> {
    let store = js.get_key_value(SDK_BUCKET).await.ok()?;
    let value = store.get(SDK_KEY).await.ok()??;
    let record: serde_json::Value = serde_json::from_slice(&value).ok()?;
    record["instance_id"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_member_never_leads_while_an_sdk_leader_lives_and_takes_over_when_it_dies() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (mut python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready leader", "the SDK instance is first");

    let rust = rust_member(&url, "rs-1").await;
    // Far longer than the SDK key's age limit and the Rust leader TTL: the SDK leader
    // never renews its key, and beats only in the registry.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        assert!(
            !rust.leadership().is_active(),
            "the Rust member led while the SDK leader was alive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats);
    assert_eq!(sdk_holder(&js).await.as_deref(), Some("py-1"));

    python.kill(); // SIGKILL: no delete, the registry entry simply stops beating
    let killed = Instant::now();
    let mut led_after = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if rust.leadership().is_active() {
            led_after = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let led_after = led_after.expect("the Rust member took over within 10 s");
    // Documented bound: the SDK's registry TTL after its last heartbeat, plus the Rust
    // election's own takeover (a leader TTL at most).
    let bound = SDK_REGISTRY_TTL + Duration::from_secs(1) + Duration::from_millis(500);
    assert!(
        led_after <= bound,
        "took over after {led_after:?} (bound {bound:?})"
    );
    println!("SDK leader SIGKILLed → Rust leader after {led_after:?}");

    // While it leads it holds the SDK key too: an SDK instance's create fails.
    assert!(
        until(Duration::from_secs(2), || async {
            sdk_holder(&js).await.as_deref() == Some("rs-1")
        })
        .await,
        "the SDK key names the Rust leader"
    );
    let store = js.get_key_value(SDK_BUCKET).await.expect("SDK bucket");
    let created = store
        .create(
            SDK_KEY,
            br#"{"instance_id":"py-2","elected_at":1.0,"last_heartbeat":1.0,"metadata":{}}"#
                .as_slice()
                .into(),
        )
        .await;
    assert!(created.is_err(), "an SDK create succeeded while Rust leads");
    let (_python, ready) = sdk_member(&url, "py-2");
    assert_eq!(ready, "ready standby holder=rs-1");
    assert!(rust.leadership().is_active());
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_member_stays_standby_under_a_rust_leader_and_takes_over_when_it_stops() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let rust = rust_member(&url, "rs-1").await;
    assert!(
        until(Duration::from_secs(5), || async {
            rust.leadership().is_active()
        })
        .await
    );

    let (mut python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready standby holder=rs-1");
    // A renewal or two later it is still standby, and Rust still leads.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rust.leadership().is_active());

    let stopped = Instant::now();
    rust.stop().await;
    // The SDK's takeover: its watch sees the delete, it sleeps 1 s, it creates.
    python.wait_for_line("leader", Duration::from_secs(5));
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "SDK took over after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_rust_leader_is_replaced_by_a_rust_standby_as_fast_as_without_sdk_members() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (mut python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready leader");
    python.kill();
    // Both Rust members wait out the dead SDK leader, then one leads.
    let first = rust_member(&url, "rs-1").await;
    let second = rust_member(&url, "rs-2").await;
    assert!(
        until(Duration::from_secs(8), || async {
            first.leadership().is_active() || second.leadership().is_active()
        })
        .await,
        "a Rust member leads once the dead SDK leader's heartbeat is too old"
    );
    assert!(
        !(first.leadership().is_active() && second.leadership().is_active()),
        "two Rust leaders"
    );
    let (leader, standby) = if first.leadership().is_active() {
        (first, second)
    } else {
        (second, first)
    };
    let leader_id = leader.instance_id().to_string();
    drop(leader); // its election stops without a word: its keys expire
    let crashed = Instant::now();
    assert!(
        until(Duration::from_secs(5), || async {
            standby.leadership().is_active()
        })
        .await
    );
    let took = crashed.elapsed();
    // Leader TTL 1 s: the Rust key and its hold on the SDK key expire together.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats);
    assert!(
        until(Duration::from_secs(2), || async {
            sdk_holder(&js).await.as_deref() == Some(standby.instance_id().as_str())
        })
        .await,
        "the new leader holds the SDK key"
    );
    assert_ne!(leader_id, standby.instance_id().as_str());
    standby.stop().await;
}

/// The SDK's `ServiceInstance` model (`extra="forbid"`): exactly these keys, each of its
/// type and pattern; anything else makes the SDK skip the entry without a word.
fn assert_sdk_entry(entry: &serde_json::Value) {
    let object = entry.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "instanceId",
            "lastHeartbeat",
            "metadata",
            "serviceName",
            "status",
            "stickyActiveGroup",
            "version"
        ],
        "{entry}"
    );
    let text = |key: &str| {
        entry[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a string: {entry}"))
    };
    let name_like = |value: &str, first: fn(char) -> bool| {
        value.chars().next().is_some_and(first)
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    assert!(name_like(text("serviceName"), |c| c.is_ascii_alphabetic()));
    assert!(name_like(text("instanceId"), |c| c.is_ascii_alphanumeric()));
    let version: Vec<&str> = text("version").split('.').collect();
    assert!(version.len() == 3 && version.iter().all(|n| n.parse::<u64>().is_ok()));
    assert!(["ACTIVE", "UNHEALTHY", "STANDBY"].contains(&text("status")));
    let heartbeat = text("lastHeartbeat");
    assert!(heartbeat.ends_with("+00:00"), "{heartbeat}");
    chrono::DateTime::parse_from_rfc3339(heartbeat).expect("an ISO timestamp");
    assert!(entry["stickyActiveGroup"].is_null() || entry["stickyActiveGroup"].is_string());
    assert!(entry["metadata"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_visible_instance_writes_an_entry_the_sdk_lists_and_removes_it_on_stop() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let rust = ServiceRunner::new(Mixed)
        .url(&url)
        .instance_id("rs-v")
        .python_sdk(PythonSdk::new().visible())
        .start()
        .await
        .expect("starts");
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats);
    let registry = js
        .get_key_value("service_registry")
        .await
        .expect("registry");
    // The SDK's list_instances: every key, filtered by prefix, split on `__`.
    let mut listed = Vec::new();
    let mut keys = registry.keys().await.expect("keys");
    while let Some(Ok(key)) = futures_util::StreamExt::next(&mut keys).await {
        if let Some(rest) = key.strip_prefix("service-instances__") {
            listed.push(rest.split("__").map(str::to_owned).collect::<Vec<_>>());
        }
    }
    assert_eq!(listed, [["mixed-svc".to_owned(), "rs-v".to_owned()]]);
    let value = registry
        .get("service-instances__mixed-svc__rs-v")
        .await
        .expect("read")
        .expect("the SDK-form entry");
    let entry: serde_json::Value = serde_json::from_slice(&value).expect("JSON");
    assert_sdk_entry(&entry);
    assert_eq!(entry["instanceId"], "rs-v");
    // It expires with the instance's own entry.
    let stream = js.get_stream("KV_service_registry").await.expect("stream");
    let stored = stream
        .get_last_raw_message_by_subject("$KV.service_registry.service-instances__mixed-svc__rs-v")
        .await
        .expect("stored");
    assert!(
        stored.headers.get("Nats-TTL").is_some(),
        "written with a TTL"
    );

    rust.stop().await;
    assert!(
        registry
            .get("service-instances__mixed-svc__rs-v")
            .await
            .expect("read")
            .is_none(),
        "deleted on stop"
    );
}
