//! Single active: exactly one instance of a group runs exclusive methods, and when it goes
//! (SIGTERM, SIGKILL, SIGSTOP) another takes over, never two at once. Real processes, a
//! real nats-server.

#![allow(clippy::print_stdout)] // the measured failover times are printed, as the issue asks

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aegis_examples::orders::{OrderProcessor, OrderProcessorClient, OrderRequest, OrderResult};
use aegis_runtime::instance::StickyActiveStatus;
use aegis_runtime::runner::StatusReport;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{RetryPolicy, ServiceClient, ServiceRunner};
use nix::sys::signal::Signal;
use serde_json::json;
use support::ChildProcess;

const LEADER_TTL: Duration = Duration::from_secs(2);

fn spawn(url: &str, id: &str, ledger: Option<&std::path::Path>) -> ChildProcess {
    let mut args = vec![
        "--nats",
        url,
        "--instance",
        id,
        "--leader-ttl",
        "2",
        "--registry-ttl",
        "3",
        "--heartbeat-ms",
        "500",
    ];
    let ledger = ledger.map(|p| p.display().to_string());
    if let Some(ledger) = &ledger {
        args.extend(["--ledger", ledger.as_str()]);
    }
    let (child, ready) = ChildProcess::start("order_service", &args);
    assert_eq!(ready, format!("ready {id}"));
    child
}

/// The role of each instance, asked through its own subject.
async fn roles(
    nats: &async_nats::Client,
    ids: &[String],
) -> BTreeMap<String, Option<StickyActiveStatus>> {
    let mut roles = BTreeMap::new();
    for id in ids {
        let request = aegis_runtime::codec::RpcRequest::new("aegis_status", json!({}));
        let payload = aegis_runtime::codec::encode(&request).expect("encode");
        let subject = format!("rpc.order-processor.{id}.aegis_status");
        let role = match tokio::time::timeout(
            Duration::from_millis(500),
            nats.request(subject, payload.into()),
        )
        .await
        {
            Ok(Ok(reply)) => aegis_runtime::codec::decode::<
                aegis_runtime::codec::RpcResponse<StatusReport>,
            >(&reply.payload)
            .ok()
            .and_then(|r| r.result)
            .and_then(|report| report.role),
            _ => None,
        };
        roles.insert(id.clone(), role);
    }
    roles
}

/// Waits until exactly one of `ids` is ACTIVE; returns it.
async fn leader(nats: &async_nats::Client, ids: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let roles = roles(nats, ids).await;
        let active: Vec<_> = roles
            .iter()
            .filter(|(_, r)| **r == Some(StickyActiveStatus::Active))
            .collect();
        assert!(active.len() <= 1, "two leaders at once: {roles:?}");
        if let [(id, _)] = active.as_slice() {
            return (*id).clone();
        }
        assert!(Instant::now() < deadline, "no leader: {roles:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that retries calls that did not run for up to ~10 s: long enough to ride out
/// a crash failover (about one leader TTL).
fn patient_client(nats: async_nats::Client) -> OrderProcessorClient {
    patient_client_with(nats, false, Duration::from_secs(2))
}

/// As [`patient_client`]; with `idempotent`, calls that timed out are retried too: a call
/// in flight to a leader that is killed (SIGKILL) gets no reply, and may have run, so only
/// an idempotent method may be sent again.
fn patient_client_with(
    nats: async_nats::Client,
    idempotent: bool,
    timeout: Duration,
) -> OrderProcessorClient {
    let retry = RetryPolicy {
        max_attempts: 200,
        initial_delay: Duration::from_millis(10),
        multiplier: 1.5,
        max_delay: Duration::from_millis(50),
        retry_timeouts: idempotent,
    };
    let client = ServiceClient::new(nats, "order-processor")
        .expect("client")
        .with_retry_policy(retry);
    OrderProcessorClient::from_client(client.with_timeout(timeout))
}

/// Calls `process_order` in a loop until stopped; returns every outcome with its time.
struct Caller {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Result<OrderResult, String>)>>,
}

impl Caller {
    fn start(client: OrderProcessorClient) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let order = OrderRequest {
                    order_id: format!("ORD-{n}"),
                    amount: 1.0,
                };
                let outcome = client.process_order(order).await.map_err(|e| e.to_string());
                outcomes.push((Instant::now(), outcome));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, Result<OrderResult, String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("caller task")
    }
}

