//! The three-node test cluster: JetStream keeps three replicas and survives a node's death.

use aegis_runtime::testing::NatsCluster;
use async_nats::jetstream::kv;

#[tokio::test]
async fn a_replicated_bucket_survives_the_loss_of_a_node() {
    let mut cluster = NatsCluster::start().await.expect("cluster");
    assert_eq!(cluster.len(), 3);
    let client = async_nats::connect(cluster.urls()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let store = js
        .create_key_value(kv::Config {
            bucket: "replicated".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("R3 bucket");
    let info = store.status().await.expect("status");
    assert_eq!(info.info.config.num_replicas, 3);
    store.put("k", "v1".into()).await.expect("put");

    // Kill a node that this client is not connected to, so the test is about replication,
    // not about client reconnects.
    let connected = js_server_port(&js).await;
    let victim = (0..3)
        .find(|i| cluster.node(*i).port() != connected)
        .expect("another node");
    cluster.node_mut(victim).kill();

    store
        .put("k", "v2".into())
        .await
        .expect("put with one node down");
    assert_eq!(
        store.get("k").await.expect("get").as_deref(),
        Some(&b"v2"[..])
    );

    cluster
        .node_mut(victim)
        .restart()
        .await
        .expect("restart node");
    let direct = async_nats::connect(cluster.node(victim).url())
        .await
        .expect("connect");
    let store = async_nats::jetstream::new(direct)
        .get_key_value("replicated")
        .await
        .expect("bucket");
    assert_eq!(
        store
            .get("k")
            .await
            .expect("get via the restarted node")
            .as_deref(),
        Some(&b"v2"[..])
    );
}

async fn js_server_port(js: &async_nats::jetstream::Context) -> u16 {
    js.client().server_info().port
}
