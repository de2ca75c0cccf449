//! Measures Aegis at scale on one nats-server: N echo instances across K worker processes,
//! G sticky-active groups of two members, a watching process, discovery of services of
//! 10, 1,000 and 10,000 instances, and one crash failover among the groups. Prints every
//! figure, the raw async-nats floor where there is one, and the targets of issue 18 as met
//! or not met.
//!
//! Run with: `cargo build --release -p aegis-examples --bins && target/release/scale_bench --instances 10000`
//! (`--smoke` for the short round the tests run).

#![allow(clippy::print_stdout)] // a benchmark: its output is the point

use std::time::{Duration, Instant};

use aegis_examples::process::ChildProcess;
use aegis_examples::scale::{self, WorkerArgs, cpu_share, percentile, rss_kib};
use aegis_runtime::client::{Selection, Selector};
use aegis_runtime::discovery::{BasicDiscovery, Discovery, WatchDiscovery};
use aegis_runtime::election::LeaderRecord;
use aegis_runtime::subject::{self, GroupId, ServiceName};
use aegis_runtime::testing::{NatsCluster, NatsServer};
use async_nats::jetstream::{self, kv};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

/// Scale benchmark.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// (internal) Runs instances for the bench.
    Worker(WorkerArgs),
    /// (internal) Watches a service and idles.
    Watcher {
        #[arg(long)]
        nats: String,
        #[arg(long)]
        service: String,
        #[arg(long)]
        expect: usize,
        /// A raw async-nats KV watch of the same keys instead (the floor).
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Bench {
    /// Echo instances in all (one service).
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Worker processes they run in.
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Sticky-active groups, two members each, in different processes.
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    /// The leader TTL of the groups, in seconds.
    #[arg(long, default_value_t = 2)]
    leader_ttl: u64,
    /// Seconds of each steady-state measurement.
    #[arg(long, default_value_t = 5.0)]
    window: f64,
    /// The groups' members also hold the Python SDK's leader key
    /// (`PythonSdk::share_leadership`): measures what that option costs.
    #[arg(long)]
    share_leadership: bool,
    /// A short round (the test suite's): 100 instances, 20 groups, 1 s windows.
    #[arg(long)]
    smoke: bool,
    /// On a 3-node cluster (replicated buckets) instead of one server.
    #[arg(long)]
    cluster: bool,
}

/// Where the bench runs: one server (with its monitoring endpoint) or a 3-node cluster.
enum Servers {
    One { server: NatsServer, monitoring: u16 },
    Cluster(NatsCluster),
}

impl Servers {
    async fn start(cluster: bool) -> Result<Self, Box<dyn std::error::Error>> {
        if cluster {
            return Ok(Self::Cluster(NatsCluster::start().await?));
        }
        // The server's monitoring endpoint counts subscriptions and connections.
        let monitoring = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = NatsServer::builder()
            .config(format!("http: \"127.0.0.1:{monitoring}\""))
            .start()
            .await?;
        Ok(Self::One { server, monitoring })
    }

    /// The address list clients connect to.
    fn url(&self) -> String {
        match self {
            Self::One { server, .. } => server.url(),
            Self::Cluster(cluster) => cluster.urls().join(","),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Self::One { server, .. } => server.pid().into_iter().collect(),
            Self::Cluster(cluster) => (0..cluster.len())
                .filter_map(|n| cluster.node(n).pid())
                .collect(),
        }
    }

    /// A figure of the monitoring endpoint (`None` on a cluster: not enabled there).
    async fn monitored(&self, path: &str, field: &str) -> Option<u64> {
        match self {
            Self::One { monitoring, .. } => scale::monitor(*monitoring, path).await[field].as_u64(),
            Self::Cluster(_) => None,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    aegis_examples::init_logging();
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Worker(args)) => scale::run_worker(args).await,
        Some(Role::Watcher {
            nats,
            service,
            expect,
            raw: false,
        }) => scale::run_watcher(&nats, &service, expect).await,
        Some(Role::Watcher {
            nats,
            service,
            expect,
            raw: true,
        }) => scale::run_raw_watcher(&nats, &service, expect).await,
        None => bench(cli.bench).await,
    }
}

/// Met or not met, for the summary.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(mut args: Bench) -> Result<(), Box<dyn std::error::Error>> {
    if args.smoke {
        (args.instances, args.groups, args.window, args.processes) = (100, 20, 1.0, 2);
    }
    let window = Duration::from_secs_f64(args.window);
    let processes = args.processes.max(1);
    let servers = Servers::start(args.cluster).await?;
    let pids = servers.pids();
    let url = servers.url();
    let nats = aegis_runtime::connect::ConnectConfig::new(url.as_str())
        .connect()
        .await?;
    println!(
        "scale_bench: {} echo instances and {} groups × 2 in {} processes, leader_ttl {} s, windows of {:?}, on {}",
        args.instances,
        args.groups,
        if processes > 1 { 2 * processes } else { 1 },
        args.leader_ttl,
        window,
        if args.cluster {
            "a 3-node cluster (buckets with 3 replicas)"
        } else {
            "one nats-server"
        }
    );

    // Register everything.
    let subscriptions = || servers.monitored("/subsz", "num_subscriptions");
    let connections = || servers.monitored("/varz", "connections");
    let (subscriptions_before, connections_before) = (subscriptions().await, connections().await);
    let began = Instant::now();
    let watch = WatchDiscovery::new(nats.clone());
    let echo = ServiceName::new("echo")?;
    let mut workers = Vec::new();
    for p in 0..processes {
        let share = |total: usize| (total * p / processes, total * (p + 1) / processes);
        let (echo_from, echo_to) = share(args.instances);
        // Each group has a member here and one in the next process.
        let (groups_from, groups_to) = share(args.groups);
        let next = (p + 1) % processes;
        let (next_from, next_to) = (
            args.groups * next / processes,
            args.groups * (next + 1) / processes,
        );
        let worker = |echo: (usize, usize), groups: (usize, usize), member: &str| {
            let args = [
                "worker".to_owned(),
                format!("--nats={url}"),
                format!("--echo-from={}", echo.0),
                format!("--echo-to={}", echo.1),
                format!("--groups-from={}", groups.0),
                format!("--groups-to={}", groups.1),
                format!("--member={member}"),
                format!("--leader-ttl={}", args.leader_ttl),
                format!("--share-leadership={}", args.share_leadership),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ChildProcess::start_until("scale_bench", &args, "spawned")
        };
        workers.push(worker((echo_from, echo_to), (groups_from, groups_to), "a"));
        if processes > 1 {
            workers.push(worker((0, 0), (next_from, next_to), "b"));
        }
    }
    let (mut baseline_kib, mut ready_kib, mut tasks) = (0, 0, 0);
    for (worker, spawned) in &mut workers {
        baseline_kib += field(spawned, "rss_kib");
        let ready = worker.wait_for_line("ready", Duration::from_secs(600));
        ready_kib += field(&ready, "rss_kib");
        tasks += field(&ready, "tasks");
    }
    let started = began.elapsed();
    loop {
        let listed = watch.instances(&echo).await.map(|l| l.len()).unwrap_or(0);
        if listed >= args.instances {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let registered = began.elapsed();
    let all = args.instances + 2 * args.groups;
    println!("\n== registration");
    println!(
        "all {all} instances started in {started:?}; all {} echo entries seen by a watch after {registered:?}",
        args.instances
    );
    println!(
        "memory per idle instance: {:.1} KiB ({} worker processes: {} MiB before, {} MiB with every instance)",
        (ready_kib.saturating_sub(baseline_kib)) as f64 / all as f64,
        workers.len(),
        baseline_kib / 1024,
        ready_kib / 1024
    );
    let per = |after: Option<u64>, before: Option<u64>| match (after, before) {
        (Some(after), Some(before)) => {
            format!("{:.1}", after.saturating_sub(before) as f64 / all as f64)
        }
        _ => "n/a".to_owned(),
    };
    println!(
        "per instance: {:.1} tasks, {} subscriptions on the server, {} connections (the instances of a process share 2)",
        tasks as f64 / all as f64,
        per(subscriptions().await, subscriptions_before),
        per(connections().await, connections_before),
    );

    // Steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let js = jetstream::new(nats.clone());
    let last_seq = |bucket: &'static str| {
        let js = js.clone();
        async move {
            match js.get_stream(format!("KV_{bucket}")).await {
                Ok(mut stream) => stream
                    .info()
                    .await
                    .map(|i| i.state.last_sequence)
                    .unwrap_or(0),
                Err(_) => 0,
            }
        }
    };
    // The Python SDK's election bucket of the grouped service (written only with
    // `--share-leadership`).
    let sdk_bucket: &'static str = "election_order_processor";
    let (registry_before, election_before, sdk_before) = (
        last_seq(subject::REGISTRY_BUCKET).await,
        last_seq(subject::STICKY_ACTIVE_BUCKET).await,
        last_seq(sdk_bucket).await,
    );
    let server_cpu = servers_cpu(&pids, window).await;
    let (registry_after, election_after, sdk_after) = (
        last_seq(subject::REGISTRY_BUCKET).await,
        last_seq(subject::STICKY_ACTIVE_BUCKET).await,
        last_seq(sdk_bucket).await,
    );
    let per_second = |delta: u64| delta as f64 / window.as_secs_f64();
    println!("\n== steady state");
    println!(
        "nats-server{}: {:.1} % of a core, {} MiB resident",
        if pids.len() > 1 { "s (all nodes)" } else { "" },
        server_cpu * 100.0,
        pids.iter().filter_map(|pid| rss_kib(*pid)).sum::<u64>() / 1024
    );
    println!(
        "registry writes {:.0}/s (heartbeats of {all} instances); election writes {:.0}/s (renewals of {} groups)",
        per_second(registry_after - registry_before),
        per_second(election_after - election_before),
        args.groups
    );
    if args.share_leadership {
        println!(
            "Python SDK leader keys held beside (share_leadership): {:.0} writes/s more",
            per_second(sdk_after - sdk_before)
        );
    }

    // A watching process at rest, and the floor: a raw KV watch of the same keys.
    let watcher_cpu = watcher_at_rest(&url, args.instances, window, false).await;
    let raw_watcher_cpu = watcher_at_rest(&url, args.instances, window, true).await;
    let watcher_limit = if args.instances > 1000 { 0.05 } else { 0.01 };
    println!(
        "a watching process at rest: {:.2} % of a core ({} instances, heartbeats arriving; a raw async-nats KV watch of the same keys: {:.2} %, ratio {:.2}×)",
        watcher_cpu * 100.0,
        args.instances,
        raw_watcher_cpu * 100.0,
        watcher_cpu / raw_watcher_cpu.max(1e-9)
    );

    // Discovery by service size.
    println!(
        "\n== discovery (cold: BasicDiscovery, one read of the service's keys; warm: WatchDiscovery, in memory)"
    );
    let mut sizes = vec![10, 1000];
    if args.instances >= 10_000 {
        sizes.push(10_000);
    }
    if args.smoke {
        sizes = vec![10, 100];
    }
    let mut cold_1000 = None;
    let mut warm_worst = Duration::ZERO;
    let mut select_worst = Duration::ZERO;
    for size in sizes {
        let name = format!("scale-{size}");
        scale::write_entries(&nats, &name, size).await?;
        let service = ServiceName::new(name.as_str())?;
        let reps = if size >= 10_000 { 10 } else { 50 };
        let (cold, raw) = cold_reads(&nats, &service, reps).await?;
        let (warm, select) = warm_reads(&nats, &service, size).await?;
        if size == 1000 {
            cold_1000 = Some(cold.0);
        }
        warm_worst = warm_worst.max(warm.0);
        select_worst = select_worst.max(select);
        println!(
            "{size:>6} instances: cold p50 {} p99 {} (raw KV read of the same keys p50 {}, ratio {:.2}×); warm p50 {:?} p99 {:?}; round-robin pick {:?}",
            ms(cold.0),
            ms(cold.1),
            ms(raw),
            cold.0.as_secs_f64() / raw.as_secs_f64().max(1e-9),
            warm.0,
            warm.1,
            select
        );
    }
    if args.instances >= 10_000 {
        // 10,000 more entries as 1,000 services of 10: a read of one touches only its own.
        for s in 0..1000 {
            scale::write_entries(&nats, &format!("svc-{s:04}"), 10).await?;
        }
        let service = ServiceName::new("svc-0500")?;
        let (cold, raw) = cold_reads(&nats, &service, 50).await?;
        println!(
            "10 of 1,000 services of 10: cold p50 {} p99 {} (raw {})",
            ms(cold.0),
            ms(cold.1),
            ms(raw)
        );
    }

    // One crash failover among the groups.
    println!("\n== a crash failover among {} groups", args.groups);
    let failover = crash_failover(&url, &nats, args.leader_ttl).await?;
    let failover_limit = Duration::from_secs(args.leader_ttl) + Duration::from_millis(500);
    println!(
        "SIGKILL of a leader → new leader elected after {}",
        ms(failover)
    );

    println!("\n== targets");
    println!(
        "watch idle CPU ≤ {:.0} % of a core per watcher at {} instances: {:.2} % (raw floor {:.2} %) — {}",
        watcher_limit * 100.0,
        args.instances,
        watcher_cpu * 100.0,
        raw_watcher_cpu * 100.0,
        verdict(watcher_cpu <= watcher_limit)
    );
    if let Some(cold) = cold_1000 {
        println!(
            "cold discovery of a 1,000-instance service ≤ 5 ms: {} — {}",
            ms(cold),
            verdict(cold <= Duration::from_millis(5))
        );
    }
    println!(
        "warm selection ≤ 1 µs: lookup {:?} + pick {:?} — {}",
        warm_worst,
        select_worst,
        verdict(warm_worst + select_worst <= Duration::from_micros(1))
    );
    println!(
        "crash failover in one of {} groups ≤ leader_ttl + 0.5 s ({}): {} — {}",
        args.groups,
        ms(failover_limit),
        ms(failover),
        verdict(failover <= failover_limit)
    );
    drop(workers);
    Ok(())
}

/// The share of one core a watching process of the echo service uses over `window` once
/// it lists all `instances`: a [`WatchDiscovery`], or (`raw`) a bare async-nats KV watch.
async fn watcher_at_rest(url: &str, instances: usize, window: Duration, raw: bool) -> f64 {
    let mut args = vec![
        "watcher".to_owned(),
        format!("--nats={url}"),
        "--service=echo".to_owned(),
        format!("--expect={instances}"),
    ];
    if raw {
        args.push("--raw".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (watcher, _) = ChildProcess::start_until("scale_bench", &args, "ready");
    cpu_share(watcher.pid(), window).await.unwrap_or(f64::NAN)
}

/// The share of one core the processes `pids` used together over `window`.
async fn servers_cpu(pids: &[u32], window: Duration) -> f64 {
    let used = || {
        pids.iter()
            .filter_map(|pid| scale::cpu_seconds(*pid))
            .sum::<f64>()
    };
    let before = used();
    tokio::time::sleep(window).await;
    (used() - before) / window.as_secs_f64()
}

/// The number after `name=` in `line`.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Cold lookups of `service`: p50 and p99 of a fresh `BasicDiscovery` read, and p50 of the
/// same read with async-nats alone (a KV watch of the same keys to its end).
async fn cold_reads(
    nats: &async_nats::Client,
    service: &ServiceName,
    reps: usize,
) -> Result<((Duration, Duration), Duration), Box<dyn std::error::Error>> {
    let discovery = BasicDiscovery::new(nats.clone());
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let began = Instant::now();
        discovery.instances(service).await?;
        samples.push(began.elapsed());
    }
    let store = jetstream::new(nats.clone())
        .get_key_value(subject::REGISTRY_BUCKET)
        .await?;
    let mut raw = Vec::with_capacity(reps);
    for _ in 0..reps {
        let began = Instant::now();
        let mut watch = store
            .watch_with_history(subject::registry_service_filter(service))
            .await?;
        while let Some(entry) = watch.next().await {
            if entry?.delta == 0 {
                break;
            }
        }
        raw.push(began.elapsed());
    }
    Ok((
        (
            percentile(&mut samples, 50.0),
            percentile(&mut samples, 99.0),
        ),
        percentile(&mut raw, 50.0),
    ))
}

/// Warm lookups of `service` from a live watch (p50, p99), and the cost of one
/// round-robin pick over the list it gives.
async fn warm_reads(
    nats: &async_nats::Client,
    service: &ServiceName,
    size: usize,
) -> Result<((Duration, Duration), Duration), Box<dyn std::error::Error>> {
    let watch = WatchDiscovery::new(nats.clone());
    while watch.instances(service).await.map(|l| l.len()).unwrap_or(0) < size {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Timed in batches: one lookup is below the clock's resolution.
    const BATCH: u32 = 1000;
    let mut samples = Vec::new();
    for _ in 0..200 {
        let began = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(watch.instances_now(service));
        }
        samples.push(began.elapsed() / BATCH);
    }
    let list = watch.instances_now(service).ok_or("not live")??;
    let selector = Selector::new(Selection::RoundRobin);
    let picks = 1_000_000u32;
    let began = Instant::now();
    for _ in 0..picks {
        std::hint::black_box(selector.pick(&list, &[]));
    }
    let pick = began.elapsed() / picks;
    Ok((
        (
            percentile(&mut samples, 50.0),
            percentile(&mut samples, 99.0),
        ),
        pick,
    ))
}

/// Two processes with one member each of a group of its own; the leader's is killed;
/// the time until the election key names the other.
async fn crash_failover(
    url: &str,
    nats: &async_nats::Client,
    leader_ttl: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let member = |name: &str| {
        let args = [
            "worker".to_owned(),
            format!("--nats={url}"),
            "--groups-from=999999".to_owned(),
            "--groups-to=1000000".to_owned(),
            format!("--member={name}"),
            format!("--leader-ttl={leader_ttl}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut process, _) = ChildProcess::start_until("scale_bench", &args, "spawned");
        process.wait_for_line("ready", Duration::from_secs(60));
        process
    };
    let store = jetstream::new(nats.clone())
        .get_key_value(subject::STICKY_ACTIVE_BUCKET)
        .await?;
    let key = subject::leader_key(
        &ServiceName::new("order-processor")?,
        &GroupId::new("g999999")?,
    );
    let leader = || async {
        match store.entry(&key).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                aegis_runtime::codec::decode::<LeaderRecord>(&entry.value)
                    .ok()
                    .map(|r| r.instance_id)
            }
            _ => None,
        }
    };
    let mut first = member("a");
    while leader().await.as_deref() != Some("orders-g999999-a") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _second = member("b");
    let mut changes = store.watch(&key).await?;
    first.kill();
    let killed = Instant::now();
    while let Some(entry) = changes.next().await {
        let entry = entry?;
        if entry.operation == kv::Operation::Put
            && aegis_runtime::codec::decode::<LeaderRecord>(&entry.value)
                .is_ok_and(|r| r.instance_id == "orders-g999999-b")
        {
            return Ok(killed.elapsed());
        }
    }
    Err("the election watch ended".into())
}
