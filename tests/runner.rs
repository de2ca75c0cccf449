//! Live instances on a real nats-server: registry entries that expire, heartbeats,
//! reconnects, bad input, graceful stop, status RPCs and the NATS micro protocol.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_examples::orders::{Health, OrderProcessor, OrderProcessorClient};
use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
use aegis_runtime::instance::{InstanceStatus, ServiceInstance};
use aegis_runtime::runner::{HealthReport, MicroInfo, MicroPing, MicroStats, StatusReport};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Lifecycle, RunningService, ServiceClient, ServiceRunner, service};
use async_nats::jetstream::kv::{Operation, Store};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{ChildProcess, until};

const REGISTRY: &str = "service_registry";

async fn registry(server: &NatsServer) -> Store {
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    js.get_key_value(REGISTRY)
        .await
        .expect("the registry bucket exists")
}

async fn start(server: &NatsServer, id: &str, heartbeat: Duration) -> RunningService {
    ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .registry_ttl(Duration::from_secs(2))
        .heartbeat_interval(heartbeat)
        .start()
        .await
        .expect("instance starts")
}

#[tokio::test]
async fn a_killed_instance_expires_from_the_registry_and_watchers_see_it() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (mut child, ready) = ChildProcess::start(
        "order_service",
        &[
            "--nats",
            &url,
            "--instance",
            "orders-crash",
            "--registry-ttl",
            "2",
            "--heartbeat-ms",
            "500",
        ],
    );
    assert_eq!(ready, "ready orders-crash");

    let store = registry(&server).await;
    let key = "service-instances.order-processor.orders-crash";
    let entry = store.get(key).await.expect("get").expect("registered");
    let entry = ServiceInstance::from_json(&entry).expect("a valid entry");
    assert_eq!(entry.status, InstanceStatus::Active);
    let mut watch = store.watch(key).await.expect("watch");

    child.kill();
    let killed = Instant::now();
    let gone = loop {
        let change = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a change within 10 s")
            .expect("watch open")
            .expect("entry");
        if change.operation != Operation::Put {
            assert_eq!(
                change.operation,
                Operation::Purge,
                "an expiry, not a delete: nobody deleted it"
            );
            break killed.elapsed();
        }
    };
    assert!(
        gone <= Duration::from_millis(3500),
        "the entry lived {gone:?} after the kill (TTL 2 s)"
    );
    assert_eq!(store.get(key).await.expect("get"), None);
}

#[tokio::test]
async fn a_stopped_instance_leaves_the_registry_at_once() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-stop", Duration::from_millis(500)).await;
    let store = registry(&server).await;
    let key = "service-instances.order-processor.orders-stop";
    assert!(store.get(key).await.expect("get").is_some());
    let mut watch = store.watch(key).await.expect("watch");

    instance.stop().await;
    // The instance may write its role (STANDBY) as it gives up leadership, then it deletes
    // the entry, and nothing is written after that.
    let deleted = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(change)) = watch.next().await {
            if change.operation != Operation::Put {
                return change.operation;
            }
        }
        Operation::Put
    })
    .await
    .expect("seen at once");
    assert_eq!(deleted, Operation::Delete);
    tokio::time::sleep(Duration::from_millis(700)).await; // two heartbeat intervals
    assert_eq!(
        store.get(key).await.expect("get"),
        None,
        "nothing re-registers a stopped instance"
    );
}

