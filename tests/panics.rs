//! A panicking handler or hook, of every kind, against a real nats-server: the documented
//! outcome (see docs/runtime.md, "Panics and failures, per handler kind"), the panic
//! counted, and the instance still serving afterwards.

#![allow(clippy::print_stdout)] // measured figures are printed

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aegis_runtime::events::EventPublisher;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{
    CallErrorKind, CommandOptions, Event, EventContext, ServiceClient, ServiceRunner, service,
};
use metrics_util::debugging::DebugValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The registry bucket.
const REGISTRY: &str = "service_registry";

/// How many panics of `kind` in `method` were counted so far. A snapshot of the debugging
/// recorder resets its counters, and the tests of this binary run at once: every snapshot
/// is added to totals kept here.
fn panics_counted(kind: &str, method: &str) -> u64 {
    static TOTALS: OnceLock<Mutex<HashMap<(String, String), u64>>> = OnceLock::new();
    let mut totals = TOTALS.get_or_init(Mutex::default).lock().expect("totals");
    for (key, _, _, value) in support::metrics_recorder().snapshot().into_vec() {
        let key = key.key();
        if key.name() != aegis_runtime::metrics::HANDLER_PANICS {
            continue;
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        if let DebugValue::Counter(n) = value {
            *totals.entry((label("kind"), label("method"))).or_default() += n;
        }
    }
    totals
        .get(&(kind.to_owned(), method.to_owned()))
        .copied()
        .unwrap_or_default()
}

/// Waits until `done` holds, up to 15 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Job {
    n: u32,
}

/// Every handler kind, each with a method that panics and one that works.
#[derive(Clone, Default)]
struct Fragile {
    /// What ran: `"{handler} {detail}"`.
    ran: Arc<Mutex<Vec<String>>>,
}

impl Fragile {
    fn record(&self, what: String) {
        self.ran.lock().expect("lock").push(what);
    }

    fn count(&self, prefix: &str) -> usize {
        self.ran
            .lock()
            .expect("lock")
            .iter()
            .filter(|what| what.starts_with(prefix))
            .count()
    }
}

#[service(name = "fragile", version = "1.0.0")]
impl Fragile {
    #[rpc]
    async fn boom(&self) -> String {
        panic!("rpc boom")
    }

    #[rpc]
    async fn ping(&self) -> String {
        "pong".to_owned()
    }

    #[exclusive_rpc]
    async fn exclusive_boom(&self, job: Job) -> String {
        panic!("exclusive boom {}", job.n)
    }

    #[exclusive_rpc]
    async fn exclusive_ping(&self) -> String {
        "exclusive pong".to_owned()
    }

    #[subscribe("events.fragile.boom")]
    async fn on_boom(&self, ctx: &EventContext, _event: Event<serde_json::Value>) {
        self.record(format!("on_boom {}", ctx.delivery()));
        panic!("event boom on delivery {}", ctx.delivery())
    }

    #[subscribe("events.fragile.fine")]
    async fn on_fine(&self, _event: Event<serde_json::Value>) {
        self.record("on_fine".to_owned());
    }

    #[command]
    async fn explode(&self, job: Job) -> Result<u32, String> {
        self.record(format!("explode {}", job.n));
        panic!("command boom {}", job.n)
    }

    #[command]
    async fn double(&self, job: Job) -> Result<u32, String> {
        Ok(job.n * 2)
    }
}

async fn start_fragile(
    server: &NatsServer,
    id: &str,
    fragile: &Fragile,
) -> aegis_runtime::RunningService {
    ServiceRunner::new(fragile.clone())
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .start()
        .await
        .expect("start")
}

/// Asserts that the instance still answers plain RPCs.
async fn still_serving(client: &ServiceClient) {
    let pong: String = client
        .call("ping", &serde_json::json!({}))
        .await
        .expect("the instance still serves");
    assert_eq!(pong, "pong");
}

