//! Leader-following clients against real instance processes: exclusive calls go straight
//! to the leader (no NOT_ACTIVE, no retry in steady state), a frozen leader is left as
//! soon as the election moves, and a crashed plain instance gets no call after its first
//! failed attempt.

#![allow(clippy::print_stdout)] // measured times are printed

mod support;

use std::time::{Duration, Instant};

use aegis_examples::failover;
use aegis_examples::orders::{OrderProcessorClient, OrderRequest};
use aegis_examples::process::ChildProcess;
use aegis_runtime::metrics;
use aegis_runtime::testing::NatsServer;
use futures_util::{FutureExt, StreamExt};
use nix::sys::signal::Signal;

const LEADER_TTL: Duration = Duration::from_secs(2);

/// The total of the counter `name` for `method`.
fn counter(name: &str, method: &str) -> u64 {
    support::counter_total(name, &[("method", method)])
}

fn order(n: usize) -> OrderRequest {
    OrderRequest {
        order_id: format!("ORD-{n}"),
        amount: 1.0,
    }
}

async fn three_instances(server: &NatsServer) -> (Vec<String>, Vec<ChildProcess>) {
    let url = server.url();
    let ids: Vec<String> = (1..=3).map(|i| format!("orders-{i}")).collect();
    let children = ids
        .iter()
        .map(|id| failover::spawn_instance(&url, id, LEADER_TTL, None))
        .collect();
    (ids, children)
}

#[tokio::test]
async fn in_steady_state_exclusive_calls_reach_the_leader_first_time() {
    let _counts = support::counting_alone().await;
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let (ids, _children) = three_instances(&server).await;
    let nats = server.connect().await.expect("connect");
    let leader = failover::wait_for_leader(&nats, &ids, Duration::from_secs(15))
        .await
        .expect("a leader");
    let client = OrderProcessorClient::new(nats.clone());
    // The client's view of the leader is in place before counting starts.
    let known = client.inner().leader().await.expect("watchable");
    assert_eq!(
        known.map(|l| l.instance_id.to_string()),
        Some(leader.clone())
    );

    let (not_active, retries) = (
        counter(metrics::NOT_ACTIVE, "process_order"),
        counter(metrics::RETRIES, "process_order"),
    );
    for n in 0..1000 {
        let result = client.process_order(order(n)).await.expect("served");
        assert_eq!(result.instance_id, leader, "only the leader serves");
    }
    assert_eq!(
        counter(metrics::NOT_ACTIVE, "process_order") - not_active,
        0,
        "NOT_ACTIVE replies in steady state"
    );
    assert_eq!(
        counter(metrics::RETRIES, "process_order") - retries,
        0,
        "retries in steady state"
    );
}

#[tokio::test]
async fn a_crashed_plain_instance_gets_no_call_after_its_first_failed_attempt() {
    let _counts = support::counting_alone().await;
    support::metrics_recorder();
    let server = NatsServer::start().await.expect("nats-server");
    let (ids, mut children) = three_instances(&server).await;
    let nats = server.connect().await.expect("connect");
    failover::wait_for_leader(&nats, &ids, Duration::from_secs(15))
        .await
        .expect("all serving");
    let client = OrderProcessorClient::new(nats.clone());
    // Round robin over the three.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(client.whoami().await.expect("served"));
    }
    assert_eq!(
        seen.len(),
        3,
        "round robin reaches every instance: {seen:?}"
    );

    let victim = ids[1].clone();
    children[1].kill();
    // Once the server has seen the connection go, a request to the victim's own subject
    // gets "no responders" (before that it would be lost in a closed socket).
    let probe = format!("rpc.order-processor.{victim}.whoami");
    let gone = support::until(Duration::from_secs(10), || {
        let (nats, probe) = (nats.clone(), probe.clone());
        async move {
            matches!(
                nats.request(probe, "".into()).await,
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders
            )
        }
    })
    .await;
    assert!(gone, "the server noticed the crash");

    let retries = counter(metrics::RETRIES, "whoami");
    let ejections = support::counter_total(metrics::EJECTIONS, &[]);
    // The registry still lists the victim (its entry lives until its TTL): only the
    // client's ejection keeps calls away from it.
    let started = Instant::now();
    for _ in 0..60 {
        let served = client.whoami().await.expect("served elsewhere");
        assert_ne!(served, victim);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the victim's registry TTL (3 s): {:?}",
        started.elapsed()
    );
    assert_eq!(
        counter(metrics::RETRIES, "whoami") - retries,
        1,
        "one attempt went to the crashed instance (no responders, retried elsewhere), then none"
    );
    let ejected_now = support::counter_total(metrics::EJECTIONS, &[]);
    assert_eq!(ejected_now - ejections, 1, "counted as an ejection");
}

#[tokio::test]
async fn a_frozen_leader_is_left_once_the_election_moves() {
    let _counts = support::calling_alongside().await;
    let server = NatsServer::start().await.expect("nats-server");
    let (ids, children) = three_instances(&server).await;
    let nats = server.connect().await.expect("connect");
    let old = failover::wait_for_leader(&nats, &ids, Duration::from_secs(15))
        .await
        .expect("a leader");
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    client.process_order(order(0)).await.expect("served");
    // Sees every request sent to the frozen instance's own subjects.
    let mut observed = nats
        .subscribe(format!("rpc.order-processor.{old}.>"))
        .await
        .expect("observer");
    nats.flush().await.expect("flush");

    let frozen = &children[ids.iter().position(|id| *id == old).expect("leader")];
    frozen.signal(Signal::SIGSTOP);
    let froze = Instant::now();
    // The call in flight at the freeze waits out its attempt timeout (the method is
    // idempotent), then for the election to move; calls succeed on the new leader.
    let mut n = 1;
    let first = loop {
        n += 1;
        if let Ok(result) = client.process_order(order(n)).await {
            break result;
        }
        assert!(
            froze.elapsed() < Duration::from_secs(15),
            "no call succeeded"
        );
    };
    assert_ne!(first.instance_id, old, "served by the new leader");
    println!("frozen leader: first success after {:?}", froze.elapsed());
    assert!(
        froze.elapsed() < LEADER_TTL + Duration::from_secs(3),
        "failover after a freeze took {:?}",
        froze.elapsed()
    );
    assert_eq!(
        client.inner().active_instance().map(|i| i.to_string()),
        Some(first.instance_id.clone()),
        "the client's view has moved"
    );

    // From now on nothing goes to the frozen process.
    let count = |observed: &mut async_nats::Subscriber| {
        let mut count = 0;
        while let Some(Some(_)) = observed.next().now_or_never() {
            count += 1;
        }
        count
    };
    client.inner().nats().flush().await.expect("flush");
    nats.flush().await.expect("flush");
    let before = count(&mut observed);
    for _ in 0..50 {
        n += 1;
        let result = client.process_order(order(n)).await.expect("served");
        assert_eq!(result.instance_id, first.instance_id);
    }
    client.inner().nats().flush().await.expect("flush");
    nats.flush().await.expect("flush");
    assert_eq!(
        count(&mut observed),
        0,
        "calls sent to the frozen leader after the change ({before} before)"
    );
    frozen.signal(Signal::SIGCONT);
}