#[tokio::test]
async fn a_deleted_entry_comes_back_at_the_next_heartbeat() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-beat", Duration::from_millis(300)).await;
    // Once elected, the instance writes its entry only on heartbeats.
    assert!(
        until(Duration::from_secs(5), || async {
            instance.leadership().is_active()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = registry(&server).await;
    let key = "service-instances.order-processor.orders-beat";
    store.delete(key).await.expect("delete by hand");
    assert_eq!(store.get(key).await.expect("get"), None);
    let back = until(Duration::from_secs(2), || async {
        store.get(key).await.ok().flatten().is_some()
    })
    .await;
    assert!(back, "the entry did not come back");
    instance.stop().await;
}

#[tokio::test]
async fn an_instance_reconnects_and_re_registers_after_a_server_restart() {
    let mut server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-restart", Duration::from_millis(300)).await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    client.health_check().await.expect("serves before");

    server.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the outage the issue asks for
    server.restart().await.expect("restart");

    let store = registry(&server).await;
    let key = "service-instances.order-processor.orders-restart";
    store.delete(key).await.expect("start from no entry");
    let registered = until(Duration::from_secs(15), || async {
        store.get(key).await.ok().flatten().is_some()
    })
    .await;
    assert!(registered, "the instance did not re-register");
    let serves = until(Duration::from_secs(15), || async {
        client.health_check().await.is_ok()
    })
    .await;
    assert!(serves, "the instance does not serve after the restart");
    assert_eq!(instance.status(), InstanceStatus::Active);
    instance.stop().await;
}

/// A thousand requests that cannot be decoded, of many kinds.
fn malformed_payloads() -> Vec<Vec<u8>> {
    let good =
        serde_json::to_value(RpcRequest::new("get_quote", json!({"items": 1}))).expect("value");
    let mut payloads = Vec::new();
    for i in 0..1000u32 {
        let payload = match i % 10 {
            0 => Vec::new(),
            1 => (0..(i % 64 + 1)).map(|b| (b * 37 + i) as u8).collect(),
            2 => codec::encode(&good).expect("encode")[..(i as usize % 100 + 1)].to_vec(),
            3 => format!("{{\"message_id\": {i}").into_bytes(),
            4 => codec::encode(&json!({"hello": i})).expect("encode"),
            5 => {
                let mut extra = good.clone();
                extra["surprise"] = json!(i);
                codec::encode(&extra).expect("encode")
            }
            6 => {
                let mut wrong = good.clone();
                wrong["params"]["items"] = json!(format!("{i}"));
                codec::encode(&wrong).expect("encode")
            }
            7 => {
                let mut bad_time = good.clone();
                bad_time["timestamp"] = json!("not a time");
                serde_json::to_vec(&bad_time).expect("json")
            }
            8 => vec![0x91; 1000 + i as usize],
            _ => vec![0xc1, 0xff, 0x00, i as u8],
        };
        payloads.push(payload);
    }
    payloads
}

#[tokio::test]
async fn a_thousand_malformed_requests_get_a_thousand_error_replies() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-bad", Duration::from_millis(500)).await;
    let nats = server.connect().await.expect("connect");
    let replies = futures_util::stream::iter(malformed_payloads())
        .map(|payload| {
            let nats = nats.clone();
            async move {
                let reply = nats
                    .request("rpc.order-processor.get_quote", payload.clone().into())
                    .await;
                (payload, reply)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(replies.len(), 1000);
    for (payload, reply) in replies {
        let reply = reply.expect("every request is answered");
        if codec::is_bare_call(&payload) {
            // Not an envelope but JSON (or empty): a bare-JSON call, as the NATS tools send,
            // refused in the ADR-32 headers with an empty body.
            let header = |name| {
                reply
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            assert_eq!(header("Nats-Service-Error-Code").as_deref(), Some("400"));
            let error = header("Nats-Service-Error").expect("an error");
            assert!(error.starts_with("cannot decode RPC params"), "{error}");
            assert!(reply.payload.is_empty());
            continue;
        }
        let response: RpcResponse =
            codec::decode(&reply.payload).expect("the answer is an envelope");
        assert!(!response.success);
        let error = response.error.expect("an error");
        assert!(
            error.starts_with("cannot decode RPC request")
                || error.starts_with("invalid RPC request"),
            "{error}"
        );
    }
    let client = OrderProcessorClient::new(nats);
    assert_eq!(
        client.health_check().await.expect("still serving"),
        Health {
            status: "healthy".into(),
            processed: 0
        }
    );
    let report = instance.report();
    let quote = report
        .methods
        .iter()
        .find(|m| m.name == "get_quote")
        .expect("get_quote");
    assert_eq!((quote.calls, quote.errors), (1000, 1000));
    instance.stop().await;
}

/// A service whose method takes as long as it is told.
struct Slow;

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Wait {
    millis: u64,
}

#[service(name = "slow")]
impl Slow {
    #[rpc]
    async fn wait(&self, request: Wait) -> u64 {
        tokio::time::sleep(Duration::from_millis(request.millis)).await;
        request.millis
    }
}

#[tokio::test]
async fn a_stop_answers_every_call_in_flight() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = ServiceRunner::new(Slow)
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    let client = Arc::new(
        ServiceClient::new(server.connect().await.expect("connect"), "slow").expect("client"),
    );
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>("wait", &Wait { millis: 500 }).await })
        })
        .collect();
    let all_in = until(Duration::from_secs(5), || async {
        instance.report().in_flight == 50
    })
    .await;
    assert!(all_in, "50 calls should be in flight");

    let stopping = Instant::now();
    instance.stop().await;
    assert!(
        stopping.elapsed() >= Duration::from_millis(300),
        "stop waited for the calls"
    );
    for call in calls {
        assert_eq!(
            call.await
                .expect("task")
                .expect("answered before the stop finished"),
            500
        );
    }
    let after = client
        .call::<_, u64>("wait", &Wait { millis: 1 })
        .await
        .expect_err("stopped");
    assert!(
        matches!(after.kind(), aegis_runtime::CallErrorKind::NoResponders),
        "{after}"
    );
}

