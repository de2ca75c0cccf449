//! Helpers shared by the integration tests.

#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses its own part of this module

pub use aegis_examples::process::ChildProcess;

use std::time::Duration;

use aegis_examples::orders::OrderProcessor;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{RunningService, ServiceRunner};

/// The metrics recorder of this test binary, installed by the first test that asks (one
/// global recorder per process). A snapshot drains its counters.
pub fn metrics_recorder() -> &'static metrics_util::debugging::Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// Client metrics are process-wide and the tests of one binary run side by side. A test
/// that asserts an exact count (of retries, NOT_ACTIVE replies, ejections) holds
/// [`counting_alone`] for its whole run; every other test of its binary that makes calls
/// holds [`calling_alongside`], so no other test's calls land in the count while the
/// calls-only tests still run in parallel with each other.
static EXACT_COUNTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that asserts exact client counters: no other calling test runs meanwhile.
pub async fn counting_alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    EXACT_COUNTS.write().await
}

/// Held by a test whose calls must stay out of another test's exact counts.
pub async fn calling_alongside() -> tokio::sync::RwLockReadGuard<'static, ()> {
    EXACT_COUNTS.read().await
}

/// The total of the counter `name` over the label sets that have every label of `labels`,
/// since the recorder was installed. A snapshot of the debugging recorder drains its
/// counters, so every read goes through here and adds what it drained to running totals:
/// tests running side by side in one binary do not take each other's counts.
#[allow(dead_code)] // not every test binary reads counters
pub fn counter_total(name: &str, labels: &[(&str, &str)]) -> u64 {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TOTALS: Mutex<Option<HashMap<metrics_util::CompositeKey, u64>>> = Mutex::new(None);
    let mut totals = TOTALS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let totals = totals.get_or_insert_with(HashMap::new);
    for (key, _, _, value) in metrics_recorder().snapshot().into_vec() {
        if let metrics_util::debugging::DebugValue::Counter(n) = value {
            *totals.entry(key).or_default() += n;
        }
    }
    totals
        .iter()
        .filter(|(key, _)| {
            key.key().name() == name
                && labels.iter().all(|(k, v)| {
                    key.key()
                        .labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                })
        })
        .map(|(_, n)| n)
        .sum()
}

/// Waits for `condition` to hold, polling every 10 ms, up to `within`; returns whether it
/// held.
pub async fn until<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Starts an order processor in this process, as instance `id`.
pub async fn start_orders(server: &NatsServer, id: impl Into<String>) -> RunningService {
    ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .start()
        .await
        .expect("start")
}

/// Makes another instance (`elsewhere-1`) the live leader of `service`: writes its leader
/// key and rewrites it every 250 ms, as a leader renews, until the test's runtime ends.
/// Instances of `service` then stay standby (a key nobody rewrites would be removed as
/// stale after `leader_ttl` + margin).
pub async fn hold_leader_key(nats: &async_nats::Client, service: &str) {
    let store = async_nats::jetstream::new(nats.clone())
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "sticky_active".into(),
            history: 1,
            limit_markers: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .await
        .expect("bucket");
    let key = format!("sticky-active.{service}.default.leader");
    let foreign =
        br#"{"instance_id":"elsewhere-1","elected_at":1.0,"last_heartbeat":1.0,"metadata":{}}"#;
    store
        .put(key.clone(), foreign.to_vec().into())
        .await
        .expect("put");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Fails once the test has stopped its server: nothing to hold any more.
            let _ = store.put(key.clone(), foreign.to_vec().into()).await;
        }
    });
}

/// A message captured from the Python SDK (`python-sdk-wire-examples.json`): its subject,
/// its bytes, and its decoded form (MessagePack or JSON, as it was sent).
pub fn python_vector(name: &str) -> (String, Vec<u8>, serde_json::Value) {
    let vectors: serde_json::Value = serde_json::from_str(include_str!(
        "../../aegis-runtime/tests/vectors/python-sdk-wire-examples.json"
    ))
    .expect("vectors");
    let captured = &vectors[name];
    let hex = captured["hex"].as_str().expect("hex");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let subject = captured["subject"].as_str().expect("subject").to_owned();
    let decoded = captured["payload"]
        .as_object()
        .and_then(|encodings| encodings.values().next())
        .cloned()
        .expect("decoded payload");
    (subject, bytes, decoded)
}

/// `GET path` over plain HTTP/1.1 from `address` (`host:port`): the whole response, status
/// line and headers included.
pub async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|err| panic!("nothing listens at {address}: {err}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    response
}
