//! `aegis demo`: leader failover, live, with nothing to set up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aegis_examples::failover::{Caller, Group, Outcome};
use aegis_examples::orders::OrderProcessorClient;
use aegis_runtime::RetryPolicy;
use aegis_runtime::testing::NatsServer;

use crate::dashboard::Dashboard;
use nix::sys::signal::Signal;

/// `aegis demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of calls before the crash, between the two failovers, and after.
    #[arg(long, default_value_t = 3.0)]
    phase: f64,
    /// The leader TTL in seconds: how long a crashed leader's key lives.
    #[arg(long, default_value_t = 2)]
    leader_ttl: u64,
    /// Where to serve the live dashboard during the demo (a free port if this one is taken).
    #[arg(long, value_name = "ADDRESS:PORT", default_value = "127.0.0.1:8686")]
    dashboard: std::net::SocketAddr,
    /// After the report, keep the server, the instances left and the dashboard up until
    /// Ctrl-C, to look around.
    #[arg(long)]
    hold: bool,
}

/// Counts what the client records through the `metrics` facade (the retries).
static RECORDER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
    std::sync::OnceLock::new();

fn recorded_retries() -> u64 {
    let Some(snapshotter) = RECORDER.get() else {
        return 0;
    };
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == aegis_runtime::metrics::RETRIES)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

pub(crate) async fn run(args: Args) -> Result<(), String> {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    if RECORDER.set(recorder.snapshotter()).is_ok() {
        let _ = recorder.install();
    }
    let phase = Duration::try_from_secs_f64(args.phase).map_err(|e| format!("--phase: {e}"))?;
    let leader_ttl = Duration::from_secs(args.leader_ttl.max(1));
    let server = NatsServer::start().await.map_err(|e| e.to_string())?;
    println!(
        "nats-server running at {} (its own, in a temporary directory)",
        server.url()
    );
    let mut group = Group::start(&server.url(), 3, leader_ttl).await?;
    println!("three order_service instances: {}", group.ids().join(", "));
    let dashboard = open_dashboard(group.nats(), args.dashboard).await?;
    println!(
        "dashboard: {} (live while the demo runs{})",
        dashboard.url(),
        if args.hold {
            ", and after it until Ctrl-C"
        } else {
            "; --hold keeps it up after the report"
        }
    );
    let first = group.leader().await?;
    println!("leader: {first}");

    // The generated client with the default retry policy of exclusive methods (NOT_ACTIVE
    // and "no responders" retried until the 5 s deadline). process_order is idempotent, so
    // a call lost in the crash is retried too, after 500 ms without a reply.
    let retry = RetryPolicy {
        attempt_timeout: Some(Duration::from_millis(500)),
        ..RetryPolicy::until_deadline()
    };
    println!(
        "client: deadline 5 s, retries {:?} doubling to {:?}, lost replies retried after {:?}",
        retry.initial_delay,
        retry.max_delay,
        retry.attempt_timeout.unwrap_or_default()
    );
    let client =
        OrderProcessorClient::configured(group.nats().clone(), |c| c.with_retry_policy(retry));
    let started = Instant::now();
    let caller = Caller::start(client);
    progress(&caller, started, phase).await;

    println!("SIGKILL {first} (crash: its key must expire, leader_ttl {leader_ttl:?})");
    let crashed_at = Instant::now();
    group.process(&first).ok_or("no leader process")?.kill();
    let second = group.leader().await?;
    progress(&caller, started, phase).await;

    println!("SIGTERM {second} (graceful: it hands over)");
    let stopped_at = Instant::now();
    group
        .process(&second)
        .ok_or("no leader process")?
        .signal(Signal::SIGTERM);
    // The stopping leader may still answer ACTIVE for a moment (the signal is being
    // handled): the next leader is another instance.
    let handover_by = Instant::now() + Duration::from_secs(15);
    let third = loop {
        let leader = group
            .leader()
            .await
            .map_err(|err| format!("no leader after the graceful stop: {err}"))?;
        if leader != second {
            break leader;
        }
        if Instant::now() > handover_by {
            return Err(format!("{second} still leads 15 s after its SIGTERM"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    progress(&caller, started, phase).await;
    let outcomes = caller.finish().await;

    let crash = first_served_after(&outcomes, &second, crashed_at);
    let graceful = first_served_after(&outcomes, &third, stopped_at);
    report(&outcomes, crash, graceful);
    let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    if args.hold {
        println!(
            "\nholding: dashboard at {} (Ctrl-C to end)",
            dashboard.url()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    if failed > 0 {
        return Err(format!("{failed} calls failed"));
    }
    Ok(())
}

/// The dashboard at `address`, or on a free port when that one is taken.
async fn open_dashboard(
    nats: &async_nats::Client,
    address: std::net::SocketAddr,
) -> Result<Dashboard, String> {
    match Dashboard::bind(nats.clone(), address).await {
        Ok(dashboard) => Ok(dashboard),
        Err(_) => Dashboard::bind(nats.clone(), std::net::SocketAddr::new(address.ip(), 0))
            .await
            .map_err(|err| err.to_string()),
    }
}

/// Prints a line every second for `phase`.
async fn progress(caller: &Caller, started: Instant, phase: Duration) {
    let until = Instant::now() + phase;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
        let (calls, failed, last) = caller.tally();
        println!(
            "  t={:>5.1}s  calls {calls:>6}  failed {failed}  last served by {}",
            started.elapsed().as_secs_f64(),
            last.unwrap_or_else(|| "-".into())
        );
    }
}

/// From `since` to the first call `instance` served.
fn first_served_after(outcomes: &[Outcome], instance: &str, since: Instant) -> Option<Duration> {
    outcomes.iter().find_map(|(at, outcome)| {
        outcome
            .as_ref()
            .ok()
            .filter(|r| r.instance_id == instance && *at >= since)
            .map(|_| at.saturating_duration_since(since))
    })
}

fn report(outcomes: &[Outcome], crash: Option<Duration>, graceful: Option<Duration>) {
    let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    let mut served: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for (_, outcome) in outcomes {
        if let Ok(result) = outcome {
            *served
                .entry((result.term, result.instance_id.clone()))
                .or_default() += 1;
        }
    }
    let retries = recorded_retries();
    println!();
    println!("calls made        {}", outcomes.len());
    println!("succeeded         {}", outcomes.len() - failed);
    println!("failed            {failed}");
    println!("retries           {retries}");
    println!("served by (term, instance):");
    for ((term, instance), count) in served {
        println!("  term {term:>3}  {instance:<12} {count:>6} calls");
    }
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        })
    };
    println!(
        "crash failover    {} (SIGKILL → first call served by the new leader)",
        ms(crash)
    );
    println!(
        "graceful failover {} (SIGTERM → first call served by the new leader)",
        ms(graceful)
    );
}
