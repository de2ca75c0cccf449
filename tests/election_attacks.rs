//! The election against a hostile or broken writer of the leader key (an operator's tool,
//! a buggy script, a client with too many rights): deleting or purging the key, writing a
//! value that names another instance, writing a forged value without a TTL. Real
//! nats-server, real instances (two in-process runners), a client calling continuously,
//! and a ledger of every exclusive call's (term, instance, start time).

#![allow(clippy::print_stdout)] // the measured reaction times are printed

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_runtime::testing::NatsServer;
use aegis_runtime::{RpcContext, RunningService, ServiceRunner, service};
use async_nats::jetstream::{self, kv};
use support::until;

const KEY: &str = "sticky-active.ledgered.default.leader";
/// How late after the attack the old leader may still start an exclusive call.
const AT_ONCE: Duration = Duration::from_millis(10);

/// One exclusive call, as its handler saw it when it started.
#[derive(Debug, Clone)]
struct Start {
    term: u64,
    instance: String,
    at: Instant,
}

/// A service whose exclusive method writes (term, instance, start time) to a ledger
/// shared by every instance of this test.
#[derive(Clone, Default)]
struct Ledgered {
    ledger: Arc<Mutex<Vec<Start>>>,
}

#[service(name = "ledgered", version = "1.0.0")]
impl Ledgered {
    /// Records its start; runs only on the leader.
    #[exclusive_rpc]
    async fn work(&self, ctx: &RpcContext) -> u64 {
        let start = Start {
            term: ctx.term().unwrap_or_default(),
            instance: ctx.instance_id().to_owned(),
            at: Instant::now(),
        };
        let term = start.term;
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.push(start);
        }
        term
    }
}

