//! The parts of `scale_bench`: worker processes that run many instances, a watcher
//! process, synthetic registry entries, and readings of a process's CPU and memory.

use std::time::{Duration, Instant};

use aegis_runtime::instance::ServiceInstance;
use aegis_runtime::subject::{self, InstanceId, ServiceName};
use aegis_runtime::{RunningService, ServiceRunner, StartError};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::echo::Echo;
use crate::orders::OrderProcessor;

/// What one worker process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The NATS server.
    #[arg(long)]
    pub nats: String,
    /// The first echo instance, `echo-{from}`.
    #[arg(long, default_value_t = 0)]
    pub echo_from: usize,
    /// One past the last echo instance (`echo-{to - 1}`).
    #[arg(long, default_value_t = 0)]
    pub echo_to: usize,
    /// The first sticky-active group of order-processor this process has a member of
    /// (`g{from}`).
    #[arg(long, default_value_t = 0)]
    pub groups_from: usize,
    /// One past the last group (`g{to - 1}`).
    #[arg(long, default_value_t = 0)]
    pub groups_to: usize,
    /// Names this process's members of the groups apart from other processes'.
    #[arg(long, default_value = "a")]
    pub member: String,
    /// Connections the instances share (round robin).
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// The leader TTL of the groups, in seconds.
    #[arg(long, default_value_t = 2)]
    pub leader_ttl: u64,
    /// The heartbeat interval, in milliseconds (the runtime's default: 10 s).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// The group members also hold the Python SDK's leader key.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub share_leadership: bool,
}

/// Runs a worker: prints `spawned rss_kib=…` at once, starts its instances, prints
/// `ready rss_kib=… started_in_ms=…`, then serves until killed.
pub async fn run_worker(args: WorkerArgs) -> Result<(), Box<dyn std::error::Error>> {
    announce(format!(
        "spawned rss_kib={}",
        rss_kib(std::process::id()).unwrap_or(0)
    ));
    let began = Instant::now();
    let mut connections = Vec::new();
    for _ in 0..args.connections.max(1) {
        // A server list (a cluster's) as well as one address.
        connections.push(
            aegis_runtime::connect::ConnectConfig::new(args.nats.as_str())
                .connect()
                .await?,
        );
    }
    let connection = |n: usize| connections[n % connections.len()].clone();
    let heartbeat = args.heartbeat_ms.map(Duration::from_millis);
    let mut starting: Vec<BoxFuture<'static, Result<RunningService, StartError>>> = Vec::new();
    for n in args.echo_from..args.echo_to {
        let mut runner = ServiceRunner::new(Echo)
            .nats(connection(n))
            .instance_id(format!("echo-{n}"));
        if let Some(interval) = heartbeat {
            runner = runner.heartbeat_interval(interval);
        }
        starting.push(runner.start().boxed());
    }
    for g in args.groups_from..args.groups_to {
        let mut runner = ServiceRunner::new(OrderProcessor::default())
            .nats(connection(g))
            .instance_id(format!("orders-g{g}-{}", args.member))
            .group(format!("g{g}"))
            .leader_ttl(Duration::from_secs(args.leader_ttl.max(1)));
        if args.share_leadership {
            runner = runner.python_sdk(aegis_runtime::PythonSdk::new().share_leadership());
        }
        if let Some(interval) = heartbeat {
            runner = runner.heartbeat_interval(interval);
        }
        starting.push(runner.start().boxed());
    }
    // Started a few hundred at a time: all at once would queue thousands of KV writes.
    let mut running: Vec<RunningService> = Vec::new();
    let mut pending = futures_util::stream::iter(starting).buffer_unordered(200);
    while let Some(started) = pending.next().await {
        running.push(started?);
    }
    announce(format!(
        "ready rss_kib={} started_in_ms={} tasks={}",
        rss_kib(std::process::id()).unwrap_or(0),
        began.elapsed().as_millis(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    ));
    std::future::pending::<()>().await;
    drop(running);
    Ok(())
}

/// Tells the bench (reading this process's stdout) how far it got.
fn announce(line: String) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a watcher: a watch discovery of `service` that prints `ready` once it lists
/// `expect` instances, then stays idle (its CPU is what the bench measures).
pub async fn run_watcher(
    nats: &str,
    service: &str,
    expect: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let nats = aegis_runtime::connect::ConnectConfig::new(nats)
        .connect()
        .await?;
    let discovery = aegis_runtime::discovery::WatchDiscovery::new(nats);
    let service = ServiceName::new(service)?;
    loop {
        let found = aegis_runtime::discovery::Discovery::instances(&discovery, &service)
            .await
            .map(|list| list.len())
            .unwrap_or(0);
        if found >= expect {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    announce("ready".to_owned());
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs the floor of a watcher: a raw async-nats KV watch of the same keys, which only
/// counts what arrives. Prints `ready` once it has seen `expect` entries.
pub async fn run_raw_watcher(
    nats: &str,
    service: &str,
    expect: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let nats = async_nats::connect(nats).await?;
    let store = async_nats::jetstream::new(nats)
        .get_key_value(subject::REGISTRY_BUCKET)
        .await?;
    let name = ServiceName::new(service)?;
    let mut watch = store
        .watch_with_history(subject::registry_service_filter(&name))
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut announced = false;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        if !announced {
            seen.insert(entry.key);
            if seen.len() >= expect {
                announce("ready".to_owned());
                announced = true;
                seen = Default::default();
            }
        }
    }
    Ok(())
}

/// Writes `count` registry entries of `service` (`{service}-{n}`), fresh for an hour,
/// as fast as the server acknowledges them.
pub async fn write_entries(
    nats: &async_nats::Client,
    service: &str,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let js = async_nats::jetstream::new(nats.clone());
    let name = ServiceName::new(service)?;
    let mut acks = Vec::with_capacity(count);
    for n in 0..count {
        let id = InstanceId::new(format!("{service}-{n}"))?;
        let mut entry = ServiceInstance::new(name.clone(), id.clone(), "1.0.0")?;
        entry.set_heartbeat_ttl(Duration::from_secs(3600));
        let key = subject::kv_key(subject::REGISTRY_BUCKET, &subject::registry_key(&name, &id));
        acks.push(js.publish(key, entry.to_json().into()).await?);
        if acks.len() >= 512 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// `GET path` of the nats-server monitoring endpoint on `port`, as JSON (`Null` when it
/// does not answer).
pub async fn monitor(port: u16, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return serde_json::Value::Null;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_string(&mut response).await.is_err()
    {
        return serde_json::Value::Null;
    }
    response
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_default()
}

/// CPU seconds (user + system) that process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The share of one core process `pid` used over `window`.
pub async fn cpu_share(pid: u32, window: Duration) -> Option<f64> {
    let before = cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    Some((cpu_seconds(pid)? - before) / window.as_secs_f64())
}

/// The `p`-th percentile (0–100) of `samples` (sorted here).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