#[tokio::test]
async fn three_instances_elect_one_leader_and_only_it_serves() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let ids: Vec<String> = (1..=3).map(|i| format!("orders-{i}")).collect();
    let _children: Vec<_> = ids.iter().map(|id| spawn(&url, id, None)).collect();
    let nats = server.connect().await.expect("connect");
    let leader = leader(&nats, &ids).await;

    let client = OrderProcessorClient::new(nats.clone());
    for n in 0..100 {
        let order = OrderRequest {
            order_id: format!("ORD-{n}"),
            amount: 1.0,
        };
        let result = client
            .process_order(order)
            .await
            .expect("steady state: every call succeeds");
        assert_eq!(
            result.instance_id, leader,
            "only the leader serves exclusive calls"
        );
    }
    let roles = roles(&nats, &ids).await;
    assert_eq!(
        roles
            .values()
            .filter(|r| **r == Some(StickyActiveStatus::Standby))
            .count(),
        2,
        "{roles:?}"
    );
}

#[tokio::test]
async fn failover_after_sigterm_and_sigkill_loses_no_call() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let nats = server.connect().await.expect("connect");
    let mut next_id = 0;
    let mut instances: BTreeMap<String, ChildProcess> = BTreeMap::new();
    let mut spawn_next = |instances: &mut BTreeMap<String, ChildProcess>| {
        next_id += 1;
        let id = format!("orders-{next_id}");
        instances.insert(id.clone(), spawn(&url, &id, None));
    };
    for _ in 0..3 {
        spawn_next(&mut instances);
    }

    let mut timings: Vec<(&str, Duration, u64, u64)> = Vec::new();
    for (round, signal) in [Signal::SIGTERM; 5]
        .into_iter()
        .chain([Signal::SIGKILL; 5])
        .enumerate()
    {
        let ids: Vec<String> = instances.keys().cloned().collect();
        let old = leader(&nats, &ids).await;
        // A graceful stop must lose nothing: no timeout may be retried. A crash can take a
        // call in flight with it, so there the method is treated as idempotent.
        let crash = signal == Signal::SIGKILL;
        let timeout = if crash {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        let caller = Caller::start(patient_client_with(nats.clone(), crash, timeout));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let signalled = Instant::now();
        let mut victim = instances.remove(&old).expect("leader process");
        if signal == Signal::SIGKILL {
            victim.kill();
        } else {
            victim.signal(Signal::SIGTERM);
        }
        // Serve until a call is answered by another instance, and a little longer.
        let deadline = Instant::now() + Duration::from_secs(15);
        let new = loop {
            let ids: Vec<String> = instances.keys().cloned().collect();
            let roles = roles(&nats, &ids).await;
            if let Some((id, _)) = roles
                .iter()
                .find(|(_, r)| **r == Some(StickyActiveStatus::Active))
            {
                break id.clone();
            }
            assert!(Instant::now() < deadline, "round {round}: no new leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let outcomes = caller.finish().await;

        let failed: Vec<_> = outcomes
            .iter()
            .filter_map(|(at, o)| {
                let sent =
                    at.saturating_duration_since(signalled).as_secs_f64() - timeout.as_secs_f64();
                o.as_ref()
                    .err()
                    .map(|e| format!("sent {sent:+.3} s after the signal: {e}"))
            })
            .collect();
        assert!(
            failed.is_empty(),
            "round {round} ({signal:?}): {} calls failed: {failed:?}",
            failed.len()
        );
        let first_new = outcomes
            .iter()
            .find_map(|(at, o)| {
                o.as_ref()
                    .ok()
                    .filter(|r| r.instance_id == new)
                    .map(|r| (*at, r.term))
            })
            .expect("the new leader served");
        let old_term = outcomes
            .iter()
            .filter_map(|(_, o)| {
                o.as_ref()
                    .ok()
                    .filter(|r| r.instance_id == old)
                    .map(|r| r.term)
            })
            .max()
            .unwrap_or_default();
        assert!(
            first_new.1 > old_term,
            "terms increase across leaders: {old_term} then {}",
            first_new.1
        );
        let gap = first_new.0.saturating_duration_since(signalled);
        timings.push((
            if signal == Signal::SIGKILL {
                "SIGKILL"
            } else {
                "SIGTERM"
            },
            gap,
            old_term,
            first_new.1,
        ));
        drop(victim);
        spawn_next(&mut instances);
    }

    println!("failover (leader_ttl {LEADER_TTL:?}): signal → first call served by the new leader");
    for (signal, gap, old_term, new_term) in &timings {
        println!(
            "  {signal:7} {:>8.1} ms   term {old_term} → {new_term}",
            gap.as_secs_f64() * 1000.0
        );
    }
    for (signal, gap, ..) in timings {
        let bound = if signal == "SIGTERM" {
            Duration::from_secs(1)
        } else {
            LEADER_TTL + Duration::from_secs(2)
        };
        assert!(
            gap <= bound,
            "{signal} failover took {gap:?} (generous bound {bound:?})"
        );
    }
}

#[tokio::test]
async fn a_paused_leader_runs_nothing_after_it_resumes() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = dir.path().join("ledger.txt");
    let ids: Vec<String> = (1..=3).map(|i| format!("orders-{i}")).collect();
    let children: Vec<_> = ids
        .iter()
        .map(|id| spawn(&url, id, Some(&ledger)))
        .collect();
    let nats = server.connect().await.expect("connect");
    let old = leader(&nats, &ids).await;
    let caller = Caller::start(patient_client(nats.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let paused = &children[ids.iter().position(|id| *id == old).expect("leader")];
    paused.signal(Signal::SIGSTOP);
    tokio::time::sleep(LEADER_TTL * 3).await;
    let others: Vec<String> = ids.iter().filter(|id| **id != old).cloned().collect();
    let new = leader(&nats, &others).await;
    paused.signal(Signal::SIGCONT);
    tokio::time::sleep(LEADER_TTL * 2).await;
    caller.finish().await;

    // Every execution wrote (term, instance): terms never decrease, and each term belongs
    // to one instance, so nothing ran on the old leader once the new one had started.
    let text = std::fs::read_to_string(&ledger).expect("ledger");
    let mut owner: BTreeMap<u64, String> = BTreeMap::new();
    let mut highest = 0;
    for line in text.lines() {
        let mut fields = line.split(' ');
        let term: u64 = fields.next().and_then(|t| t.parse().ok()).expect("term");
        let instance = fields.next().expect("instance").to_owned();
        assert!(
            term >= highest,
            "term {term} ran after term {highest}: {line}"
        );
        highest = term;
        let first = owner.entry(term).or_insert_with(|| instance.clone());
        assert_eq!(*first, instance, "term {term} ran on two instances");
    }
    assert!(
        owner.values().any(|i| *i == old) && owner.values().any(|i| *i == new),
        "{owner:?}"
    );
    assert_eq!(
        leader(&nats, &ids).await,
        new,
        "the resumed instance did not take leadership back"
    );
}

#[tokio::test]
async fn two_instances_started_together_elect_exactly_one() {
    let server = NatsServer::start().await.expect("nats-server");
    for round in 0..20 {
        let start = |id: String| {
            let server = &server;
            async move {
                ServiceRunner::new(OrderProcessor::default())
                    .nats(server.connect().await.expect("connect"))
                    .instance_id(id)
                    .start()
                    .await
                    .expect("start")
            }
        };
        let (a, b) = tokio::join!(start(format!("a-{round}")), start(format!("b-{round}")));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let active = [&a, &b]
                .iter()
                .filter(|i| i.leadership().is_active())
                .count();
            assert!(active <= 1, "round {round}: two leaders");
            if active == 1 && Instant::now() + Duration::from_millis(200) > deadline {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no leader");
            if active == 1 {
                // Stay a moment to see that it stays one.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if [&a, &b]
                    .iter()
                    .filter(|i| i.leadership().is_active())
                    .count()
                    == 1
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_leader_does_not_take_the_key_from_the_new_one() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let ids: Vec<String> = vec!["orders-a".into(), "orders-b".into()];
    let mut children: BTreeMap<String, ChildProcess> = ids
        .iter()
        .map(|id| (id.clone(), spawn(&url, id, None)))
        .collect();
    let nats = server.connect().await.expect("connect");
    let old = leader(&nats, &ids).await;
    children.get_mut(&old).expect("leader").kill();
    let others: Vec<String> = ids.iter().filter(|id| **id != old).cloned().collect();
    let new = leader(&nats, &others).await;

    children.insert(old.clone(), spawn(&url, &old, None));
    for _ in 0..(LEADER_TTL * 3).as_millis() / 100 {
        let roles = roles(&nats, &ids).await;
        assert_eq!(
            roles[&old],
            Some(StickyActiveStatus::Standby),
            "the restarted instance starts and stays standby"
        );
        assert_eq!(roles[&new], Some(StickyActiveStatus::Active));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn leader_changes_are_published_as_events() {
    use futures_util::StreamExt;
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let mut events = nats
        .subscribe("events.sticky_active.>")
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    let instance = ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id("orders-events")
        .start()
        .await
        .expect("start");

    let mut next = async || {
        let message = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event")
            .expect("open");
        let event: aegis_runtime::codec::Event =
            aegis_runtime::codec::decode(&message.payload).expect("an event envelope");
        (message.subject.to_string(), event)
    };
    let (subject, elected) = next().await;
    assert_eq!(subject, "events.sticky_active.LeaderElected");
    assert_eq!(
        (elected.domain.as_str(), elected.event_type.as_str()),
        ("sticky_active", "LeaderElected")
    );
    assert_eq!(elected.payload["service_name"], "order-processor");
    assert_eq!(elected.payload["instance_id"], "orders-events");
    assert_eq!(elected.payload["group_id"], "default");

    instance.stop().await;
    let (subject, lost) = next().await;
    assert_eq!(subject, "events.sticky_active.LeaderLost");
    assert_eq!(lost.payload["reason"], "released");
}