#[tokio::test]
async fn status_and_health_are_built_in() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-status", Duration::from_millis(500)).await;
    assert_eq!(instance.lifecycle(), Lifecycle::Started);
    assert!(
        until(Duration::from_secs(5), || async {
            instance.leadership().is_active()
        })
        .await,
        "a lone instance is elected"
    );
    let client = ServiceClient::new(server.connect().await.expect("connect"), "order-processor")
        .expect("client");
    OrderProcessorClient::from_client(client.clone())
        .health_check()
        .await
        .expect("one call");

    let status: StatusReport = client
        .call("aegis_status", &json!({}))
        .await
        .expect("status");
    assert_eq!(status.instance_id, "orders-status");
    assert_eq!(status.lifecycle, Lifecycle::Started);
    assert_eq!(status.status, InstanceStatus::Active);
    assert_eq!(status.group.as_deref(), Some("default"));
    assert_eq!(
        status.role,
        Some(aegis_runtime::instance::StickyActiveStatus::Active)
    );
    assert_eq!(status.term, instance.leadership().term());
    assert!(status.term.is_some());
    let health_check = status
        .methods
        .iter()
        .find(|m| m.name == "health_check")
        .expect("listed");
    assert_eq!(health_check.calls, 1);

    let health: HealthReport = client
        .call("aegis_health", &json!({}))
        .await
        .expect("health");
    assert_eq!(
        health,
        HealthReport {
            instance_id: "orders-status".into(),
            service: "order-processor".into(),
            status: "healthy".into(),
            is_active: true,
            lifecycle: Lifecycle::Started,
        }
    );
    instance.stop().await;
}

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn srv_answers_have_the_shapes_of_adr_32() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-micro", Duration::from_millis(500)).await;
    let elected = Instant::now() + Duration::from_secs(10);
    while !instance.leadership().is_active() {
        assert!(Instant::now() < elected, "never elected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let nats = server.connect().await.expect("connect");
    OrderProcessorClient::new(nats.clone())
        .health_check()
        .await
        .expect("one call");

    let ask = |subject: &'static str| {
        let nats = nats.clone();
        async move {
            let reply = nats.request(subject, "".into()).await.expect(subject);
            serde_json::from_slice::<Value>(&reply.payload).expect("JSON")
        }
    };
    let common = ["type", "name", "id", "version", "metadata"];

    let ping = ask("$SRV.PING").await;
    assert_eq!(keys(&ping), common.into_iter().collect());
    let ping: MicroPing = serde_json::from_value(ping).expect("ping");
    assert_eq!(
        (ping.kind.as_str(), ping.name.as_str(), ping.id.as_str()),
        (
            "io.nats.micro.v1.ping_response",
            "order-processor",
            "orders-micro"
        )
    );
    // The only instance leads: its metadata shows the term its handlers see.
    let term = instance.leadership().term().expect("the leader");
    assert_eq!(
        ping.metadata.get("leader_term"),
        Some(&term.to_string()),
        "{:?}",
        ping.metadata
    );

    let info = ask("$SRV.INFO.order-processor").await;
    assert_eq!(
        keys(&info),
        common
            .into_iter()
            .chain(["description", "endpoints"])
            .collect()
    );
    let endpoint = &info["endpoints"][0];
    assert_eq!(
        keys(endpoint),
        ["name", "subject", "queue_group", "metadata"]
            .into_iter()
            .collect()
    );
    let info: MicroInfo = serde_json::from_value(info).expect("info");
    assert_eq!(info.kind, "io.nats.micro.v1.info_response");
    let process = info
        .endpoints
        .iter()
        .find(|e| e.name == "process_order")
        .expect("endpoint");
    assert_eq!(process.subject, "rpc.order-processor.process_order");
    assert_eq!(process.queue_group, "rpc.order-processor");
    assert_eq!(process.metadata["exclusive"], "true");
    let schema: Value =
        serde_json::from_str(&process.metadata["request_schema"]).expect("a JSON Schema");
    assert_eq!(schema["properties"]["order_id"]["type"], "string");

    let stats = ask("$SRV.STATS.order-processor.orders-micro").await;
    assert_eq!(
        keys(&stats),
        common.into_iter().chain(["started", "endpoints"]).collect()
    );
    assert_eq!(
        keys(&stats["endpoints"][0]),
        [
            "name",
            "subject",
            "queue_group",
            "num_requests",
            "num_errors",
            "last_error",
            "processing_time",
            "average_processing_time"
        ]
        .into_iter()
        .collect()
    );
    let stats: MicroStats = serde_json::from_value(stats).expect("stats");
    assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
    let health = stats
        .endpoints
        .iter()
        .find(|e| e.name == "health_check")
        .expect("endpoint");
    assert_eq!((health.num_requests, health.num_errors), (1, 0));
    assert!(health.processing_time > 0 && health.average_processing_time == health.processing_time);
    instance.stop().await;
}

