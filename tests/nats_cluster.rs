//! The three-node test cluster: JetStream keeps three replicas and survives a node's death,
//! and Aegis instances spread over the nodes keep one leader through it.

#![allow(clippy::print_stdout)] // the measured failover gap is printed

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aegis_examples::failover::{Caller, patient_client};
use aegis_examples::orders::OrderProcessor;
use aegis_runtime::testing::NatsCluster;
use aegis_runtime::{Leadership, ServiceRunner};
use async_nats::jetstream::kv;

/// Retries `attempt` until it succeeds or `within` has passed, returning the last error.
///
/// A replicated stream whose leader dies refuses writes until the remaining replicas elect
/// a new one (several seconds after a crash), and a restarted node answers reads only
/// once it has caught up: clients retry through both, and so does this test.
async fn eventually<T, E, F, Fut>(within: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A JetStream context whose requests give up after 500 ms. A write sent to a stream
/// leader that just died waits for its ack until this timeout (5 s by default) before the
/// client can try again: a failover-aware client keeps it short.
fn short_timeouts(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client)
}

/// Reads `k`, succeeding only once it holds the second write: a direct get may be answered
/// by a follower that lags a moment behind.
async fn read_v2(store: &kv::Store) -> Result<bytes::Bytes, String> {
    match store.get("k").await {
        Ok(Some(value)) if &value[..] == b"v2" => Ok(value),
        Ok(other) => Err(format!("not up to date yet: {other:?}")),
        Err(err) => Err(err.to_string()),
    }
}

#[tokio::test]
async fn a_replicated_bucket_survives_the_loss_of_a_node() {
    let mut cluster = NatsCluster::start().await.expect("cluster");
    assert_eq!(cluster.len(), 3);
    let client = async_nats::connect(cluster.urls()).await.expect("connect");
    let js = short_timeouts(client);
    let config = kv::Config {
        bucket: "replicated".into(),
        num_replicas: 3,
        ..Default::default()
    };
    let store = eventually(Duration::from_secs(10), || {
        js.create_key_value(config.clone())
    })
    .await
    .expect("R3 bucket");
    let info = store.status().await.expect("status");
    assert_eq!(info.info.config.num_replicas, 3);
    eventually(Duration::from_secs(10), || store.put("k", "v1".into()))
        .await
        .expect("put");

    // Kill a node that this client is not connected to, so the test is about replication,
    // not about client reconnects.
    let connected = js.client().server_info().port;
    let victim = (0..3)
        .find(|i| cluster.node(*i).port() != connected)
        .expect("another node");
    cluster.node_mut(victim).kill();

    // When the victim led the stream, the others first notice it is gone and elect a new
    // leader: measured here at 6–7 s after a SIGKILL (Raft election timeouts), hence the
    // generous bound.
    eventually(Duration::from_secs(20), || store.put("k", "v2".into()))
        .await
        .expect("writes resume with one node down");
    let value = eventually(Duration::from_secs(10), || read_v2(&store))
        .await
        .expect("reads resume with one node down");
    assert_eq!(&value[..], b"v2");

    cluster
        .node_mut(victim)
        .restart()
        .await
        .expect("restart node");
    let direct = async_nats::connect(cluster.node(victim).url())
        .await
        .expect("connect");
    let js = short_timeouts(direct);
    let value = eventually(Duration::from_secs(10), || async {
        let store = js
            .get_key_value("replicated")
            .await
            .map_err(|e| e.to_string())?;
        read_v2(&store).await
    })
    .await
    .expect("the restarted node serves the bucket");
    assert_eq!(
        &value[..],
        b"v2",
        "the write made while it was down reached it"
    );
}

/// The leader TTL of the instances on the cluster.
const LEADER_TTL: Duration = Duration::from_secs(2);

/// Counts, every millisecond or so, how many of `leaders` hold an unexpired lease at once,
/// and keeps the highest count seen: two would be two leaders serving exclusive calls.
fn watch_for_two_leaders(
    leaders: Vec<Leadership>,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let most = AtomicUsize::new(0);
        while !done.load(Ordering::Relaxed) {
            let active = leaders.iter().filter(|l| l.is_active()).count();
            most.fetch_max(active, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most.into_inner()
    })
}