#[tokio::test]
async fn a_panicking_rpc_answers_an_error_naming_the_panic_and_the_instance_serves_on() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let fragile = Fragile::default();
    let instance = start_fragile(&server, "fragile-rpc", &fragile).await;
    let client =
        ServiceClient::new(server.connect().await.expect("connect"), "fragile").expect("client");
    for _ in 0..3 {
        let started = Instant::now();
        let err = client
            .call::<_, String>("boom", &serde_json::json!({}))
            .await
            .expect_err("the handler panics");
        println!("panicking rpc answered in {:?}", started.elapsed());
        assert!(
            matches!(err.kind(), CallErrorKind::Handler(_)),
            "a handler error: {err}"
        );
        let message = err.handler_message().expect("message");
        assert!(
            message.contains("panicked") && message.contains("rpc boom"),
            "names the panic: {message}"
        );
        still_serving(&client).await;
    }
    assert_eq!(panics_counted("rpc", "boom"), 3, "every panic counted");
    let report = instance.report();
    let boom = report
        .methods
        .iter()
        .find(|m| m.name == "boom")
        .expect("boom in the status");
    assert_eq!(boom.errors, 3, "counted as errors in the status: {boom:?}");
    let last = boom.last_error.as_deref().unwrap_or_default();
    assert!(
        last.contains("panicked") && last.contains("rpc boom"),
        "the status names the panic: {last}"
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_panicking_exclusive_rpc_answers_an_error_naming_the_panic_and_stays_leader() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let fragile = Fragile::default();
    let instance = start_fragile(&server, "fragile-exclusive", &fragile).await;
    wait_for("leader", || instance.leadership().is_active()).await;
    let client =
        ServiceClient::new(server.connect().await.expect("connect"), "fragile").expect("client");
    let err = client
        .call_exclusive::<_, String>("exclusive_boom", &Job { n: 7 })
        .await
        .expect_err("the handler panics");
    let message = err.handler_message().expect("message");
    assert!(
        message.contains("panicked") && message.contains("exclusive boom 7"),
        "names the panic: {message}"
    );
    assert_eq!(err.attempts(), 1, "a panic is not retried: it ran");
    let pong: String = client
        .call_exclusive("exclusive_ping", &serde_json::json!({}))
        .await
        .expect("the leader still serves exclusive calls");
    assert_eq!(pong, "exclusive pong");
    assert!(instance.leadership().is_active(), "still the leader");
    assert_eq!(panics_counted("exclusive_rpc", "exclusive_boom"), 1);
    still_serving(&client).await;
    instance.stop().await;
}

#[tokio::test]
async fn a_panicking_event_handler_is_redelivered_a_bounded_number_of_times_then_terminated() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let fragile = Fragile::default();
    let instance = start_fragile(&server, "fragile-events", &fragile).await;
    let events = EventPublisher::new(server.connect().await.expect("connect")).with_source("tests");
    let started = Instant::now();
    events
        .publish("fragile", "boom", &serde_json::json!({"n": 1}))
        .await
        .expect("publish");
    let max = aegis_runtime::events::MAX_DELIVER as usize;
    wait_for("every delivery", || fragile.count("on_boom") >= max).await;
    println!(
        "{max} deliveries of a panicking event in {:?}",
        started.elapsed()
    );
    wait_for("the last panic counted", || {
        panics_counted("event", "on_boom") >= max as u64
    })
    .await;

    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("EVENTS")
        .await
        .expect("stream")
        .get_consumer("fragile-events_fragile_boom")
        .await
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.expect("info");
        if info.num_ack_pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "terminated, nothing left to redeliver: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Other subscriptions and RPCs still work.
    events
        .publish("fragile", "fine", &serde_json::json!({}))
        .await
        .expect("publish");
    wait_for("another event handled", || fragile.count("on_fine") == 1).await;
    assert_eq!(fragile.count("on_boom"), max, "{max} deliveries, no more");
    assert_eq!(
        panics_counted("event", "on_boom"),
        max as u64,
        "each counted"
    );
    let client =
        ServiceClient::new(server.connect().await.expect("connect"), "fragile").expect("client");
    still_serving(&client).await;
    instance.stop().await;
}

