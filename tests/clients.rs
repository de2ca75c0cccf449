//! Clients: discovery (basic, cached, watch), selection, retries only of calls that did
//! not run, the retry budget, deadlines and metrics. Real nats-server, real instances
//! (in-process runners, or child processes where one must be killed).

#![allow(clippy::print_stdout)] // measured times are printed

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aegis_examples::failover::{self, Caller};
use aegis_examples::orders::OrderProcessorClient;
use aegis_runtime::client::{RetryBudget, Selection};
use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
use aegis_runtime::discovery::{BasicDiscovery, CachedDiscovery, Discovery, WatchDiscovery};
use aegis_runtime::subject::{self, InstanceId, MethodName, ServiceName};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{
    CallErrorKind, RetryPolicy, RpcContext, RunningService, ServiceClient, ServiceRunner, service,
};
use metrics_util::debugging::DebugValue;
use support::{ChildProcess, hold_leader_key};

/// A service whose handlers count their runs, sleep or fail on request.
#[derive(Clone, Default)]
struct Probe {
    runs: Arc<AtomicU64>,
}

#[service(name = "probe", version = "1.0.0")]
impl Probe {
    /// Who answers.
    #[rpc]
    async fn whoami(&self, ctx: &RpcContext) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ctx.instance_id().to_owned()
    }

    /// Sleeps `ms` milliseconds.
    #[rpc]
    async fn nap(&self, ms: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Always fails.
    #[rpc]
    async fn fail(&self) -> Result<(), String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err("it failed, as asked".into())
    }

    /// Only for the leader.
    #[exclusive_rpc]
    async fn lead(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        1
    }
}

fn probe_service() -> ServiceName {
    ServiceName::new("probe").expect("name")
}

async fn start_probe(server: &NatsServer, id: &str, probe: Probe) -> RunningService {
    ServiceRunner::new(probe)
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .start()
        .await
        .expect("start")
}

/// Waits until `discovery` lists exactly `ids` for `service`.
async fn wait_for_instances(discovery: &dyn Discovery, service: &ServiceName, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = discovery
            .instances(service)
            .await
            .map(|list| list.iter().map(|i| i.instance_id.to_string()).collect())
            .unwrap_or_default();
        if found == ids {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "discovery lists {found:?}, expected {ids:?}"
        );
        // Lookups of a watch discovery are reads from memory: poll it finely.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the server answers "no responders" on `subject`.
async fn wait_until_nobody_serves(nats: &async_nats::Client, subject: String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = async_nats::Request::new().timeout(Some(Duration::from_millis(100)));
        match nats.send_request(subject.clone(), probe).await {
            Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => return,
            _ => assert!(
                Instant::now() < deadline,
                "{subject} is still served 10 s after its instance was killed"
            ),
        }
    }
}

/// The metrics recorded by this test binary: one global recorder for all its tests.
/// Snapshots drain the recorder, so every snapshot is kept here and tests read from it.
fn all_recorded() -> std::sync::MutexGuard<'static, Vec<(String, String, Vec<f64>)>> {
    static RECORDED: std::sync::Mutex<Vec<(String, String, Vec<f64>)>> =
        std::sync::Mutex::new(Vec::new());
    let snapshotter = support::metrics_recorder();
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let service = key
            .key()
            .labels()
            .find(|label| label.key() == "service")
            .map(|label| label.value().to_owned())
            .unwrap_or_default();
        // Counters as their increment, histograms as their samples.
        let values = match value {
            DebugValue::Counter(n) => vec![n as f64],
            DebugValue::Histogram(samples) => samples.into_iter().map(|v| v.into_inner()).collect(),
            DebugValue::Gauge(v) => vec![v.into_inner()],
        };
        recorded.push((key.key().name().to_owned(), service, values));
    }
    recorded
}

/// Every value recorded so far under `name` with label service = `service`: counter
/// increments or histogram samples.
fn recorded(name: &str, service: &str) -> Vec<f64> {
    all_recorded()
        .iter()
        .filter(|(n, s, _)| n == name && s == service)
        .flat_map(|(.., values)| values.iter().copied())
        .collect()
}

fn counter_total(name: &str, service: &str) -> u64 {
    recorded(name, service).into_iter().sum::<f64>() as u64
}

