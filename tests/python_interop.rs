//! Rust and Python AegisSDK instances in one sticky-active group: never two leaders.
//!
//! The Python side is `aegis-sdk-double` (tests/bin/sdk_double.rs), a process that writes
//! exactly what the SDK writes (its buckets, its 7-key registry entry beaten without a
//! TTL, its never-renewed leader key `sticky-active_{service}_{group}_leader` in
//! `election_{service}`), so no Python is needed. Real nats-server, real processes,
//! SIGKILL for a crash.

#![allow(clippy::print_stdout)] // the measured takeover time is printed

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aegis_examples::process::ChildProcess;
use aegis_runtime::discovery::{BasicDiscovery, Discovery, WatchDiscovery};
use aegis_runtime::instance::EntryOrigin;
use aegis_runtime::subject::ServiceName;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{PythonSdk, RpcContext, RunningService, ServiceRunner, service};
use async_nats::jetstream;
use support::until;

/// A sticky-active service with one exclusive method.
struct Mixed;

#[service(name = "mixed-svc", version = "1.0.0")]
impl Mixed {
    /// Runs on the leader only; writes the ledger.
    #[exclusive_rpc]
    async fn work(&self, ctx: &RpcContext) -> String {
        record(ctx.instance_id());
        ctx.instance_id().to_owned()
    }
}

/// Every run of `work`, by any member of any test of this binary (Rust instances and the
/// SDK leader's stand-in responder): who ran it, and when.
fn ledger() -> &'static std::sync::Mutex<Vec<(String, Instant)>> {
    static LEDGER: std::sync::OnceLock<std::sync::Mutex<Vec<(String, Instant)>>> =
        std::sync::OnceLock::new();
    LEDGER.get_or_init(Default::default)
}

fn record(instance: &str) {
    if let Ok(mut ledger) = ledger().lock() {
        ledger.push((instance.to_owned(), Instant::now()));
    }
}