impl Ledgered {
    fn starts(&self) -> Vec<Start> {
        self.ledger.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Two instances of the ledgered service and a client calling its exclusive method from
/// four tasks, without pause, until dropped.
struct Group {
    service: Ledgered,
    instances: Vec<RunningService>,
    calling: Arc<AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<()>>,
    store: kv::Store,
}

impl Group {
    async fn start(server: &NatsServer, leader_ttl: Duration) -> Self {
        Self::start_staggered(server, leader_ttl, 2, Duration::ZERO).await
    }

    /// A group whose leader serves calls: the group, the leader and its term.
    async fn serving(server: &NatsServer, leader_ttl: Duration) -> (Self, String, u64) {
        let group = Self::start(server, leader_ttl).await;
        let (leader, term) = group
            .leader(0, Duration::from_secs(10))
            .await
            .expect("a leader serves");
        assert!(
            group
                .calls_after(Instant::now(), 50, Duration::from_secs(10))
                .await,
            "calls flow"
        );
        (group, leader, term)
    }

    /// `count` instances, each started `stagger` after the previous one (so that the
    /// standbys' periodic looks at the key are spread over time).
    async fn start_staggered(
        server: &NatsServer,
        leader_ttl: Duration,
        count: usize,
        stagger: Duration,
    ) -> Self {
        let service = Ledgered::default();
        let mut instances = Vec::new();
        for n in 1..=count {
            let id = format!("ledgered-{n}");
            if n > 1 {
                tokio::time::sleep(stagger).await;
            }
            instances.push(
                ServiceRunner::new(service.clone())
                    .nats(server.connect().await.expect("connect"))
                    .instance_id(id)
                    .leader_ttl(leader_ttl)
                    .start()
                    .await
                    .expect("instance starts"),
            );
        }
        let nats = server.connect().await.expect("connect");
        let store = jetstream::new(nats.clone())
            .get_key_value("sticky_active")
            .await
            .expect("election bucket");
        let calling = Arc::new(AtomicBool::new(true));
        let callers = (0..4)
            .map(|_| {
                let client = LedgeredClient::configured(nats.clone(), |c| {
                    c.with_timeout(Duration::from_secs(10))
                });
                let calling = calling.clone();
                tokio::spawn(async move {
                    while calling.load(Ordering::Relaxed) {
                        let _ = client.work().await;
                    }
                })
            })
            .collect();
        Self {
            service,
            instances,
            calling,
            callers,
            store,
        }
    }

    /// The instance that is active under a term above `above`, once one is and has
    /// served a call.
    async fn leader(&self, above: u64, within: Duration) -> Option<(String, u64)> {
        let mut found = None;
        until(within, || {
            found = self.instances.iter().find_map(|i| {
                i.leadership()
                    .term()
                    .filter(|term| *term > above)
                    .map(|term| (i.instance_id().to_string(), term))
            });
            let served = found.as_ref().is_some_and(|(id, term)| {
                self.service
                    .starts()
                    .iter()
                    .any(|s| &s.instance == id && s.term == *term)
            });
            async move { served }
        })
        .await
        .then_some(found)
        .flatten()
    }

    /// Waits until `count` calls have started after `after`.
    async fn calls_after(&self, after: Instant, count: usize, within: Duration) -> bool {
        until(within, || {
            let n = self
                .service
                .starts()
                .iter()
                .filter(|s| s.at > after)
                .count();
            async move { n >= count }
        })
        .await
    }

    async fn stop(self) {
        self.calling.store(false, Ordering::Relaxed);
        for caller in self.callers {
            caller.abort();
        }
        for instance in self.instances {
            instance.stop().await;
        }
    }
}

/// Checks the ledger: the old leader (`instance`, `term`) started nothing later than
/// [`AT_ONCE`] after `attacked`; prints how late its last call was.
fn assert_old_leader_stopped(
    starts: &[Start],
    instance: &str,
    term: u64,
    attacked: Instant,
    attack: &str,
) {
    let old: Vec<&Start> = starts
        .iter()
        .filter(|s| s.instance == instance && s.term == term)
        .collect();
    let last = old.iter().map(|s| s.at).max().expect("the leader served");
    let late: Vec<Duration> = old
        .iter()
        .filter_map(|s| s.at.checked_duration_since(attacked))
        .filter(|late| *late > AT_ONCE)
        .collect();
    match last.checked_duration_since(attacked) {
        Some(after) => println!(
            "{attack}: the old leader's last exclusive call started {:.3} ms after it",
            after.as_secs_f64() * 1000.0
        ),
        None => println!(
            "{attack}: the old leader's last exclusive call started {:.3} ms before it",
            attacked.duration_since(last).as_secs_f64() * 1000.0
        ),
    }
    assert!(
        late.is_empty(),
        "{attack}: the old leader {instance} (term {term}) started {} exclusive calls more than {AT_ONCE:?} after it, the latest {:?} after",
        late.len(),
        late.iter().max()
    );
}

/// Removes the leader key as an operator's tool would, then checks the old leader stopped
/// at once and a leader serves again.
async fn remove_the_leader_key(purge: bool) {
    let attack = if purge { "KV purge" } else { "KV delete" };
    let server = NatsServer::start().await.expect("nats-server");
    let ttl = Duration::from_secs(2);
    let (group, leader, term) = Group::serving(&server, ttl).await;

    if purge {
        group.store.purge(KEY).await.expect("purge");
    } else {
        group.store.delete(KEY).await.expect("delete");
    }
    let attacked = Instant::now();

    // A leader (any, under a new term) serves again, and calls keep flowing.
    let again = group.leader(term, 2 * ttl + Duration::from_secs(1)).await;
    assert!(
        group
            .calls_after(attacked, 200, Duration::from_secs(10))
            .await
    );
    let starts = group.service.starts();
    group.stop().await;
    assert_old_leader_stopped(&starts, &leader, term, attacked, attack);
    let (new_leader, new_term) = again.expect("a leader under a new term serves again");
    let took = first_call_after(&starts, attacked, term).expect("a call under the new term");
    println!(
        "{attack}: term {term} ({leader}) → {new_term} ({new_leader}); first call served {:.1} ms after the attack",
        took.as_secs_f64() * 1000.0
    );
}

#[tokio::test]
async fn deleting_the_leader_key_stops_the_old_leader_at_once() {
    remove_the_leader_key(false).await;
}

#[tokio::test]
async fn purging_the_leader_key_stops_the_old_leader_at_once() {
    remove_the_leader_key(true).await;
}

/// A value naming `instance_id`, written without a TTL (a plain KV put).
fn forged(instance_id: &str) -> bytes::Bytes {
    format!(
        r#"{{"instance_id":"{instance_id}","elected_at":1.0,"last_heartbeat":1.0,"metadata":{{}}}}"#
    )
    .into_bytes()
    .into()
}

#[tokio::test]
async fn a_value_naming_another_instance_stops_the_leader_at_once() {
    let server = NatsServer::start().await.expect("nats-server");
    let ttl = Duration::from_secs(2);
    let (group, leader, term) = Group::serving(&server, ttl).await;

    group
        .store
        .put(KEY, forged("intruder-9"))
        .await
        .expect("overwrite");
    let attacked = Instant::now();
    // Give the old leader every chance to serve on: calls keep coming, and the forged key
    // holds until it is judged stale.
    let recovered = group.leader(term, 2 * ttl + Duration::from_secs(1)).await;
    let starts = group.service.starts();
    group.stop().await;
    assert_old_leader_stopped(&starts, &leader, term, attacked, "foreign value");
    let (new_leader, new_term) = recovered.expect("a leader serves again");
    let took = first_call_after(&starts, attacked, term).expect("a call under the new term");
    println!(
        "foreign value: term {term} ({leader}) → {new_term} ({new_leader}); first call served {:.0} ms after the overwrite",
        took.as_secs_f64() * 1000.0
    );
}

/// How long after `at` the first call under a term above `term` started.
fn first_call_after(starts: &[Start], at: Instant, term: u64) -> Option<Duration> {
    starts
        .iter()
        .filter(|s| s.at > at && s.term > term)
        .map(|s| s.at - at)
        .min()
}

#[tokio::test]
async fn a_forged_leader_key_without_ttl_does_not_stall_the_group() {
    let server = NatsServer::start().await.expect("nats-server");
    let ttl = Duration::from_secs(1);
    let group = Group::start(&server, ttl).await;
    let (leader, term) = group
        .leader(0, Duration::from_secs(10))
        .await
        .expect("a leader serves");

    group
        .store
        .put(KEY, forged("ghost-1"))
        .await
        .expect("forge");
    let forged_at = Instant::now();
    let bound = 2 * ttl + Duration::from_secs(1);
    let recovered = group.leader(term, bound + Duration::from_secs(5)).await;
    let first_call = first_call_after(&group.service.starts(), forged_at, term);
    group.stop().await;
    let (new_leader, new_term) = recovered.expect("a real leader serves again");
    let took = first_call.expect("a call served under the new term");
    println!(
        "forged key without TTL (leader_ttl {ttl:?}): term {term} ({leader}) → {new_term} ({new_leader}); first call served {:.0} ms after the forgery",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        took <= bound,
        "a real leader served again only {took:?} after the forgery (bound {bound:?})"
    );
}

#[tokio::test]
async fn purging_the_election_stream_never_gives_two_leaders() {
    let server = NatsServer::start().await.expect("nats-server");
    let ttl = Duration::from_secs(2);
    // Standbys look at a held key about once per TTL: six of them, started a sixth of a
    // TTL apart, spread their looks over time, so that one may well find the key gone
    // before the old leader's next renewal tells it. Whoever wins, the ledger must show
    // no call of the old leader after the first one of the new.
    let group = Group::start_staggered(&server, ttl, 7, ttl / 6).await;
    let (leader, term) = group
        .leader(0, Duration::from_secs(10))
        .await
        .expect("a leader serves");
    assert!(
        group
            .calls_after(Instant::now(), 50, Duration::from_secs(10))
            .await,
        "calls flow"
    );

    // No KV operation: the whole stream is emptied, no marker is written, no watcher hears
    // of it.
    jetstream::new(server.connect().await.expect("connect"))
        .get_stream("KV_sticky_active")
        .await
        .expect("election stream")
        .purge()
        .await
        .expect("purge the stream");
    let attacked = Instant::now();
    let recovered = group.leader(term, 2 * ttl + Duration::from_secs(1)).await;
    assert!(
        group
            .calls_after(attacked, 200, Duration::from_secs(10))
            .await
    );
    let starts = group.service.starts();
    group.stop().await;
    let (new_leader, new_term) = recovered.expect("a leader serves again");
    let old_last = starts
        .iter()
        .filter(|s| s.instance == leader && s.term == term)
        .map(|s| s.at)
        .max()
        .expect("the old leader served");
    let new_first = starts
        .iter()
        .filter(|s| s.term > term)
        .map(|s| s.at)
        .min()
        .expect("the new leader served");
    println!(
        "stream purge: term {term} ({leader}) → {new_term} ({new_leader}); old leader's last call {:.1} ms after the purge, new leader's first {:.1} ms after",
        old_last.saturating_duration_since(attacked).as_secs_f64() * 1000.0,
        new_first.saturating_duration_since(attacked).as_secs_f64() * 1000.0,
    );
    assert!(
        old_last < new_first,
        "two leaders at once: the old one started a call {:?} after the new one's first",
        old_last - new_first
    );
}

#[tokio::test]
async fn a_live_leader_is_never_judged_stale() {
    let server = NatsServer::start().await.expect("nats-server");
    let ttl = Duration::from_secs(1);
    let group = Group::start(&server, ttl).await;
    let (leader, term) = group
        .leader(0, Duration::from_secs(10))
        .await
        .expect("a leader serves");
    // Observe the group for four times the staleness bound (leader_ttl + margin = 1.5 s)
    // while the standby looks at the key every time it could turn stale.
    let watched = Instant::now();
    let observe = 4 * (ttl + ttl / 2);
    let changed = until(observe, || {
        let moved = group.instances.iter().any(|i| {
            let term_now = i.leadership().term();
            (i.instance_id().as_str() == leader) != (term_now == Some(term))
        });
        async move { moved }
    })
    .await;
    let starts = group.service.starts();
    group.stop().await;
    let calls: Vec<&Start> = starts.iter().filter(|s| s.at > watched).collect();
    println!(
        "live leader over {observe:?} (leader_ttl {ttl:?}): {} calls, terms {:?}",
        calls.len(),
        calls
            .iter()
            .map(|s| s.term)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        !changed,
        "the leadership moved although its leader was live"
    );
    assert!(!calls.is_empty(), "calls were served");
    assert!(
        calls.iter().all(|s| s.term == term && s.instance == leader),
        "every call ran under the live leader's term"
    );
}
