//! Recovery from faults of the registry: a server outage, a deleted registry or election
//! bucket, a duplicate instance id, and callers that retry in a tight loop. Real
//! nats-server (stopped and restarted on the same port and store), real instances.

#![allow(clippy::print_stdout)] // measured times are printed

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aegis_examples::failover;
use aegis_examples::orders::{OrderProcessor, OrderProcessorClient};
use aegis_examples::process::run_to_exit;
use aegis_runtime::codec::Timestamp;
use aegis_runtime::discovery::{Discovery, WatchDiscovery};
use aegis_runtime::instance::{InstanceStatus, ServiceInstance};
use aegis_runtime::subject::ServiceName;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{CallErrorKind, RunningService, ServiceRunner, StartError, service};
use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use support::until;

const REGISTRY: &str = "service_registry";
const ELECTION: &str = "sticky_active";

/// A service that says who answers, with a method only its leader runs.
#[derive(Clone, Default)]
struct Mender;

#[service(name = "mender", version = "1.0.0")]
impl Mender {
    /// Who answers.
    #[rpc]
    async fn whoami(&self, ctx: &aegis_runtime::RpcContext) -> String {
        ctx.instance_id().to_owned()
    }

    /// Only for the leader.
    #[exclusive_rpc]
    async fn lead(&self, ctx: &aegis_runtime::RpcContext) -> String {
        ctx.instance_id().to_owned()
    }
}

fn mender() -> ServiceName {
    ServiceName::new("mender").expect("name")
}

/// A connection that retries a lost server every 50 ms (the client's default backs off
/// up to 4 s, which would measure the client library, not the runtime).
async fn connect_eagerly(server: &NatsServer) -> async_nats::Client {
    connect_eagerly_to(server.url()).await
}

async fn connect_eagerly_to(url: String) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(url)
        .await
        .expect("connect")
}

/// An order processor served by a runtime of its own on its own thread, so that it is
/// not starved by what the test's runtime does; it stops when the returned sender is
/// dropped.
fn serve_orders_elsewhere(url: String, id: &'static str) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (ready, serving) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let running = ServiceRunner::new(OrderProcessor::default())
                .nats(connect_eagerly_to(url).await)
                .instance_id(id)
                .registry_ttl(Duration::from_secs(3))
                .heartbeat_interval(Duration::from_millis(500))
                .start()
                .await
                .expect("instance starts");
            let _ = ready.send(());
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
            running.stop().await;
        });
    });
    serving.recv().expect("the instance serves");
    stop
}

async fn start_mender(
    server: &NatsServer,
    id: &str,
    heartbeat: Duration,
    ttl: Duration,
) -> RunningService {
    ServiceRunner::new(Mender)
        .nats(connect_eagerly(server).await)
        .instance_id(id)
        .heartbeat_interval(heartbeat)
        .registry_ttl(ttl)
        .leader_ttl(Duration::from_secs(1))
        .start()
        .await
        .expect("instance starts")
}