/// The runs of `work` by `instance`.
fn runs_of(instance: &str) -> Vec<Instant> {
    ledger()
        .lock()
        .map(|ledger| {
            ledger
                .iter()
                .filter(|(who, _)| who == instance)
                .map(|(_, at)| *at)
                .collect()
        })
        .unwrap_or_default()
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

/// A Rust member that leads its group (no SDK member runs yet).
async fn rust_leader(url: &str, id: &str) -> RunningService {
    let rust = rust_member(url, id).await;
    assert!(
        until(Duration::from_secs(5), || async {
            rust.leadership().is_active()
        })
        .await,
        "{id} leads"
    );
    rust
}

/// A Rust instance (`rs-v`, no group) that SDK clients discover.
async fn visible_rust_member(url: &str) -> RunningService {
    ServiceRunner::new(Mixed)
        .url(url)
        .instance_id("rs-v")
        .python_sdk(PythonSdk::new().visible())
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
    let (mut python, ready) = sdk_member(&url, "py-led");
    assert_eq!(ready, "ready leader", "the SDK instance is first");
    // The SDK leader's process serves the method (the stand-in answers for it) until it dies.
    let python_serving =
        serve_as_sdk_leader(server.connect().await.expect("connect"), "py-led").await;
    // A client calls the exclusive method all along: the ledger says who ran each call.
    let client =
        aegis_runtime::ServiceClient::new(server.connect().await.expect("connect"), "mixed-svc")
            .expect("client")
            .with_timeout(Duration::from_millis(500));
    let calling = tokio::spawn(async move {
        loop {
            let _ = client
                .call_exclusive::<_, String>("work", &serde_json::json!({}))
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let rust = rust_member(&url, "rs-led").await;
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
    assert_eq!(sdk_holder(&js).await.as_deref(), Some("py-led"));

    python.kill(); // SIGKILL: no delete, the registry entry simply stops beating
    python_serving.abort();
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
    // The ledger: the SDK leader ran calls until it died, the Rust member only after.
    assert!(
        until(Duration::from_secs(3), || async {
            !runs_of("rs-led").is_empty()
        })
        .await,
        "the Rust leader serves"
    );
    calling.abort();
    let (python_runs, rust_runs) = (runs_of("py-led"), runs_of("rs-led"));
    assert!(
        !python_runs.is_empty(),
        "the SDK leader served before it died"
    );
    assert!(
        python_runs.iter().all(|at| *at < killed),
        "the SDK leader ran a call after it died"
    );
    assert!(
        rust_runs.iter().all(|at| *at > killed),
        "a Rust member ran a call while the SDK leader lived: two leaders"
    );

    // While it leads it holds the SDK key too: an SDK instance's create fails.
    assert!(
        until(Duration::from_secs(2), || async {
            sdk_holder(&js).await.as_deref() == Some("rs-led")
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
    assert_eq!(ready, "ready standby holder=rs-led");
    assert!(rust.leadership().is_active());
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_member_stays_standby_under_a_rust_leader_and_takes_over_when_it_stops() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let rust = rust_leader(&url, "rs-1").await;

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
    let rust = visible_rust_member(&url).await;
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats);
    let registry = js
        .get_key_value("service_registry")
        .await
        .expect("registry");
    // The SDK's list_instances: every key, filtered by prefix, split on `__` (the keys
    // read from the stream's subjects: a listing consumer races the instance's writes).
    let mut subjects = js
        .get_stream("KV_service_registry")
        .await
        .expect("stream")
        .info_with_subjects("$KV.service_registry.*")
        .await
        .expect("subjects");
    let mut listed = Vec::new();
    while let Some(subject) = futures_util::StreamExt::next(&mut subjects).await {
        let (subject, _) = subject.expect("a subject");
        if let Some(rest) = subject.strip_prefix("$KV.service_registry.service-instances__") {
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

/// Writes an SDK registry entry as the SDK does (a plain put, no TTL) under `key`, with a
/// heartbeat `age` old.
async fn put_sdk_entry(js: &jetstream::Context, key: &str, instance: &str, age: Duration) {
    let heartbeat = chrono::Utc::now() - chrono::Duration::from_std(age).expect("age");
    let value = serde_json::json!({
        "serviceName": "mixed-svc", "instanceId": instance, "version": "1.0.0",
        "status": "ACTIVE",
        "lastHeartbeat": heartbeat.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        "stickyActiveGroup": null, "metadata": {"start_time": "2026-11-22T19:15:47.752229+00:00"}
    });
    let registry = js
        .get_key_value("service_registry")
        .await
        .expect("registry");
    registry
        .put(key, serde_json::to_vec(&value).expect("json").into())
        .await
        .expect("put");
}

fn ids(instances: &[aegis_runtime::instance::ServiceInstance]) -> Vec<(String, EntryOrigin)> {
    instances
        .iter()
        .map(|i| (i.instance_id.to_string(), i.origin))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_discovery_lists_sdk_instances_in_both_key_forms_and_drops_stale_and_deleted_ones() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (_python, ready) = sdk_member(&url, "py-1"); // creates the registry as the SDK does
    assert_eq!(ready, "ready leader");
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats.clone());
    // The older single-underscore form, and a SIGKILLed SDK 1.0.1 instance whose entry
    // never expires (its heartbeat a minute old).
    put_sdk_entry(
        &js,
        "service-instances_mixed-svc_py-f3",
        "py-f3",
        Duration::ZERO,
    )
    .await;
    put_sdk_entry(
        &js,
        "service-instances__mixed-svc__py-dead",
        "py-dead",
        Duration::from_secs(60),
    )
    .await;
    // Another service's SDK entry, and a value under this service's key naming another.
    put_sdk_entry(
        &js,
        "service-instances__mixed-svc-2__py-x",
        "py-x",
        Duration::ZERO,
    )
    .await;

    let service = ServiceName::new("mixed-svc").expect("name");
    let expected = vec![
        ("py-1".to_owned(), EntryOrigin::PythonSdk),
        ("py-f3".to_owned(), EntryOrigin::PythonSdk),
    ];
    let basic = BasicDiscovery::new(nats.clone());
    assert_eq!(
        ids(&basic.instances(&service).await.expect("listed")),
        expected
    );
    let watch = WatchDiscovery::new(nats.clone());
    assert_eq!(
        ids(&watch.instances(&service).await.expect("listed")),
        expected
    );

    // An SDK instance that stops deletes its key: the watch drops it at once.
    let registry = js
        .get_key_value("service_registry")
        .await
        .expect("registry");
    registry
        .delete("service-instances_mixed-svc_py-f3")
        .await
        .expect("delete");
    let only_py_1 = [("py-1".to_owned(), EntryOrigin::PythonSdk)];
    let dropped = until(Duration::from_secs(2), || async {
        watch
            .instances_now(&service)
            .and_then(Result::ok)
            .is_some_and(|listed| ids(&listed) == only_py_1)
    })
    .await;
    assert!(dropped, "the watch still lists the deleted SDK instance");
}

/// Runs `aegis --server {url} args… --json` and parses what it printed.
async fn aegis_json(url: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.push("--json".to_owned());
    let finished = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        aegis_examples::process::run_to_exit("aegis", &args, Duration::from_secs(30))
    })
    .await
    .expect("aegis thread");
    assert!(finished.success, "aegis {args:?}: {}", finished.stderr);
    serde_json::from_str(&finished.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_sdk_instances_marks_stale_ones_and_shows_an_sdk_leader() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (_python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready leader");
    let nats = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(nats);
    put_sdk_entry(
        &js,
        "service-instances__mixed-svc__py-dead",
        "py-dead",
        Duration::from_secs(60),
    )
    .await;

    let instances = aegis_json(&url, &["instances", "mixed-svc"]).await;
    let listed: Vec<(String, bool, String)> = instances["instances"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap_or_default().to_owned(),
                i["stale"].as_bool().unwrap_or_default(),
                i["origin"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("py-1".to_owned(), false, "python-sdk".to_owned()),
            ("py-dead".to_owned(), true, "python-sdk".to_owned()),
        ]
    );
    let leader = aegis_json(&url, &["leader", "mixed-svc"]).await;
    assert_eq!(leader["leader"], "py-1", "{leader}");
    assert_eq!(leader["origin"], "python-sdk", "{leader}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_sdk_instances_once_and_with_their_origin() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (_python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready leader");
    // A Rust instance visible to the SDK: two entries, one instance.
    let rust = visible_rust_member(&url).await;
    let (_dashboard, line) = ChildProcess::start_until(
        "aegis",
        &["--server", &url, "dashboard", "--listen", "127.0.0.1:0"],
        "dashboard: ",
    );
    let address = line
        .trim_start_matches("dashboard: http://")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let listed_by_api = |address: String| async move {
        let response = support::http_get(&address, "/api/services/mixed-svc").await;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let api: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        api["instances"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|i| {
                        (
                            i["instance_id"].as_str().unwrap_or_default().to_owned(),
                            i["origin"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let began = Instant::now();
    let mut shown = listed_by_api(address.clone()).await;
    while shown.len() < 2 && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shown = listed_by_api(address.clone()).await;
    }
    // The dashboard reads the bucket whole before it answers: the SDK copy is in the
    // first answer that lists anything, as a third instance if it were not recognised.
    let listed = shown.len() == 2;
    assert!(listed, "the dashboard showed {shown:?}");
    shown.sort();
    assert_eq!(
        shown,
        [
            ("py-1".to_owned(), "python-sdk".to_owned()),
            ("rs-v".to_owned(), "aegis".to_owned())
        ]
    );
    rust.stop().await;
}

/// A service with a command and an event subscription, beside the SDK's streams and
/// consumers.
#[derive(Clone, Default)]
struct Worker {
    commands_run: Arc<AtomicUsize>,
    events_run: Arc<AtomicUsize>,
}

#[service(name = "worker-svc", version = "1.0.0")]
impl Worker {
    /// A unit of work.
    #[command]
    async fn reindex(&self, _job: serde_json::Value) -> String {
        self.commands_run.fetch_add(1, Ordering::SeqCst);
        "done".to_owned()
    }

    /// Order events, competing with the other instances.
    #[subscribe("events.orders.created")]
    async fn on_order(&self, _event: aegis_runtime::Event<serde_json::Value>) {
        self.events_run.fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes `stream` exactly as the SDK's `NATSAdapter.connect()` does (the captured
/// `STREAM.CREATE` bodies), with `retention` for COMMANDS.
async fn sdk_stream(js: &jetstream::Context, name: &str, subjects: &str, retention: &str) {
    let config = serde_json::json!({
        "name": name, "subjects": [subjects], "retention": retention,
        "max_msgs": if name == "EVENTS" { 100_000 } else { 10_000 },
        "discard": "old", "discard_new_per_subject": false, "max_msgs_per_subject": -1,
        "max_msg_size": -1, "no_ack": false, "duplicate_window": 0, "sealed": false,
        "deny_delete": false, "deny_purge": false, "allow_rollup_hdrs": false, "max_age": 0
    });
    let answer: serde_json::Value = js
        .request(format!("STREAM.CREATE.{name}"), &config)
        .await
        .expect("answered");
    assert!(answer.get("error").is_none(), "{answer}");
}

/// The SDK's command consumer (`subscribe(durable="{service}-{command}")` of nats-py: a
/// push consumer, no deliver group, explicit acks); `Err` when the server refuses it.
async fn sdk_command_consumer(
    js: &jetstream::Context,
    inbox: &str,
) -> Result<(), jetstream::stream::ConsumerError> {
    let stream = js.get_stream("COMMANDS").await.expect("COMMANDS");
    stream
        .create_consumer(jetstream::consumer::push::Config {
            durable_name: Some("worker-svc-reindex".to_owned()),
            deliver_subject: inbox.to_owned(),
            filter_subject: "commands.worker-svc.reindex".to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// The SDK's consumer of worker-svc's compete subscription of `events.orders.created`
/// (nats-py's `subscribe(queue=service, durable=service)`: a push consumer whose durable
/// and deliver group are the service name), delivering to `_INBOX.sdk-events`.
async fn sdk_event_consumer(js: &jetstream::Context) {
    js.get_stream("EVENTS")
        .await
        .expect("EVENTS")
        .create_consumer(jetstream::consumer::push::Config {
            durable_name: Some("worker-svc".to_owned()),
            deliver_subject: "_INBOX.sdk-events".to_owned(),
            deliver_group: Some("worker-svc".to_owned()),
            filter_subject: "events.orders.created".to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the SDK's event consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_starts_beside_the_sdks_streams_and_consumers_and_leaves_their_command_to_them() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let js = jetstream::new(nats.clone());
    sdk_stream(&js, "EVENTS", "events.>", "limits").await;
    sdk_stream(&js, "COMMANDS", "commands.>", "workqueue").await;
    // The SDK instance bound to its command consumer, and its compete event consumer.
    let mut sdk_commands = nats
        .subscribe("_INBOX.sdk-commands")
        .await
        .expect("subscribe");
    sdk_command_consumer(&js, "_INBOX.sdk-commands")
        .await
        .expect("the SDK's consumer");
    sdk_event_consumer(&js).await;

    let worker = Worker::default();
    let rust = ServiceRunner::new(worker.clone())
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("a Rust instance starts beside the SDK's streams and consumers");
    // The command goes to the SDK instance, not to Rust (one consumer per subject).
    js.publish(
        "commands.worker-svc.reindex",
        br#"{"n":1}"#.as_slice().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let delivered = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut sdk_commands),
    )
    .await
    .expect("the SDK's consumer still delivers");
    assert!(delivered.is_some());
    assert_eq!(worker.commands_run.load(Ordering::SeqCst), 0);
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leave_commands_an_sdk_instance_started_later_still_makes_its_consumer() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let js = jetstream::new(nats.clone());
    let rust = ServiceRunner::new(Worker::default())
        .nats(server.connect().await.expect("connect"))
        .python_sdk(PythonSdk::new().leave_commands())
        .start()
        .await
        .expect("starts");
    // The SDK's connect() makes COMMANDS when `stream_info` finds none (Rust made none).
    if js.get_stream("COMMANDS").await.is_err() {
        sdk_stream(&js, "COMMANDS", "commands.>", "workqueue").await;
    }
    sdk_command_consumer(&js, "_INBOX.sdk-commands")
        .await
        .expect("the SDK instance makes its consumer after Rust started");
    rust.stop().await;

    // The trade-off, without the option: Rust's consumer has the command, and the SDK's
    // cannot be made (as a second SDK instance of the command cannot bind either).
    let server = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    let rust = ServiceRunner::new(Worker::default())
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("starts");
    assert!(
        sdk_command_consumer(&js, "_INBOX.sdk-commands")
            .await
            .is_err()
    );
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_stream_that_is_not_a_work_queue_is_refused_with_what_to_do() {
    let server = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    sdk_stream(&js, "COMMANDS", "commands.>", "limits").await;
    let err = ServiceRunner::new(Worker::default())
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("COMMANDS") && message.contains("workqueue"),
        "{message}"
    );
}

/// Serves `rpc.mixed-svc.work` in the service's queue group as an SDK leader does: the
/// result nested in an exclusive reply of a success envelope.
async fn serve_as_sdk_leader(
    nats: async_nats::Client,
    instance: &'static str,
) -> tokio::task::JoinHandle<()> {
    use aegis_runtime::codec::{self, ExclusiveReply, RpcRequest, RpcResponse};
    let mut requests = nats
        .queue_subscribe("rpc.mixed-svc.work", "rpc.mixed-svc".to_owned())
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    tokio::spawn(async move {
        while let Some(message) = futures_util::StreamExt::next(&mut requests).await {
            let (Some(reply), Ok(request)) =
                (message.reply, codec::decode::<RpcRequest>(&message.payload))
            else {
                continue;
            };
            record(instance);
            let response =
                RpcResponse::ok(&request, ExclusiveReply::ok(serde_json::json!(instance)));
            let bytes = codec::encode(&response).expect("encode");
            let _ = nats.publish(reply, bytes.into()).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_calls_an_exclusive_method_of_a_group_an_sdk_instance_took_over() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let rust = rust_leader(&url, "rs-1").await;
    // The client follows the group's leader from its first exclusive call on.
    let client =
        aegis_runtime::ServiceClient::new(server.connect().await.expect("connect"), "mixed-svc")
            .expect("client")
            .with_timeout(Duration::from_secs(3));
    let answered: String = client
        .call_exclusive("work", &serde_json::json!({}))
        .await
        .expect("the Rust leader answers");
    assert_eq!(answered, "rs-1");

    // The Rust leader hands over to an SDK member: the client's watch of Aegis's key sees
    // it released, and no Aegis leader follows.
    let (mut python, ready) = sdk_member(&url, "py-1");
    assert_eq!(ready, "ready standby holder=rs-1");
    rust.stop().await;
    python.wait_for_line("leader", Duration::from_secs(5));
    let _serving = serve_as_sdk_leader(server.connect().await.expect("connect"), "py-1").await;

    let began = Instant::now();
    let answered: String = client
        .call_exclusive("work", &serde_json::json!({}))
        .await
        .expect("the SDK leader answers");
    assert_eq!(answered, "py-1");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "took {:?}",
        began.elapsed()
    );
}

/// An SDK instance of worker-svc taking its compete events: it binds to the SDK's push
/// consumer in the deliver group `worker-svc`, and acks what it gets. Returns the count.
async fn sdk_event_taker(nats: async_nats::Client, deliver_subject: String) -> Arc<AtomicUsize> {
    let taken = Arc::new(AtomicUsize::new(0));
    let mut deliveries = nats
        .queue_subscribe(deliver_subject, "worker-svc".to_owned())
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    let counted = taken.clone();
    tokio::spawn(async move {
        while let Some(message) = futures_util::StreamExt::next(&mut deliveries).await {
            counted.fetch_add(1, Ordering::SeqCst);
            if let Some(reply) = message.reply {
                let _ = nats.publish(reply, "+ACK".into()).await;
            }
        }
    });
    taken
}

/// Publishes `count` order events (JetStream, as both SDKs do).
async fn publish_orders(js: &jetstream::Context, count: usize) {
    for n in 0..count {
        let event = aegis_runtime::codec::Event::new(
            "orders",
            "created",
            serde_json::json!({"order_id": format!("ORD-{n}")}),
        );
        let bytes = aegis_runtime::codec::encode(&event).expect("encode");
        js.publish("events.orders.created", bytes.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_share_events_each_compete_event_is_handled_once_by_either_language() {
    const EVENTS: usize = 40;
    let handled = |worker: &Worker, sdk: &AtomicUsize| {
        (
            worker.events_run.load(Ordering::SeqCst),
            sdk.load(Ordering::SeqCst),
        )
    };

    // The SDK instance first: its consumer exists, the Rust instance joins it.
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let js = jetstream::new(nats.clone());
    sdk_stream(&js, "EVENTS", "events.>", "limits").await;
    sdk_event_consumer(&js).await;
    let sdk = sdk_event_taker(nats.clone(), "_INBOX.sdk-events".to_owned()).await;
    let worker = Worker::default();
    let rust = ServiceRunner::new(worker.clone())
        .nats(server.connect().await.expect("connect"))
        .python_sdk(PythonSdk::new().share_events().leave_commands())
        .start()
        .await
        .expect("starts");
    publish_orders(&js, EVENTS).await;
    let all = until(Duration::from_secs(5), || async {
        let (rust, python) = handled(&worker, &sdk);
        rust + python >= EVENTS
    })
    .await;
    let (by_rust, by_python) = handled(&worker, &sdk);
    assert!(all, "handled {by_rust} + {by_python} of {EVENTS}");
    // Once each: a copy would show as more than EVENTS by now, or shortly after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handled(&worker, &sdk), (by_rust, by_python));
    assert_eq!(by_rust + by_python, EVENTS);
    assert!(
        by_rust > 0 && by_python > 0,
        "shared: {by_rust} + {by_python}"
    );
    rust.stop().await;

    // The Rust instance first: it makes the consumer in the SDK's form, for SDK
    // instances to join (nats-py binds when the deliver group is its queue).
    let server = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    let rust = ServiceRunner::new(Worker::default())
        .nats(server.connect().await.expect("connect"))
        .python_sdk(PythonSdk::new().share_events())
        .start()
        .await
        .expect("starts");
    let stream = js.get_stream("EVENTS").await.expect("EVENTS");
    let made = stream
        .consumer_info("worker-svc")
        .await
        .expect("the SDK-form consumer");
    assert_eq!(made.config.deliver_group.as_deref(), Some("worker-svc"));
    assert_eq!(made.config.filter_subject, "events.orders.created");
    assert!(made.config.deliver_subject.is_some(), "a push consumer");
    rust.stop().await;
}
