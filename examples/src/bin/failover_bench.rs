//! Measures leader failover: three `order_service` processes, a client calling the
//! exclusive method all along, and the leader stopped (SIGTERM) or crashed (SIGKILL),
//! several times each. Prints every round and a summary.
//!
//! Run with: `cargo build -p aegis-examples --bins && cargo run --release -p aegis-examples --bin failover_bench -- --rounds 5`

#![allow(clippy::print_stdout)] // a benchmark: its output is the point

use std::time::Duration;

use aegis_examples::failover::{Departure, Group, Round};
use aegis_runtime::testing::NatsServer;
use clap::Parser;

/// Leader failover benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds per kind of departure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The leader TTL, in seconds.
    #[arg(long, default_value_t = 2)]
    leader_ttl: u64,
    /// Instances in the group.
    #[arg(long, default_value_t = 3)]
    instances: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let leader_ttl = Duration::from_secs(args.leader_ttl.max(1));
    let server = NatsServer::start().await?;
    let mut group = Group::start(&server.url(), args.instances.max(2), leader_ttl).await?;
    println!(
        "leader failover: {} instances, leader_ttl {leader_ttl:?}, a client calling an exclusive method every ~5 ms",
        args.instances.max(2)
    );
    println!(
        "{:8} {:>12} {:>10} {:>8} {:>7}",
        "signal", "failover ms", "terms", "calls", "failed"
    );
    let mut rounds: Vec<Round> = Vec::new();
    for departure in std::iter::repeat_n(Departure::Graceful, args.rounds)
        .chain(std::iter::repeat_n(Departure::Crash, args.rounds))
    {
        let round = group.failover(departure).await?;
        println!(
            "{:8} {:>12.1} {:>10} {:>8} {:>7}",
            round.departure.to_string(),
            round.failover.as_secs_f64() * 1000.0,
            format!("{}→{}", round.terms.0, round.terms.1),
            round.calls,
            round.failed.len()
        );
        rounds.push(round);
    }
    println!();
    for departure in [Departure::Graceful, Departure::Crash] {
        let mut times: Vec<f64> = rounds
            .iter()
            .filter(|r| r.departure == departure)
            .map(|r| r.failover.as_secs_f64() * 1000.0)
            .collect();
        times.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (times.first(), times.last()) {
            let median = times[times.len() / 2];
            let failed: usize = rounds
                .iter()
                .filter(|r| r.departure == departure)
                .map(|r| r.failed.len())
                .sum();
            println!(
                "{departure}: min {min:.1} ms, median {median:.1} ms, max {max:.1} ms, failed calls {failed}"
            );
        }
    }
    Ok(())
}
