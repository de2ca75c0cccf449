//! Measures leader failover: three `order_service` processes, a client with default
//! settings calling the exclusive method all along, and the leader stopped (SIGTERM),
//! crashed (SIGKILL) or frozen (SIGSTOP, thawed a second after the new leader served),
//! several times each. Prints every round, p50/p99/max per kind, failed calls, retries per
//! failover and NOT_ACTIVE replies (read from the client's metrics), and each target of
//! issue 15 as met or not met.
//!
//! Run with: `cargo build --release -p aegis-examples --bins && cargo run --release -p aegis-examples --bin failover_bench`
//! (`--graceful 5 --crash 5 --freeze 1` for a shorter run).

#![allow(clippy::print_stdout)] // a benchmark: its output is the point

use std::time::Duration;

use aegis_examples::failover::{Departure, Group, RegistryTiming, Round};
use aegis_examples::orders::OrderProcessorClient;
use aegis_runtime::metrics::{ATTEMPTS, CALLS, NOT_ACTIVE};
use aegis_runtime::testing::NatsServer;
use clap::Parser;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Leader failover benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Graceful rounds (SIGTERM of the leader).
    #[arg(long, default_value_t = 20)]
    graceful: usize,
    /// Crash rounds (SIGKILL of the leader).
    #[arg(long, default_value_t = 20)]
    crash: usize,
    /// Freeze rounds (SIGSTOP of the leader; default registry settings).
    #[arg(long, default_value_t = 5)]
    freeze: usize,
    /// Rounds of every kind at once (overrides the three above).
    #[arg(long)]
    rounds: Option<usize>,
    /// The leader TTL, in seconds.
    #[arg(long, default_value_t = 2)]
    leader_ttl: u64,
    /// Instances in the group.
    #[arg(long, default_value_t = 3)]
    instances: usize,
}

/// One round with what the client's metrics counted during it.
struct Measured {
    round: Round,
    /// Requests sent beyond one per call.
    retries: u64,
    /// NOT_ACTIVE replies the client received.
    not_active: u64,
}