/// Records which of its hooks ran; refuses to start when told to.
struct Hooked {
    refuse_start: bool,
    events: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

#[service(name = "hooked")]
impl Hooked {
    #[on_start]
    async fn warm_up(&self) -> Result<(), String> {
        if self.refuse_start {
            return Err("the database is unreachable".to_owned());
        }
        self.events.lock().expect("lock").push("start");
        Ok(())
    }

    #[rpc]
    async fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .map(|e| (*e).to_owned())
            .collect()
    }

    #[on_stop]
    async fn flush(&self) {
        self.events.lock().expect("lock").push("stop");
    }
}

#[tokio::test]
async fn hooks_run_before_serving_and_after_the_drain() {
    let server = NatsServer::start().await.expect("nats-server");
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let instance = ServiceRunner::new(Hooked {
        refuse_start: false,
        events: events.clone(),
    })
    .nats(server.connect().await.expect("connect"))
    .start()
    .await
    .expect("start");
    let client =
        ServiceClient::new(server.connect().await.expect("connect"), "hooked").expect("client");
    let seen: Vec<String> = client.call("events", &json!({})).await.expect("events");
    assert_eq!(seen, ["start"], "on_start ran before the first call");
    instance.stop().await;
    assert_eq!(*events.lock().expect("lock"), ["start", "stop"]);
}

#[tokio::test]
async fn a_failing_on_start_fails_the_start_and_leaves_nothing_behind() {
    let server = NatsServer::start().await.expect("nats-server");
    let refused = ServiceRunner::new(Hooked {
        refuse_start: true,
        events: Arc::default(),
    })
    .nats(server.connect().await.expect("connect"))
    .instance_id("hooked-1")
    .start()
    .await
    .expect_err("on_start fails");
    assert_eq!(
        refused.to_string(),
        "the service's #[on_start] method failed: the database is unreachable"
    );
    let client =
        ServiceClient::new(server.connect().await.expect("connect"), "hooked").expect("client");
    let err = client
        .call::<_, Vec<String>>("events", &json!({}))
        .await
        .expect_err("nobody serves");
    assert!(
        matches!(err.kind(), aegis_runtime::CallErrorKind::NoResponders),
        "{err}"
    );
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    if let Ok(store) = js.get_key_value(REGISTRY).await {
        assert_eq!(
            store
                .get("service-instances.hooked.hooked-1")
                .await
                .expect("get"),
            None
        );
    }
}

