//! Clean handover on a graceful stop, as a client of the group's *shared* exclusive subject
//! sees it: the Python SDK calls `rpc.{service}.{method}` with a plain request and takes a
//! NOT_ACTIVE reply for a result, so no NOT_ACTIVE may reach that subject while the leader
//! hands over. Real processes, a real nats-server.

#![allow(clippy::print_stdout)] // the counted replies are printed

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_examples::failover::Group;
use aegis_examples::orders::{OrderRequest, OrderResult};
use aegis_runtime::codec::{self, ExclusiveReply, RpcRequest, RpcResponse};
use aegis_runtime::testing::NatsServer;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use support::until;

const LEADER_TTL: Duration = Duration::from_secs(2);
/// The shared subject of the exclusive method, as the Python SDK addresses it.
const SHARED_SUBJECT: &str = "rpc.order-processor.process_order";
/// How long one raw request waits for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the raw caller got back, by kind.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// Served: the instance that ran each call, in order.
    served: Vec<String>,
    /// NOT_ACTIVE replies: the call did not run, and a Python client would not know.
    not_active: usize,
    /// No subscriber on the shared subject (the gap between leaders): the caller knows.
    no_responders: usize,
    /// No reply within [`REQUEST_TIMEOUT`]: a request was lost.
    timed_out: usize,
    /// Anything else (an error reply, an undecodable one), with what it was.
    other: Vec<String>,
}

/// Calls the shared subject in a loop with plain NATS requests, as the Python SDK does.
struct RawCaller {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawCaller {
    fn start(nats: async_nats::Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (flag, shared) = (stop.clone(), tally.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                record(&shared, ask(&nats, &format!("ORD-RAW-{n}")).await);
                // Continuous, but leaving the two cores to the instances.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self { stop, tally, task }
    }

    fn tally(&self) -> Tally {
        self.tally.lock().expect("tally").clone()
    }

    /// Whether `id` served a call after the first `after` calls served.
    fn served_by_since(&self, id: &str, after: usize) -> bool {
        self.tally().served.iter().skip(after).any(|by| by == id)
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the caller ends");
        self.tally.lock().expect("tally").clone()
    }
}

/// One call of the shared subject, as the Python SDK makes it.
async fn ask(
    nats: &async_nats::Client,
    order_id: &str,
) -> Result<Result<async_nats::Message, async_nats::RequestError>, tokio::time::error::Elapsed> {
    let order = OrderRequest {
        order_id: order_id.to_owned(),
        amount: 1.0,
    };
    let payload = codec::encode(&RpcRequest::new("process_order", order)).expect("encode");
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        nats.request(SHARED_SUBJECT, payload.into()),
    )
    .await
}

/// Counts one reply (or its absence) by kind.
fn record(
    tally: &Mutex<Tally>,
    asked: Result<
        Result<async_nats::Message, async_nats::RequestError>,
        tokio::time::error::Elapsed,
    >,
) {
    let mut tally = tally.lock().expect("tally");
    match asked {
        Err(_) => tally.timed_out += 1,
        Ok(Err(err)) if err.kind() == async_nats::client::RequestErrorKind::NoResponders => {
            tally.no_responders += 1;
        }
        Ok(Err(err)) => tally.other.push(format!("request failed: {err}")),
        Ok(Ok(reply)) => {
            match codec::decode::<RpcResponse<ExclusiveReply<OrderResult>>>(&reply.payload) {
                Ok(RpcResponse {
                    result: Some(exclusive),
                    ..
                }) if exclusive.is_not_active() => tally.not_active += 1,
                Ok(RpcResponse {
                    result:
                        Some(ExclusiveReply {
                            result: Some(result),
                            success: true,
                            ..
                        }),
                    ..
                }) => tally.served.push(result.instance_id),
                Ok(other) => tally.other.push(format!("{other:?}")),
                Err(err) => tally.other.push(format!("undecodable reply: {err}")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_handover_sends_no_not_active_to_the_shared_subject() {
    let server = NatsServer::start().await.expect("nats-server");
    let mut group = Group::start(&server.url(), 3, LEADER_TTL)
        .await
        .expect("group");
    let caller = RawCaller::start(server.connect().await.expect("connect"));
    let handovers = 5;
    let mut gaps = Vec::new();
    for round in 1..=handovers {
        let old = group.leader().await.expect("a leader");
        let seen = caller.tally().served.len();
        assert!(
            until(Duration::from_secs(10), || async {
                caller.served_by_since(&old, seen)
            })
            .await,
            "round {round}: the leader {old} serves the shared subject: {:?}",
            caller.tally()
        );
        let mut victim = group.remove(&old).expect("the leader's process");
        let served_before = caller.tally().served.len();
        let signalled = Instant::now();
        victim.signal(Signal::SIGTERM);
        let new = group.leader().await.expect("a new leader");
        assert_ne!(new, old, "round {round}");
        assert!(
            until(Duration::from_secs(10), || async {
                caller.served_by_since(&new, served_before)
            })
            .await,
            "round {round}: the new leader {new} serves the shared subject: {:?}",
            caller.tally()
        );
        gaps.push(signalled.elapsed());
        assert!(
            tokio::task::block_in_place(|| victim.wait_exit(Duration::from_secs(10))),
            "round {round}: {old} exits after SIGTERM"
        );
        group.add(None);
    }
    let tally = caller.finish().await;
    println!(
        "{handovers} graceful handovers on {SHARED_SUBJECT}: {} calls served, {} NOT_ACTIVE, {} no responders, {} timed out, {} other; signal → new leader serving: {gaps:?}",
        tally.served.len(),
        tally.not_active,
        tally.no_responders,
        tally.timed_out,
        tally.other.len()
    );
    assert_eq!(
        tally.not_active, 0,
        "a stopping leader forwards what still reaches it to the successor: no NOT_ACTIVE reply reaches a plain caller"
    );
    assert_eq!(
        tally.timed_out, 0,
        "a stopping leader answers every call already delivered to it"
    );
    assert!(tally.other.is_empty(), "{:?}", tally.other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_serves_the_shared_subject_once_it_announces_itself() {
    let server = NatsServer::start().await.expect("nats-server");
    let mut group = Group::start(&server.url(), 3, LEADER_TTL)
        .await
        .expect("group");
    let nats = server.connect().await.expect("connect");
    let mut elected = nats
        .subscribe("events.sticky_active.LeaderElected")
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    for round in 1..=5 {
        let old = group.leader().await.expect("a leader");
        let mut victim = group.remove(&old).expect("the leader's process");
        victim.signal(Signal::SIGTERM);
        let event = tokio::time::timeout(Duration::from_secs(10), elected.next())
            .await
            .expect("a LeaderElected event within 10 s")
            .expect("the subscription lives");
        // At once, as a client that reacts to the announcement would.
        let tally = Mutex::new(Tally::default());
        record(&tally, ask(&nats, &format!("ORD-ELECTED-{round}")).await);
        let tally = tally.into_inner().expect("tally");
        assert_eq!(
            tally.served.len(),
            1,
            "round {round}: the leader announced by {} serves the shared subject at once: {tally:?}",
            String::from_utf8_lossy(&event.payload)
        );
        assert!(
            tokio::task::block_in_place(|| victim.wait_exit(Duration::from_secs(10))),
            "round {round}: {old} exits after SIGTERM"
        );
        group.add(None);
    }
}