/// The client's counters since the last snapshot (a snapshot drains them).
fn counters(snapshotter: &Snapshotter) -> (u64, u64, u64) {
    let (mut calls, mut attempts, mut not_active) = (0, 0, 0);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            match key.key().name() {
                CALLS => calls += n,
                ATTEMPTS => attempts += n,
                NOT_ACTIVE => not_active += n,
                _ => {}
            }
        }
    }
    (calls, attempts, not_active)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;

    let (graceful, crash, freeze) = match args.rounds {
        Some(n) => (n, n, n),
        None => (args.graceful, args.crash, args.freeze),
    };
    let leader_ttl = Duration::from_secs(args.leader_ttl.max(1));
    let size = args.instances.max(2);
    println!(
        "leader failover: {size} instances, leader_ttl {leader_ttl:?}, a client with default settings calling an exclusive method every ~5 ms"
    );
    println!(
        "{:8} {:>12} {:>10} {:>10} {:>6} {:>7} {:>8} {:>11}",
        "signal", "failover ms", "gap ms", "terms", "calls", "failed", "retries", "NOT_ACTIVE"
    );
    let mut measured = Vec::new();
    // Graceful and crash rounds: instances with a short registry TTL, as the tests run
    // them. Freeze rounds: the registry defaults, where a frozen instance's entry stays
    // fresh-looking for up to 30 s.
    let plans = [
        (RegistryTiming::Fast, Departure::Graceful, graceful),
        (RegistryTiming::Fast, Departure::Crash, crash),
        (RegistryTiming::Default, Departure::Freeze, freeze),
    ];
    for registry in [RegistryTiming::Fast, RegistryTiming::Default] {
        let kinds: Vec<(Departure, usize)> = plans
            .iter()
            .filter(|(r, _, n)| *r == registry && *n > 0)
            .map(|(_, departure, n)| (*departure, *n))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let server = NatsServer::start().await?;
        let mut group = Group::start_with(&server.url(), size, leader_ttl, registry).await?;
        for (departure, rounds) in kinds {
            for _ in 0..rounds {
                let client = OrderProcessorClient::new(group.nats().clone());
                let _ = counters(&snapshotter);
                let round = group.failover_with(departure, client).await?;
                let (calls, attempts, not_active) = counters(&snapshotter);
                let retries = attempts.saturating_sub(calls);
                print_round(&round, retries, not_active);
                measured.push(Measured {
                    round,
                    retries,
                    not_active,
                });
            }
        }
    }
    println!();
    summarize(&measured, leader_ttl);
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn print_round(round: &Round, retries: u64, not_active: u64) {
    let mut line = format!(
        "{:8} {:>12.1} {:>10.1} {:>10} {:>6} {:>7} {:>8} {:>11}",
        round.departure.to_string(),
        millis(round.failover),
        millis(round.longest_gap),
        format!("{}→{}", round.terms.0, round.terms.1),
        round.calls,
        round.failed.len(),
        retries,
        not_active
    );
    if round.departure == Departure::Freeze {
        let role = round
            .thawed_role
            .map_or_else(|| "no answer".to_owned(), |role| format!("{role:?}"));
        line.push_str(&format!(
            "  thawed: {role}, served after the new leader: {}",
            round.stale_served
        ));
    }
    println!("{line}");
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

/// Prints p50/p99/max per kind and the targets.
fn summarize(measured: &[Measured], leader_ttl: Duration) {
    let mut all_failed = 0;
    let mut most_retries = 0;
    for departure in [Departure::Graceful, Departure::Crash, Departure::Freeze] {
        let rounds: Vec<&Measured> = measured
            .iter()
            .filter(|m| m.round.departure == departure)
            .collect();
        if rounds.is_empty() {
            continue;
        }
        let mut times: Vec<f64> = rounds.iter().map(|m| millis(m.round.failover)).collect();
        times.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            quantile(&times, 0.5),
            quantile(&times, 0.99),
            times[times.len() - 1],
        );
        let failed: usize = rounds.iter().map(|m| m.round.failed.len()).sum();
        let retries: Vec<u64> = rounds.iter().map(|m| m.retries).collect();
        let max_retries = retries.iter().copied().max().unwrap_or_default();
        let not_active: u64 = rounds.iter().map(|m| m.not_active).sum();
        let gap = rounds
            .iter()
            .map(|m| millis(m.round.longest_gap))
            .fold(0.0, f64::max);
        all_failed += failed;
        most_retries = most_retries.max(max_retries);
        println!(
            "{departure}: {} rounds, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms, longest gap between successes {gap:.1} ms, failed calls {failed}, retries per failover max {max_retries} (total {}), NOT_ACTIVE {not_active}",
            rounds.len(),
            retries.iter().sum::<u64>()
        );
        let target = match departure {
            Departure::Graceful => {
                format!("graceful p99 ≤ 10 ms: {} ({p99:.1} ms)", met(p99 <= 10.0))
            }
            Departure::Crash => {
                let bound = millis(leader_ttl) + 100.0;
                format!(
                    "crash max ≤ leader_ttl + 100 ms = {bound:.0} ms: {} ({max:.1} ms)",
                    met(max <= bound)
                )
            }
            Departure::Freeze => {
                let bound = millis(leader_ttl) + 500.0;
                let stale: usize = rounds.iter().map(|m| m.round.stale_served).sum();
                format!(
                    "freeze first success ≤ leader_ttl + 500 ms = {bound:.0} ms: {} ({max:.1} ms); thawed leader served as leader again: {stale} calls",
                    met(max <= bound)
                )
            }
        };
        println!("target {target}");
    }
    println!(
        "target 0 failed calls and ≤ 1 retry per failover: {} ({all_failed} failed, at most {most_retries} retries in a failover)",
        met(all_failed == 0 && most_retries <= 1)
    );
}