#[tokio::test]
async fn the_status_counts_recent_errors() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server, "orders-errors", Duration::from_millis(500)).await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    for _ in 0..3 {
        client
            .quote(aegis_examples::orders::QuoteRequest { items: 0 })
            .await
            .expect_err("no items");
    }
    let quote = instance
        .report()
        .methods
        .into_iter()
        .find(|m| m.name == "get_quote")
        .expect("listed");
    assert_eq!(
        (quote.calls, quote.errors, quote.errors_last_minute),
        (3, 3, 3)
    );
    // The handler's own error, not a generic "the handler failed".
    assert_eq!(
        quote.last_error.as_deref(),
        Some("an order needs at least one item")
    );
    let nats = server.connect().await.expect("connect");
    let reply = nats
        .request("$SRV.STATS.order-processor.orders-errors", "".into())
        .await
        .expect("$SRV.STATS");
    let stats: MicroStats = serde_json::from_slice(&reply.payload).expect("stats");
    let quote = stats
        .endpoints
        .iter()
        .find(|e| e.name == "get_quote")
        .expect("endpoint");
    assert_eq!(
        (quote.num_errors, quote.last_error.as_str()),
        (3, "an order needs at least one item"),
        "$SRV.STATS carries the real last error"
    );
    instance.stop().await;
}

#[tokio::test]
async fn sigterm_stops_an_instance_process_gracefully() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (mut child, _) = ChildProcess::start(
        "order_service",
        &[
            "--nats",
            &url,
            "--instance",
            "orders-term",
            "--registry-ttl",
            "30",
            "--heartbeat-ms",
            "1000",
        ],
    );
    let store = registry(&server).await;
    let key = "service-instances.order-processor.orders-term";
    let mut watch = store.watch(key).await.expect("watch");

    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        child.wait_exit(Duration::from_secs(10)),
        "the process exits after SIGTERM"
    );
    let change = tokio::time::timeout(Duration::from_secs(1), watch.next())
        .await
        .expect("the entry leaves at once, long before its 30 s TTL")
        .expect("open")
        .expect("entry");
    assert_eq!(change.operation, Operation::Delete);
}

#[tokio::test]
async fn two_instances_share_the_calls() {
    let server = NatsServer::start().await.expect("nats-server");
    let a = start(&server, "orders-1", Duration::from_millis(500)).await;
    let b = start(&server, "orders-2", Duration::from_millis(500)).await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    let mut served = BTreeSet::new();
    for _ in 0..40 {
        served.insert(client.whoami().await.expect("whoami"));
    }
    assert_eq!(
        served,
        BTreeSet::from(["orders-1".to_owned(), "orders-2".to_owned()])
    );
    a.stop().await;
    b.stop().await;
}

/// The start's error when it fails, within 10 s.
async fn failed_start(nats: async_nats::Client) -> aegis_runtime::StartError {
    tokio::time::timeout(
        Duration::from_secs(10),
        ServiceRunner::new(OrderProcessor::default())
            .nats(nats)
            .start(),
    )
    .await
    .expect("the start ends")
    .expect_err("the start fails")
}