#[tokio::test]
async fn a_panicking_command_fails_its_caller_at_once_and_is_terminated() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let fragile = Fragile::default();
    let instance = start_fragile(&server, "fragile-commands", &fragile).await;
    let client = FragileClient::new(server.connect().await.expect("connect"));

    let started = Instant::now();
    let handle = client
        .start_explode(Job { n: 3 }, CommandOptions::default()) // 3 retries allowed
        .await
        .expect("sent");
    let err = tokio::time::timeout(Duration::from_secs(10), handle.outcome())
        .await
        .expect("the caller hears of the panic at once, not after a timeout")
        .expect_err("the handler panics");
    println!("panicking command reported in {:?}", started.elapsed());
    let message = err.handler_message().expect("message");
    assert!(
        message.contains("panicked") && message.contains("command boom 3"),
        "names the panic: {message}"
    );
    assert_eq!(fragile.count("explode"), 1, "a panic is not retried");
    assert_eq!(panics_counted("command", "explode"), 1);

    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("fragile-explode", "COMMANDS")
        .await
        .expect("the command's consumer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.expect("consumer info");
        if info.num_ack_pending == 0 {
            assert_eq!(info.num_redelivered, 0, "never redelivered: {info:?}");
            assert!(
                info.config.max_deliver > 0,
                "the consumer bounds its deliveries: {info:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "terminated, not left to redeliver: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The instance takes further commands.
    let doubled = tokio::time::timeout(Duration::from_secs(10), client.double(Job { n: 21 }))
        .await
        .expect("in time")
        .expect("another command completes");
    assert_eq!(doubled, 42);
    let plain =
        ServiceClient::new(server.connect().await.expect("connect"), "fragile").expect("client");
    still_serving(&plain).await;
    instance.stop().await;
}

/// A service whose `#[on_start]` panics.
struct PanicsOnStart;

#[service(name = "panics-on-start", version = "1.0.0")]
impl PanicsOnStart {
    #[on_start]
    async fn warm_up(&self) -> Result<(), String> {
        panic!("cannot warm up")
    }

    #[rpc]
    async fn ping(&self) -> String {
        "pong".to_owned()
    }
}

#[tokio::test]
async fn a_panicking_on_start_fails_the_start_and_leaves_nothing_behind() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let err = ServiceRunner::new(PanicsOnStart)
        .nats(server.connect().await.expect("connect"))
        .instance_id("panics-on-start-1")
        .start()
        .await
        .expect_err("on_start panics");
    let message = err.to_string();
    assert!(
        matches!(err, aegis_runtime::StartError::Hook(_)),
        "a hook failure: {err:?}"
    );
    assert!(
        message.contains("panicked") && message.contains("cannot warm up"),
        "names the panic: {message}"
    );
    assert_eq!(panics_counted("on_start", "on_start"), 1);
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    if let Ok(store) = js.get_key_value(REGISTRY).await {
        assert_eq!(
            store
                .get("service-instances.panics-on-start.panics-on-start-1")
                .await
                .expect("get"),
            None,
            "no registry entry"
        );
    }
    let client = ServiceClient::new(server.connect().await.expect("connect"), "panics-on-start")
        .expect("client");
    client
        .call::<_, String>("ping", &serde_json::json!({}))
        .await
        .expect_err("nobody serves");
}

/// A service whose `#[on_stop]` panics.
struct PanicsOnStop;

#[service(name = "panics-on-stop", version = "1.0.0")]
impl PanicsOnStop {
    #[on_stop]
    async fn flush(&self) {
        panic!("cannot flush")
    }

    #[rpc]
    async fn ping(&self) -> String {
        "pong".to_owned()
    }
}

#[tokio::test]
async fn a_panicking_on_stop_still_stops_cleanly_and_removes_the_entry() {
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let instance = ServiceRunner::new(PanicsOnStop)
        .nats(nats.clone())
        .instance_id("panics-on-stop-1")
        .start()
        .await
        .expect("start");
    let client = ServiceClient::new(server.connect().await.expect("connect"), "panics-on-stop")
        .expect("client");
    let pong: String = client
        .call("ping", &serde_json::json!({}))
        .await
        .expect("serves");
    assert_eq!(pong, "pong");

    let stopping = tokio::spawn(instance.stop());
    let stopped = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stop completes in time");
    assert!(
        stopped.is_ok(),
        "the panic of on_stop does not escape stop(): {stopped:?}"
    );
    assert_eq!(panics_counted("on_stop", "on_stop"), 1);
    let js = async_nats::jetstream::new(nats);
    let store = js.get_key_value(REGISTRY).await.expect("registry");
    assert_eq!(
        store
            .get("service-instances.panics-on-stop.panics-on-stop-1")
            .await
            .expect("get"),
        None,
        "the registry entry is removed"
    );
}