/// Three probe instances, a watch discovery that lists them all, and a client over it
/// that selects with `selection`; then `calls` calls of `whoami`, counted by instance.
async fn calls_by_instance(selection: Selection, calls: usize) -> BTreeMap<String, u32> {
    let server = NatsServer::start().await.expect("nats-server");
    let ids = ["probe-a", "probe-b", "probe-c"];
    let mut instances = Vec::new();
    for id in ids {
        instances.push(start_probe(&server, id, Probe::default()).await);
    }
    let nats = server.connect().await.expect("connect");
    let discovery = WatchDiscovery::new(nats.clone());
    wait_for_instances(&discovery, &probe_service(), &ids).await;
    let client = ProbeClient::configured(nats, |c| {
        c.with_discovery(discovery).with_selection(selection)
    });
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..calls {
        *served
            .entry(client.whoami().await.expect("call"))
            .or_default() += 1;
    }
    for instance in instances {
        instance.stop().await;
    }
    served
}

#[tokio::test]
async fn round_robin_spreads_300_calls_evenly_over_3_instances() {
    let served = calls_by_instance(Selection::RoundRobin, 300).await;
    let even: BTreeMap<String, u32> = ["probe-a", "probe-b", "probe-c"]
        .iter()
        .map(|id| (id.to_string(), 100))
        .collect();
    assert_eq!(served, even, "round robin");
}

#[tokio::test]
async fn random_selection_reaches_every_instance() {
    let served = calls_by_instance(Selection::Random, 150).await;
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(
        served.values().all(|n| *n >= 20),
        "roughly uniform: {served:?}"
    );
}

#[tokio::test]
async fn sticky_stays_on_its_instance_and_moves_when_it_is_killed() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let ids = ["orders-1", "orders-2", "orders-3"];
    let mut children: BTreeMap<&str, ChildProcess> = ids
        .iter()
        .map(|id| {
            (
                *id,
                failover::spawn_instance(&url, id, Duration::from_secs(2), None),
            )
        })
        .collect();
    let nats = server.connect().await.expect("connect");
    let discovery = WatchDiscovery::new(nats.clone());
    let service = ServiceName::new(OrderProcessorClient::SERVICE).expect("name");
    wait_for_instances(&discovery, &service, &ids).await;
    let preferred = InstanceId::new("orders-2").expect("id");
    let client = OrderProcessorClient::configured(nats, |c| {
        c.with_discovery(discovery.clone())
            .with_selection(Selection::Sticky(preferred.clone()))
    });
    for _ in 0..50 {
        assert_eq!(client.whoami().await.expect("call"), "orders-2");
    }

    if let Some(child) = children.get_mut("orders-2") {
        child.kill();
    }
    // The server drops a dead connection's subscriptions when it reads the EOF, a moment
    // after the process is gone; a request sent before that is delivered into the void and
    // can only time out (it may have run, as far as the client knows).
    let whoami = MethodName::new("whoami").expect("name");
    wait_until_nobody_serves(
        &server.connect().await.expect("connect"),
        subject::rpc_instance(&service, &preferred, &whoami),
    )
    .await;
    // Calls go on without a failure: the first finds nobody on orders-2's subject (it did
    // not run), and is retried on another instance.
    let mut after: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..50 {
        *after
            .entry(client.whoami().await.expect("call after the kill"))
            .or_default() += 1;
    }
    assert!(!after.contains_key("orders-2"), "{after:?}");
    assert!(
        after.contains_key("orders-1") && after.contains_key("orders-3"),
        "falls back to round robin over the others: {after:?}"
    );
}