#[tokio::test]
async fn settings_out_of_range_fail_the_start_with_a_typed_error_before_connecting() {
    // Nothing listens on port 1: the checks come before any connection attempt.
    let runner = || ServiceRunner::new(OrderProcessor::default()).url("nats://127.0.0.1:1");
    let err = runner()
        .heartbeat_interval(Duration::from_secs(5))
        .registry_ttl(Duration::from_secs(5))
        .start()
        .await
        .expect_err("a heartbeat as long as the TTL");
    assert!(
        matches!(
            &err,
            aegis_runtime::StartError::InvalidConfig(
                aegis_runtime::runner::InvalidConfig::HeartbeatNotShorterThanTtl { .. }
            )
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("must be shorter than the registry TTL"),
        "{err}"
    );
    let err = runner()
        .leader_ttl(Duration::from_millis(200))
        .start()
        .await
        .expect_err("a leader TTL under a second");
    assert!(
        matches!(
            &err,
            aegis_runtime::StartError::InvalidConfig(
                aegis_runtime::runner::InvalidConfig::LeaderTtlTooShort(ttl)
            ) if *ttl == Duration::from_millis(200)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_without_jetstream_fails_the_start_with_the_not_enabled_kind() {
    let server = NatsServer::builder()
        .without_jetstream()
        .start()
        .await
        .expect("nats-server");
    let began = Instant::now();
    let err = failed_start(server.connect().await.expect("connect")).await;
    assert!(
        matches!(
            &err,
            aegis_runtime::StartError::Registry(aegis_runtime::JetStreamError::NotEnabled {
                for_account: false,
                ..
            })
        ),
        "{err:?}"
    );
    // Nothing answers on $JS.API at once (no responders): no timeout is waited out.
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert!(err.to_string().contains("-js"), "the fix is named: {err}");
    // async-nats's own error stays reachable below it.
    let source = std::error::Error::source(&err).expect("the JetStream error");
    assert!(std::error::Error::source(source).is_some(), "{source:?}");
}

#[tokio::test]
async fn an_account_without_jetstream_fails_the_start_with_the_not_enabled_kind() {
    let server = NatsServer::builder()
        .config(
            "accounts {\n  WITH: { jetstream: enabled, users: [{ user: with, password: with }] }\n  \
             WITHOUT: { users: [{ user: without, password: without }] }\n}",
        )
        .start()
        .await
        .expect("nats-server");
    let nats =
        async_nats::ConnectOptions::with_user_and_password("without".into(), "without".into())
            .connect(server.url())
            .await
            .expect("connect");
    let err = failed_start(nats).await;
    assert!(
        matches!(
            &err,
            aegis_runtime::StartError::Registry(aegis_runtime::JetStreamError::NotEnabled {
                for_account: true,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("account"), "{err}");
}

#[tokio::test]
async fn a_registry_bucket_without_per_message_ttl_is_named_with_the_fix() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    // As `nats kv add service_registry` makes it: no per-message TTL, so no write of an
    // entry (they all carry a TTL) could ever land.
    async_nats::jetstream::new(nats.clone())
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: REGISTRY.into(),
            ..Default::default()
        })
        .await
        .expect("bucket");
    let err = failed_start(nats).await;
    match &err {
        aegis_runtime::StartError::Registry(aegis_runtime::JetStreamError::Misconfigured {
            resource,
            setting,
            fix,
        }) => {
            assert!(resource.contains(REGISTRY), "{resource}");
            assert!(setting.contains("TTL"), "{setting}");
            assert!(fix.contains("--marker-ttl"), "{fix}");
        }
        other => panic!("not a misconfigured bucket: {other:?}"),
    }
}

#[tokio::test]
async fn discovery_without_jetstream_says_so_in_its_source() {
    use aegis_runtime::discovery::{BasicDiscovery, Discovery, DiscoveryError};
    let server = NatsServer::builder()
        .without_jetstream()
        .start()
        .await
        .expect("nats-server");
    let discovery = BasicDiscovery::new(server.connect().await.expect("connect"));
    let service = aegis_runtime::subject::ServiceName::new("order-processor").expect("name");
    let err = discovery
        .instances(&service)
        .await
        .expect_err("no registry to read");
    let DiscoveryError::Registry(registry) = &err else {
        panic!("not a registry error: {err:?}");
    };
    assert!(
        matches!(
            registry
                .inner()
                .downcast_ref::<aegis_runtime::JetStreamError>(),
            Some(aegis_runtime::JetStreamError::NotEnabled { .. })
        ),
        "{registry:?}"
    );
    assert!(err.to_string().contains("-js"), "{err}");
}

/// nats-server 2.15 gives every stream a default limit of 1,000 consumers, and every
/// member of a sticky-active group watches its leader key (one consumer each): past 1,000
/// members, new instances could not start. The streams Aegis creates set their own limit.
#[tokio::test]
async fn the_streams_aegis_creates_take_more_than_a_thousand_consumers() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let running = ServiceRunner::new(OrderProcessor::default())
        .nats(nats.clone())
        .instance_id("orders-1")
        .start()
        .await
        .expect("start");
    let js = async_nats::jetstream::new(nats.clone());
    for bucket in [
        aegis_runtime::subject::STICKY_ACTIVE_BUCKET,
        aegis_runtime::subject::REGISTRY_BUCKET,
    ] {
        let store = js.get_key_value(bucket).await.expect("bucket");
        // As many watches as 1,100 group members (or watching processes) open.
        let mut watches = Vec::new();
        for n in 0..1100 {
            match store.watch(format!("no-such-key-{n}")).await {
                Ok(watch) => watches.push(watch),
                Err(err) => panic!("{bucket}: watch {n} refused: {err}"),
            }
        }
    }
    // Broadcast subscriptions take one consumer per instance.
    let mut events = js.get_stream("EVENTS").await.expect("stream");
    let limit = events.info().await.expect("info").config.max_consumers;
    assert!(limit >= 100_000, "EVENTS takes {limit} consumers");
    running.stop().await;
}