/// For the registry and election buckets: the server leading each one's stream, and how
/// many replicas it has.
async fn bucket_placement(nats: async_nats::Client) -> Vec<(String, Option<String>, usize)> {
    let js = async_nats::jetstream::new(nats);
    let mut placement = Vec::new();
    for bucket in ["service_registry", "sticky_active"] {
        let stream = format!("KV_{bucket}");
        if let Ok(mut info) = js.get_stream(&stream).await
            && let Ok(info) = info.info().await
        {
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            placement.push((bucket.to_owned(), leader, info.config.num_replicas));
        }
    }
    placement
}

/// How an instance reaches the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Given its node's URL, it also learns the others from the server (async-nats does by
    /// default) and reconnects to one of them when its node dies.
    Discovered,
    /// Only its own node: when that dies the instance is cut off, like a partitioned host.
    OwnNodeOnly,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_calls_resume_when_the_leaders_node_dies() {
    leaders_node_dies(Reach::Discovered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_leads_when_the_leaders_node_dies_with_it() {
    leaders_node_dies(Reach::OwnNodeOnly).await;
}

/// Three order processors, one per node of a cluster, and a client calling the exclusive
/// `process_order` in a loop; the node the leader is connected to is killed. Calls resume
/// within a generous bound, and there are never two leaders.
async fn leaders_node_dies(reach: Reach) {
    let mut cluster = NatsCluster::start().await.expect("cluster");
    let mut instances = Vec::new();
    for node in 0..cluster.len() {
        let options = match reach {
            Reach::Discovered => async_nats::ConnectOptions::new(),
            Reach::OwnNodeOnly => async_nats::ConnectOptions::new().ignore_discovered_servers(),
        };
        let nats = options
            .connect(cluster.node(node).url())
            .await
            .expect("connect");
        let instance = ServiceRunner::new(OrderProcessor::default())
            .nats(nats)
            .instance_id(format!("orders-n{node}"))
            .leader_ttl(LEADER_TTL)
            .registry_ttl(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(500))
            .start()
            .await
            .expect("an instance starts on each node");
        instances.push(instance);
    }
    let leaderships: Vec<Leadership> = instances.iter().map(|i| i.leadership().clone()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let most_leaders = watch_for_two_leaders(leaderships, done.clone());

    // The client knows every node and fails over between them.
    let client_nats = async_nats::connect(cluster.urls()).await.expect("connect");
    let caller_nats = client_nats.clone();
    let caller = Caller::start(patient_client(
        client_nats,
        Duration::from_millis(500),
        Duration::from_secs(30),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let old_leader = loop {
        let (calls, _, last) = caller.tally();
        if let (true, Some(last)) = (calls >= 20, last) {
            break last;
        }
        assert!(
            Instant::now() < deadline,
            "no leader serves within 30 s of the start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let victim = instances
        .iter()
        .position(|i| i.instance_id().as_str() == old_leader)
        .expect("the leader is one of ours");
    let placement = bucket_placement(caller_nats).await;
    println!(
        "{reach:?}: leader {old_leader} on node {victim}; buckets (leader, replicas): {placement:?}"
    );

    assert!(
        placement.len() == 2
            && placement
                .iter()
                .all(|(_, _, replicas)| *replicas == aegis_runtime::runner::CLUSTER_BUCKET_REPLICAS),
        "the registry and election buckets are replicated on a cluster: {placement:?} (with one \
         replica, the loss of its node takes a bucket down)"
    );

    let (calls_before, _, _) = caller.tally();
    cluster.node_mut(victim).kill();
    let killed = Instant::now();
    // Bound: the old leader's key expires after the leader TTL; when a stream's Raft leader
    // sat on the killed node, the survivors first elect a new one (6–7 s measured, see the
    // bucket test above).
    let bound = Duration::from_secs(30);
    let wanted = |last: &Option<String>| match reach {
        Reach::Discovered => true,
        Reach::OwnNodeOnly => last.as_ref().is_some_and(|last| *last != old_leader),
    };
    // Resumed: 20 more calls answered, the last of them (when the leader was cut off) by
    // another instance.
    let resumed = loop {
        let (calls, _, last) = caller.tally();
        if calls >= calls_before + 20 && wanted(&last) {
            break true;
        }
        if killed.elapsed() > bound {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let outcomes = caller.finish().await;
    done.store(true, Ordering::Relaxed);
    let most = most_leaders.await.expect("watcher");
    let roles: Vec<_> = instances
        .iter()
        .map(|i| (i.instance_id().to_string(), i.leadership().role()))
        .collect();
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    assert!(
        resumed,
        "exclusive calls did not resume within {bound:?} of killing the node of {old_leader}; \
         roles {roles:?}; errors {failed:?}"
    );

    // The interruption: the longest time between two answered calls, from the last one
    // answered before the kill.
    let answered: Vec<Instant> = outcomes
        .iter()
        .filter(|(_, o)| o.is_ok())
        .map(|(at, _)| *at)
        .collect();
    let from = answered.iter().rposition(|at| *at <= killed).unwrap_or(0);
    let gap = answered[from..]
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .unwrap_or_default();
    let after: Vec<&String> = outcomes
        .iter()
        .filter(|(at, _)| *at > killed)
        .filter_map(|(_, o)| o.as_ref().ok().map(|r| &r.instance_id))
        .collect();
    println!(
        "{reach:?}: killed the node of leader {old_leader}: exclusive calls paused {:.0} ms; \
         {} calls, {} failed; served after the kill by {:?}",
        gap.as_secs_f64() * 1000.0,
        outcomes.len(),
        failed.len(),
        after.iter().collect::<std::collections::BTreeSet<_>>()
    );
    let kinds: std::collections::BTreeSet<&String> = failed.iter().copied().collect();
    if !kinds.is_empty() {
        println!("{reach:?}: errors seen meanwhile: {kinds:?}");
    }
    assert!(gap <= bound, "calls paused for {gap:?}");

    // Never two leaders: each term belongs to one instance, and (the calls are sequential,
    // each answered before the next is sent) no reply under an older term follows one
    // under a newer term.
    let mut holders: BTreeMap<u64, String> = BTreeMap::new();
    let mut highest = 0;
    for (_, outcome) in &outcomes {
        let Ok(result) = outcome else { continue };
        let holder = holders
            .entry(result.term)
            .or_insert_with(|| result.instance_id.clone());
        assert_eq!(
            *holder, result.instance_id,
            "term {} served by two instances",
            result.term
        );
        assert!(
            result.term >= highest,
            "{} served under term {} after term {highest} was served: two leaders",
            result.instance_id,
            result.term
        );
        highest = result.term;
    }
    if reach == Reach::OwnNodeOnly {
        assert!(
            holders.len() >= 2,
            "a new leader, under a new term, after the old one was cut off: {holders:?}"
        );
    }
    assert_eq!(most, 1, "at most one instance held a lease at any moment");
    println!("{reach:?}: terms served: {holders:?}");
}

/// A deploy onto a fresh cluster: many instances start at once, the first of them
/// creating the replicated buckets while the others already use them. A new replicated
/// stream answers only once its replicas elected a leader; until then its reads and
/// writes get "no responders", which must not fail a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_started_at_once_on_a_fresh_cluster_all_register() {
    let cluster = NatsCluster::start().await.expect("cluster");
    let url = cluster.urls().join(",");
    let starts = (0..30).map(|n| {
        let url = url.clone();
        async move {
            let nats = aegis_runtime::connect::ConnectConfig::new(url)
                .connect()
                .await
                .expect("connect");
            ServiceRunner::new(OrderProcessor::default())
                .nats(nats)
                .instance_id(format!("orders-{n}"))
                .start()
                .await
        }
    });
    let started = futures_util::future::join_all(starts).await;
    let failed: Vec<String> = started
        .iter()
        .filter_map(|s| s.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 30 starts failed: {failed:?}",
        failed.len()
    );
    futures_util::future::join_all(started.into_iter().flatten().map(|running| running.stop()))
        .await;
}