#[tokio::test]
async fn watch_discovery_sees_a_new_instance_at_once_and_a_crashed_one_go_after_its_ttl() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let discovery = WatchDiscovery::new(nats.clone());
    let service = ServiceName::new(OrderProcessorClient::SERVICE).expect("name");
    assert!(
        discovery.instances(&service).await.is_err(),
        "no registry bucket yet: the registry cannot be read"
    );

    let start = |id: &'static str| support::start_orders(&server, id);
    let runner = start("orders-in-process").await;
    wait_for_instances(&discovery, &service, &["orders-in-process"]).await;
    // The bucket exists now; once the watch is open, an instance shows as soon as it
    // registered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !discovery.is_watching(&service) {
        assert!(Instant::now() < deadline, "the watch never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = start("orders-second").await;
    let started = Instant::now();
    wait_for_instances(
        &discovery,
        &service,
        &["orders-in-process", "orders-second"],
    )
    .await;
    let seen_after = started.elapsed();
    println!("new instance seen after {seen_after:?}");
    assert!(
        seen_after < Duration::from_millis(100),
        "seen after {seen_after:?}"
    );
    second.stop().await;
    wait_for_instances(&discovery, &service, &["orders-in-process"]).await;

    // A crashed instance (kill -9) leaves its entry behind until the registry TTL (3 s
    // here) expires it; the watch is told, with no polling.
    let mut crashed =
        failover::spawn_instance(&server.url(), "orders-crash", Duration::from_secs(2), None);
    wait_for_instances(&discovery, &service, &["orders-crash", "orders-in-process"]).await;
    crashed.kill();
    let killed = Instant::now();
    let registry_ttl = Duration::from_secs(3);
    while discovery.changed(&service, Duration::from_secs(10)).await {
        let ids: Vec<String> = discovery
            .instances(&service)
            .await
            .expect("instances")
            .iter()
            .map(|i| i.instance_id.to_string())
            .collect();
        if ids == ["orders-in-process"] {
            break;
        }
    }
    let gone_after = killed.elapsed();
    println!("crashed instance gone after {gone_after:?} (registry TTL {registry_ttl:?})");
    assert!(
        gone_after >= registry_ttl - Duration::from_millis(600)
            && gone_after <= registry_ttl + Duration::from_secs(1),
        "gone after {gone_after:?}"
    );
    let probe = start_probe(&server, "probe-a", Probe::default()).await;
    assert!(
        discovery
            .instances(&service)
            .await
            .expect("listed")
            .iter()
            .all(|i| i.instance_id.as_str() != "probe-a"),
        "another service's instance is not listed"
    );
    probe.stop().await;
    let stopping = Instant::now();
    runner.stop().await;
    wait_for_instances(&discovery, &service, &[]).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "a graceful stop deletes the entry at once"
    );
    assert!(
        discovery
            .instances(&ServiceName::new("nobody").expect("name"))
            .await
            .expect("list")
            .is_empty(),
        "a service nobody registered is an empty list"
    );
}

#[tokio::test]
async fn a_heartbeat_wakes_no_watcher_and_a_membership_change_wakes_them_within_50_ms() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let service = probe_service();
    let beating = ServiceRunner::new(Probe::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id("probe-beating")
        .registry_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("start");
    let discovery = WatchDiscovery::new(nats.clone());
    wait_for_instances(&discovery, &service, &["probe-beating"]).await;
    // The service has an exclusive method: its entry changes once more when it becomes
    // the leader (a real change, which wakes watchers). Watch only after that.
    let settled = support::until(Duration::from_secs(10), || async {
        discovery.instances_now(&service).is_some_and(|listed| {
            listed.is_ok_and(|listed| {
                listed.iter().any(|entry| {
                    entry.sticky_active_status
                        == Some(aegis_runtime::instance::StickyActiveStatus::Active)
                })
            })
        })
    })
    .await;
    assert!(settled, "the instance became the leader");
    let registry = async_nats::jetstream::new(nats.clone())
        .get_key_value(subject::REGISTRY_BUCKET)
        .await
        .expect("registry bucket");
    let key = subject::registry_key(&service, beating.instance_id());
    let revision = || async {
        registry
            .entry(&key)
            .await
            .expect("read")
            .expect("entry")
            .revision
    };

    // Five heartbeats (every 100 ms; a loaded machine may space them out) that change
    // nothing but the time: the watcher sleeps through them.
    let before = revision().await;
    let wake = discovery.changed(&service, Duration::from_secs(60));
    tokio::pin!(wake);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::select! {
            woken = &mut wake => panic!("a heartbeat woke the watcher (changed: {woken})"),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if revision().await - before >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the instance did not beat five times"
        );
    }

    // A new instance's entry, written as any registering instance writes it.
    let waiter = {
        let (discovery, service) = (discovery.clone(), service.clone());
        tokio::spawn(async move {
            let woken = discovery.changed(&service, Duration::from_secs(5)).await;
            (woken, Instant::now())
        })
    };
    // The waiter is parked on the watch before the write.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newcomer = aegis_runtime::instance::ServiceInstance::new(
        service.clone(),
        subject::InstanceId::new("probe-newcomer").expect("id"),
        "1.0.0",
    )
    .expect("entry");
    let written = Instant::now();
    registry
        .put(
            subject::registry_key(&service, &newcomer.instance_id),
            newcomer.to_json().into(),
        )
        .await
        .expect("put");
    let (woken, at) = waiter.await.expect("waiter");
    let after = at.saturating_duration_since(written);
    println!("membership change seen by the watcher {after:?} after the write");
    assert!(woken, "a new instance did not wake the watcher");
    assert!(
        after <= Duration::from_millis(50),
        "woken {after:?} after the write"
    );
    let listed = discovery
        .instances_now(&service)
        .expect("live")
        .expect("usable");
    assert_eq!(listed.len(), 2);
    beating.stop().await;
}