/// The ids `discovery` lists for the mender service (empty when it fails).
async fn listed(discovery: &WatchDiscovery) -> Vec<String> {
    discovery
        .instances(&mender())
        .await
        .map(|list| list.iter().map(|i| i.instance_id.to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn after_an_outage_calls_succeed_right_after_the_first_heartbeat() {
    let heartbeat = Duration::from_secs(2);
    let mut server = NatsServer::start().await.expect("nats-server");
    let instance = start_mender(&server, "mender-outage", heartbeat, Duration::from_secs(5)).await;
    let client = MenderClient::configured(connect_eagerly(&server).await, |c| {
        c.with_timeout(Duration::from_millis(500))
    });
    assert_eq!(client.whoami().await.expect("serves"), "mender-outage");

    // Down for four heartbeat intervals: every heartbeat fails, the instance says UNHEALTHY.
    server.stop().await;
    let stopped = SystemTime::now();
    let unhealthy = until(4 * heartbeat, || async {
        instance.status() == InstanceStatus::Unhealthy
    })
    .await;
    assert!(
        unhealthy,
        "three failed heartbeats make the instance UNHEALTHY"
    );
    tokio::time::sleep(4 * heartbeat - stopped.elapsed().unwrap_or_default()).await;

    server.restart().await.expect("restart");
    let restarted = Instant::now();
    let restarted_at = SystemTime::now();
    let succeeded = Arc::new(std::sync::Mutex::new(None::<SystemTime>));
    let caller = tokio::spawn({
        let succeeded = succeeded.clone();
        async move {
            loop {
                if client.whoami().await.is_ok() {
                    *succeeded.lock().expect("lock") = Some(SystemTime::now());
                    return;
                }
                // One attempt per 10 ms is enough to time the recovery to that precision.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    // The first entry the instance wrote after the restart: its server time and status.
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let store = js.get_key_value(REGISTRY).await.expect("registry survives");
    let mut watch = store
        .watch_with_history("service-instances.mender.mender-outage")
        .await
        .expect("watch");
    let first = tokio::time::timeout(4 * heartbeat, async {
        while let Some(entry) = watch.next().await {
            let entry = entry.expect("watch entry");
            let written: SystemTime = entry.created.into();
            if entry.operation == Operation::Put && written > stopped {
                return Some(entry);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("a heartbeat is written after the restart");
    let written: SystemTime = first.created.into();
    let entry = ServiceInstance::from_json(&first.value).expect("entry");
    println!(
        "first heartbeat {:?} after the restart, status {:?}",
        restarted.elapsed(),
        entry.status
    );
    assert_eq!(
        entry.status,
        InstanceStatus::Active,
        "the first write after the outage carries the true status"
    );

    tokio::time::timeout(Duration::from_secs(10), caller)
        .await
        .expect("calls succeed again")
        .expect("caller");
    let succeeded = succeeded.lock().expect("lock").expect("success time");
    // Zero when calls succeeded even before it: the entry expired during the outage, and
    // with no entry at all calls go to the shared subject, where the instance listens.
    let after = succeeded.duration_since(written).unwrap_or(Duration::ZERO);
    println!(
        "calls succeed {after:?} after the first heartbeat ({:?} after the restart)",
        succeeded
            .duration_since(restarted_at)
            .unwrap_or(Duration::ZERO)
    );
    assert!(
        after < Duration::from_secs(1),
        "calls succeed {after:?} after the first heartbeat"
    );
    let healthy = until(2 * heartbeat, || async {
        instance.status() == InstanceStatus::Active
    })
    .await;
    assert!(healthy, "the instance reports itself ACTIVE again");
    instance.stop().await;
}

/// Whether `bucket` exists with the settings the runtime creates it with: one value per
/// key, per-message TTLs, markers for expired and deleted keys.
async fn assert_ttl_bucket(js: &async_nats::jetstream::Context, bucket: &str) {
    let mut stream = js
        .get_stream(format!("KV_{bucket}"))
        .await
        .unwrap_or_else(|err| panic!("{bucket} exists again: {err}"));
    let config = stream.info().await.expect("stream info").config.clone();
    assert_eq!(config.max_messages_per_subject, 1, "{bucket}: history 1");
    assert!(config.allow_message_ttl, "{bucket}: per-message TTL");
    assert!(
        config.subject_delete_marker_ttl.is_some(),
        "{bucket}: limit markers"
    );
}

#[tokio::test]
async fn deleted_registry_and_election_buckets_are_recreated_and_watched_again() {
    let heartbeat = Duration::from_secs(1);
    let ttl = Duration::from_secs(3);
    let server = NatsServer::start().await.expect("nats-server");
    let a = start_mender(&server, "mender-a", heartbeat, ttl).await;
    let b = start_mender(&server, "mender-b", heartbeat, ttl).await;
    let nats = server.connect().await.expect("connect");
    let js = async_nats::jetstream::new(nats.clone());
    let discovery = WatchDiscovery::new(nats.clone());
    let both = ["mender-a", "mender-b"];
    let watching = until(Duration::from_secs(10), || async {
        discovery.is_watching(&mender()) && listed(&discovery).await == both
    })
    .await;
    assert!(watching, "the watch lists both instances");
    let client = MenderClient::configured(nats.clone(), |c| c.with_timeout(Duration::from_secs(2)));
    client.lead().await.expect("a leader serves");

    // Note when the watch stops saying it is live: it must not vouch for the entries of a
    // bucket that is gone.
    let not_live_after = tokio::spawn({
        let discovery = discovery.clone();
        async move {
            let since = Instant::now();
            while discovery.is_watching(&mender()) && since.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            since.elapsed()
        }
    });
    let deleted = Instant::now();
    let deleted_at = Timestamp::now();
    js.delete_key_value(REGISTRY)
        .await
        .expect("delete the registry");
    js.delete_key_value(ELECTION)
        .await
        .expect("delete the election bucket");

    // The instances write their entries again (into a bucket they re-create), and the
    // watch shows the new entries.
    let seen_again = until(Duration::from_secs(20), || async {
        discovery.is_watching(&mender())
            && discovery.instances(&mender()).await.is_ok_and(|list| {
                list.len() == 2
                    && list
                        .iter()
                        .all(|i| i.last_heartbeat.as_datetime() > deleted_at.as_datetime())
            })
    })
    .await;
    let after = deleted.elapsed();
    let not_live_after = not_live_after.await.expect("monitor");
    println!(
        "watch not live {not_live_after:?} after the deletion; instances seen again after {after:?}"
    );
    assert!(seen_again, "the instances are never watched again");
    assert!(
        not_live_after < Duration::from_secs(1),
        "the watch of a deleted bucket says it is live for {not_live_after:?}"
    );
    assert!(
        after <= 2 * heartbeat,
        "the instances are seen again {after:?} after the deletion (heartbeat {heartbeat:?})"
    );
    assert_ttl_bucket(&js, REGISTRY).await;

    // The election bucket comes back too, with a leader key written into it. Exclusive
    // calls alone prove nothing here: the old leader may serve on its lease until its next
    // renewal finds the bucket gone.
    let key = aegis_runtime::subject::leader_key(&mender(), &Default::default());
    let led = until(Duration::from_secs(20), || async {
        let Ok(store) = js.get_key_value(ELECTION).await else {
            return false;
        };
        let written = store.entry(&key).await.ok().flatten();
        written.is_some_and(|entry| entry.operation == Operation::Put)
            && client.lead().await.is_ok()
    })
    .await;
    println!(
        "election bucket re-created with a leader key, exclusive calls served, {:?} after the deletion",
        deleted.elapsed()
    );
    assert!(led, "no leader after the election bucket was deleted");
    assert_ttl_bucket(&js, ELECTION).await;
    assert_eq!(listed(&discovery).await, both);
    a.stop().await;
    b.stop().await;
}

/// The registry value under the key of `id`, an order processor (`None` when absent).
async fn order_entry(js: &async_nats::jetstream::Context, id: &str) -> Option<ServiceInstance> {
    let store = js.get_key_value(REGISTRY).await.ok()?;
    let value = store
        .get(format!("service-instances.order-processor.{id}"))
        .await
        .ok()??;
    ServiceInstance::from_json(&value).ok()
}

fn start_time(entry: &ServiceInstance) -> String {
    entry.metadata["start_time"].to_string()
}

#[tokio::test]
async fn an_instance_id_in_use_is_refused_and_the_id_of_a_dead_instance_taken_over() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let id = "orders-dup";
    let mut first = failover::spawn_instance(&url, id, Duration::from_secs(1), None);
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let firsts = order_entry(&js, id).await.expect("the first registered");

    // A second process with the same id does not start, and says why.
    let refused = run_to_exit(
        "order_service",
        &[
            "--nats",
            &url,
            "--instance",
            id,
            "--registry-ttl",
            "3",
            "--heartbeat-ms",
            "500",
        ],
        Duration::from_secs(20),
    );
    assert!(
        !refused.success,
        "a second process with the id of a live one starts"
    );
    assert!(
        refused.stderr.contains("DuplicateInstance") && refused.stderr.contains(id),
        "{}",
        refused.stderr
    );
    let start_second = || async {
        ServiceRunner::new(OrderProcessor::default())
            .nats(server.connect().await.expect("connect"))
            .instance_id(id)
            .registry_ttl(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(500))
            .start()
            .await
    };
    let err = start_second().await.expect_err("the id is in use");
    println!("{err}");
    assert!(
        matches!(err, StartError::DuplicateInstance { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(id) && message.contains(".instance_id("),
        "the message names the id and how to pick another: {message}"
    );
    let entry = order_entry(&js, id).await.expect("entry");
    assert_eq!(
        start_time(&entry),
        start_time(&firsts),
        "the entry is the first's"
    );

    // Frozen, the first no longer answers: its id is taken over although its heartbeat is
    // fresh. Once it runs again it neither overwrites nor, stopping, deletes the entry of
    // the instance that took its id over.
    first.signal(Signal::SIGSTOP);
    let taking = Instant::now();
    let second = start_second()
        .await
        .expect("the id of a silent instance is taken over");
    println!("took the id over in {:?}", taking.elapsed());
    let seconds = order_entry(&js, id).await.expect("entry");
    assert_ne!(start_time(&seconds), start_time(&firsts));
    first.signal(Signal::SIGCONT);
    tokio::time::sleep(Duration::from_secs(1)).await; // two heartbeats of the first
    first.signal(Signal::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(15)), "the first stops");
    let entry = order_entry(&js, id)
        .await
        .expect("the entry of the second is still there");
    assert_eq!(
        start_time(&entry),
        start_time(&seconds),
        "the entry is the second's"
    );
    second.stop().await;
    assert!(
        order_entry(&js, id).await.is_none(),
        "its own stop deletes it"
    );

    // A crashed instance's id is taken over at once, its entry still fresh.
    let mut crashed = failover::spawn_instance(&url, id, Duration::from_secs(1), None);
    crashed.kill();
    let third = start_second()
        .await
        .expect("the id of a crashed instance is taken over");
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_retrying_unavailable_in_a_tight_loop_do_not_starve_the_recovery() {
    let mut server = NatsServer::start().await.expect("nats-server");
    // Only the callers share this runtime.
    let instance = serve_orders_elsewhere(server.url(), "orders-busy");
    let client = OrderProcessorClient::configured(connect_eagerly(&server).await, |c| {
        c.with_timeout(Duration::from_millis(500))
    });
    client.health_check().await.expect("serves");

    // With the server gone, the entry's heartbeat ages past its TTL (3 s): calls fail
    // "Unavailable" at once, without any I/O.
    server.stop().await;
    let unavailable = until(Duration::from_secs(15), || async {
        client
            .health_check()
            .await
            .is_err_and(|err| matches!(err.kind(), CallErrorKind::Unavailable(_)))
    })
    .await;
    assert!(unavailable, "calls never fail Unavailable");

    // Four callers that retry at once, never awaiting anything else. A thread (not a task:
    // tasks could be starved) tells them to give up after a while.
    let give_up = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            let give_up = give_up.clone();
            tokio::spawn(async move {
                let mut failed = 0u64;
                while !give_up.load(Ordering::Relaxed) {
                    if client.health_check().await.is_ok() {
                        return Some((Instant::now(), failed));
                    }
                    failed += 1;
                }
                None
            })
        })
        .collect();
    let watchdog = {
        let give_up = give_up.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            give_up.store(true, Ordering::Relaxed);
        })
    };
    // Restarted from a thread of its own, so that waiting for it to be ready does not
    // depend on this runtime.
    let (server, back) = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(server.restart()).expect("restart");
        (server, Instant::now())
    })
    .await
    .expect("restarted");
    let mut recovered = Vec::new();
    for caller in callers {
        let outcome = caller.await.expect("caller");
        recovered.push(outcome);
    }
    give_up.store(true, Ordering::Relaxed);
    let _ = watchdog; // it ends by itself; the test does not wait for it
    drop(instance);
    drop(server);
    println!(
        "callers recovered after {:?} (failed calls before: {:?})",
        recovered
            .iter()
            .map(|r| r.map(|(at, _)| at.saturating_duration_since(back)))
            .collect::<Vec<_>>(),
        recovered
            .iter()
            .map(|r| r.map(|(_, failed)| failed))
            .collect::<Vec<_>>()
    );
    for outcome in recovered {
        let (at, _) = outcome.expect("a caller never recovered: starved");
        let after = at.saturating_duration_since(back);
        assert!(
            after < Duration::from_secs(2),
            "a caller recovered {after:?} after the server came back"
        );
    }
}
