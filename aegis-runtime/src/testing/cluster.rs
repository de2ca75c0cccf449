//! Three (or more) nats-servers joined by routes, with JetStream replicated across them.

use std::time::{Duration, Instant};

use super::server::ClusterSettings;
use super::{NatsServer, ServerError};

/// How long a new cluster may take to elect a JetStream meta leader with every peer.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one readiness probe may wait for JetStream's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A cluster of nats-servers on loopback, routed to each other, with JetStream able to keep
/// three replicas. Every node is a [`NatsServer`]: stop, kill, pause or restart one to test
/// faults. All are killed on drop.
///
/// ```no_run
/// use aegis_runtime::testing::NatsCluster;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut cluster = NatsCluster::start().await?;
/// let client = async_nats::connect(cluster.urls()).await?;
/// cluster.node_mut(0).kill();
/// client.publish("still.up", "yes".into()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

/// `count` ports free right now and different from each other. They are held open together
/// while picked: one at a time, the OS may hand out the same port twice (a client port
/// equal to a route port made a node fail with "address already in use").
fn distinct_free_ports(count: usize) -> Result<Vec<u16>, ServerError> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::io("find free ports", e))?;
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .map(|addr| addr.port())
                .map_err(|e| ServerError::io("find free ports", e))
        })
        .collect()
}

impl NatsCluster {
    /// Starts a three-node cluster and waits until JetStream can place three replicas.
    ///
    /// # Errors
    /// As [`NatsServer::start`], or [`ServerError::NotReady`] when the cluster does not form.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with(3).await
    }

    /// Starts a cluster of `size` nodes (at least 1).
    ///
    /// # Errors
    /// As [`NatsCluster::start`].
    pub async fn start_with(size: usize) -> Result<Self, ServerError> {
        let size = size.max(1);
        let mut ports = distinct_free_ports(2 * size)?;
        let client_ports = ports.split_off(size);
        let route_ports = ports;
        let name = format!("aegis-test-{}", route_ports[0]);
        let mut nodes = Vec::with_capacity(size);
        for (index, route_port) in route_ports.iter().enumerate() {
            let settings = ClusterSettings {
                name: name.clone(),
                server_name: format!("{name}-n{index}"),
                route_port: *route_port,
                peer_route_ports: route_ports
                    .iter()
                    .copied()
                    .filter(|p| p != route_port)
                    .collect(),
            };
            nodes.push(
                NatsServer::builder()
                    .port(client_ports[index])
                    .cluster(settings)
                    .start()
                    .await?,
            );
        }
        let cluster = Self { nodes };
        cluster.wait_for_jetstream(size).await?;
        Ok(cluster)
    }

    /// The client URLs of all nodes, for `async_nats::connect`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Node `index`.
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn node(&self, index: usize) -> &NatsServer {
        &self.nodes[index]
    }

    /// Node `index`, to stop, kill, pause or restart it.
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn node_mut(&mut self, index: usize) -> &mut NatsServer {
        &mut self.nodes[index]
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Waits until a stream with `replicas` replicas can be created, which needs a meta
    /// leader and every peer known to it.
    async fn wait_for_jetstream(&self, replicas: usize) -> Result<(), ServerError> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let probe = async_nats::jetstream::stream::Config {
            name: "AEGIS_CLUSTER_READY".into(),
            subjects: vec!["aegis.cluster.ready".into()],
            num_replicas: replicas,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        loop {
            if let Ok(client) = async_nats::connect(self.urls()).await {
                let js = async_nats::jetstream::new(client);
                // A request sent before the meta leader exists goes unanswered until the
                // client's 10 s request timeout: give each attempt a short one instead.
                let attempt = tokio::time::timeout(PROBE_TIMEOUT, js.create_stream(probe.clone()));
                if let Ok(Ok(_)) = attempt.await {
                    let _ = js.delete_stream(&probe.name).await;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let log = self
                    .nodes
                    .iter()
                    .map(NatsServer::log)
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(ServerError::NotReady {
                    timeout: CLUSTER_READY_TIMEOUT,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
