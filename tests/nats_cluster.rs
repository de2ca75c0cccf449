//! The three-node test cluster: JetStream keeps three replicas and survives a node's death.

use std::future::Future;
use std::time::Duration;

use aegis_runtime::testing::NatsCluster;
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