/// Basic discovery reads a service's entries in one batched direct read up to 1,024 keys
/// and through a feed beyond: both give the same answer, deleted entries left out.
#[tokio::test]
async fn basic_discovery_reads_small_and_large_services_alike() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    // The bucket as instances make it.
    let _first = start_probe(&server, "probe-1", Probe::default()).await;
    let registry = async_nats::jetstream::new(nats.clone())
        .get_key_value(subject::REGISTRY_BUCKET)
        .await
        .expect("registry bucket");
    let discovery = BasicDiscovery::new(nats.clone());
    for (service, size) in [("few", 3), ("many", 1100)] {
        aegis_examples::scale::write_entries(&nats, service, size)
            .await
            .expect("entries");
        let name = ServiceName::new(service).expect("name");
        registry
            .delete(subject::registry_key(
                &name,
                &InstanceId::new(format!("{service}-1")).expect("id"),
            ))
            .await
            .expect("delete");
        let listed = discovery.instances(&name).await.expect("listed");
        assert_eq!(listed.len(), size - 1, "{service}");
        assert!(
            listed
                .iter()
                .all(|i| i.instance_id.as_str() != format!("{service}-1")),
            "{service}: the deleted entry is left out"
        );
        assert!(
            listed
                .windows(2)
                .all(|w| w[0].instance_id < w[1].instance_id),
            "sorted"
        );
    }
    let nobody = ServiceName::new("nobody").expect("name");
    assert_eq!(discovery.instances(&nobody).await.expect("empty").len(), 0);
}

#[tokio::test]
async fn cached_discovery_serves_stale_entries_when_the_registry_is_gone() {
    let server = NatsServer::start().await.expect("nats-server");
    let ids = ["probe-a", "probe-b"];
    let mut instances = Vec::new();
    for id in ids {
        instances.push(start_probe(&server, id, Probe::default()).await);
    }
    let nats = server.connect().await.expect("connect");
    let discovery = CachedDiscovery::new(nats.clone()).with_ttl(Duration::from_millis(100));
    wait_for_instances(&discovery, &probe_service(), &ids).await;
    let before = discovery.stats();
    discovery.instances(&probe_service()).await.expect("cached");
    assert_eq!(
        discovery.stats().hits,
        before.hits + 1,
        "a fresh list is a hit"
    );

    async_nats::jetstream::new(nats.clone())
        .delete_key_value("service_registry")
        .await
        .expect("delete the registry bucket");
    assert!(
        BasicDiscovery::new(nats.clone())
            .instances(&probe_service())
            .await
            .is_err(),
        "the registry is gone"
    );
    tokio::time::sleep(Duration::from_millis(150)).await; // the cached list expires

    let client = ProbeClient::configured(nats, |c| c.with_discovery(discovery.clone()));
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..10 {
        served.insert(client.whoami().await.expect("calls go on"));
    }
    assert_eq!(served.len(), 2, "both instances still reached: {served:?}");
    assert!(
        discovery.stats().stale_served > 0,
        "the stale list was served: {:?}",
        discovery.stats()
    );
    for instance in instances {
        instance.stop().await;
    }
}

#[tokio::test]
async fn unhealthy_only_services_are_unavailable() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let probe = start_probe(&server, "probe-a", Probe::default()).await;
    // Rewrite its entry as UNHEALTHY (as after three failed heartbeats).
    let store = async_nats::jetstream::new(nats.clone())
        .get_key_value("service_registry")
        .await
        .expect("bucket");
    let key = "service-instances.probe.probe-a";
    // Once elected, the instance writes its role; rewrite the entry after that.
    let mut entry: serde_json::Value;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        entry = serde_json::from_slice(&store.get(key).await.expect("get").expect("entry"))
            .expect("json");
        if entry["stickyActiveStatus"] == "ACTIVE" {
            break;
        }
        assert!(Instant::now() < deadline, "never elected: {entry}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    entry["status"] = "UNHEALTHY".into();
    store
        .put(key, serde_json::to_vec(&entry).expect("json").into())
        .await
        .expect("put");
    let client = ProbeClient::configured(nats.clone(), |c| {
        c.with_discovery(BasicDiscovery::new(nats.clone()))
    });
    let err = client.whoami().await.expect_err("unavailable");
    assert!(
        matches!(
            err.kind(),
            CallErrorKind::Unavailable(aegis_runtime::discovery::DiscoveryError::Unavailable {
                registered: 1,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("none is usable"), "{err}");
    probe.stop().await;
}

#[tokio::test]
async fn handler_errors_are_not_retried() {
    let server = NatsServer::start().await.expect("nats-server");
    let probe = Probe::default();
    let instance = start_probe(&server, "probe-a", probe.clone()).await;
    let client = ProbeClient::new(server.connect().await.expect("connect"));
    let err = client.fail().await.expect_err("the handler fails");
    assert!(
        matches!(err.kind(), CallErrorKind::Handler(m) if m == "it failed, as asked"),
        "{err:?}"
    );
    assert_eq!(err.attempts(), 1, "a call that ran is never retried");
    assert_eq!(probe.runs.load(Ordering::SeqCst), 1);
    assert!(
        err.to_string().contains("probe.fail") && err.to_string().contains("1 attempt"),
        "{err}"
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_retry_storm_against_a_service_without_leader_is_capped_by_the_budget() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    // Someone else holds the leader key: the instance stays standby, nobody serves the
    // exclusive method, every call is retried (it did not run).
    hold_leader_key(&nats, "probe").await;
    let instance = start_probe(&server, "probe-a", Probe::default()).await;

    let (floor_per_second, window) = (5, Duration::from_secs(10));
    let client = ProbeClient::configured(nats, |c| {
        c.with_timeout(Duration::from_secs(2))
            .with_retry_budget(RetryBudget::new(window, floor_per_second, 0.2))
    });
    let calls = 40;
    let outcomes = futures_util::future::join_all((0..calls).map(|_| client.lead())).await;
    let mut exhausted = 0;
    let mut retries = 0;
    for outcome in outcomes {
        let err = outcome.expect_err("no leader");
        retries += err.attempts() - 1;
        if matches!(err.kind(), CallErrorKind::BudgetExhausted(_)) {
            exhausted += 1;
            assert!(err.to_string().contains("retry budget exhausted"), "{err}");
        }
    }
    // The budget: floor × window in reserve, plus 20 % of the calls.
    let allowed = floor_per_second * window.as_secs() as u32 + calls / 5;
    println!("{calls} calls, {retries} retries (budget {allowed}), {exhausted} stopped by it");
    assert!(
        retries <= allowed + 5,
        "{retries} retries > budget {allowed}"
    );
    assert!(exhausted > 0, "the budget stopped some calls");
    instance.stop().await;
}

#[tokio::test]
async fn a_deadline_shorter_than_the_handler_is_exceeded() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start_probe(&server, "probe-a", Probe::default()).await;
    let client = ProbeClient::configured(server.connect().await.expect("connect"), |c| {
        c.with_timeout(Duration::from_millis(50))
    });
    let started = Instant::now();
    let err = client.nap(200).await.expect_err("too slow");
    assert!(
        matches!(err.kind(), CallErrorKind::DeadlineExceeded(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.attempts(), 1, "a call that may have run is not retried");
    instance.stop().await;
}

/// Sends `request` to `probe.nap` (waiting for the reply as long as it takes), and checks
/// that the reply says the call did not run because its deadline had passed.
async fn assert_refused_as_late(nats: &async_nats::Client, request: &RpcRequest) {
    let reply = nats
        .request(
            "rpc.probe.nap",
            codec::encode(request).expect("encode").into(),
        )
        .await
        .expect("a reply");
    let response: RpcResponse<u64> = codec::decode(&reply.payload).expect("decode");
    let error = response.error.expect("an error");
    assert!(error.starts_with("DEADLINE_EXCEEDED"), "{error}");
    assert!(error.contains("did not run"), "{error}");
}

#[tokio::test]
async fn a_request_received_after_its_deadline_is_not_run() {
    let server = NatsServer::start().await.expect("nats-server");
    let probe = Probe::default();
    let instance = start_probe(&server, "probe-a", probe.clone()).await;
    let nats = server.connect().await.expect("connect");
    // Sent 2 s ago with a timeout of 1 s: its caller gave up 1 s ago.
    let mut request = RpcRequest::new("nap", serde_json::json!(1)).with_timeout(1.0);
    request.timestamp = (std::time::SystemTime::now() - Duration::from_secs(2)).into();
    assert_refused_as_late(&nats, &request).await;
    assert_eq!(
        probe.runs.load(Ordering::SeqCst),
        0,
        "the handler did not run"
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_call_that_waits_past_its_deadline_in_a_busy_instance_is_not_run() {
    let server = NatsServer::start().await.expect("nats-server");
    let probe = Probe::default();
    let instance = ServiceRunner::new(probe.clone())
        .nats(server.connect().await.expect("connect"))
        .instance_id("probe-a")
        .concurrency(1)
        .start()
        .await
        .expect("start");
    let client = ProbeClient::new(server.connect().await.expect("connect"));
    let busy = tokio::spawn(async move { client.nap(500).await });
    while probe.runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // Queued behind the running call, with a deadline of 100 ms; its answer is read with a
    // longer wait, to see what the instance does once the first call is done.
    let nats = server.connect().await.expect("connect");
    let request = RpcRequest::new("nap", serde_json::json!(1)).with_timeout(0.1);
    assert_refused_as_late(&nats, &request).await;
    assert_eq!(busy.await.expect("task").expect("the first call"), 500);
    assert_eq!(
        probe.runs.load(Ordering::SeqCst),
        1,
        "only the first call ran"
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_leader_crash_under_continuous_calls_fails_none_and_records_the_failover() {
    drop(all_recorded()); // the recorder must be there before the client's first call
    let server = NatsServer::start().await.expect("nats-server");
    let mut group = failover::Group::start(&server.url(), 3, Duration::from_secs(2))
        .await
        .expect("group");
    let old = group.leader().await.expect("leader");
    let client = OrderProcessorClient::new(group.nats().clone()); // every default
    let caller = Caller::start(client.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failovers_before =
        recorded(aegis_runtime::metrics::FAILOVER_SECONDS, "order-processor").len();
    group.process(&old).expect("leader process").kill();
    let new = group.leader().await.expect("a new leader");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = caller.finish().await;

    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    assert!(
        outcomes
            .iter()
            .any(|(_, o)| o.as_ref().is_ok_and(|r| r.instance_id == new))
    );
    assert_eq!(
        client.inner().active_instance().map(|i| i.to_string()),
        Some(new.clone()),
        "exclusive calls are pinned to the new leader"
    );
    let gaps = recorded(aegis_runtime::metrics::FAILOVER_SECONDS, "order-processor");
    let longest = gaps.iter().copied().fold(0.0, f64::max);
    println!(
        "failover gap recorded: {longest:.3} s ({} calls retried)",
        gaps.len()
    );
    assert!(
        (0.5..=5.0).contains(&longest),
        "the failover latency metric records the gap: {gaps:?} (before: {failovers_before})"
    );
    assert!(counter_total(aegis_runtime::metrics::RETRIES, "order-processor") > 0);
}

#[tokio::test]
async fn retry_policies_are_what_the_client_uses() {
    drop(all_recorded()); // the recorder must be there before the client's first call
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    // No instance at all: no responders, retried per the policy.
    let client = ServiceClient::new(nats, "probe")
        .expect("name")
        .with_retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(10),
            jitter: 0.0,
            ..RetryPolicy::default()
        });
    let started = Instant::now();
    let err = client
        .call::<_, String>("whoami", &serde_json::json!({}))
        .await
        .expect_err("nobody there");
    assert!(matches!(err.kind(), CallErrorKind::NoResponders), "{err:?}");
    assert_eq!(err.attempts(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "10 ms + 20 ms of backoff"
    );
    assert!(counter_total(aegis_runtime::metrics::ATTEMPTS, "probe") >= 3);
}
