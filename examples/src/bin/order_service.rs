//! One instance of the order processor, as its own process.
//!
//! Run with: `cargo run -p aegis-examples --bin order_service -- --nats nats://127.0.0.1:4222`
//!
//! It serves until SIGINT or SIGTERM, then stops gracefully (answers calls in flight,
//! leaves the registry); a second signal exits at once. Once it serves, it prints
//! `ready {instance id}` on stdout, so a parent process (the demo, the tests) knows when to
//! go on.

#![allow(clippy::print_stdout)] // an example: `ready` tells the parent process it serves

use std::time::Duration;

use aegis_examples::orders::OrderProcessor;
use aegis_runtime::ServiceRunner;
use aegis_runtime::connect::NatsArgs;
use clap::Parser;

/// One instance of the order processor.
#[derive(Debug, Parser)]
struct Args {
    /// How to connect to NATS: `--nats`/`--server`, `--user`, `--creds`, `--tls-ca`, ... (or
    /// the NATS_* environment variables).
    #[command(flatten)]
    nats: NatsArgs,
    /// The instance id (default: `order-processor-{8 hex digits}`).
    #[arg(long)]
    instance: Option<String>,
    /// Seconds the registry keeps the entry without a heartbeat.
    #[arg(long, default_value_t = 30)]
    registry_ttl: u64,
    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// Seconds the leader key lives without a renewal.
    #[arg(long, default_value_t = 2)]
    leader_ttl: u64,
    /// Append every processed order to this file (`{term} {instance} {order}`).
    #[arg(long)]
    ledger: Option<std::path::PathBuf>,
    /// Milliseconds a stop waits for calls in flight before it gives up on them.
    #[arg(long, default_value_t = 30_000)]
    drain_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    aegis_examples::init_logging();
    let args = Args::parse();
    let service = match &args.ledger {
        Some(path) => OrderProcessor::with_ledger(path)?,
        None => OrderProcessor::default(),
    };
    let mut runner = ServiceRunner::new(service)
        .leader_ttl(Duration::from_secs(args.leader_ttl))
        .connect_with(args.nats.config())
        .registry_ttl(Duration::from_secs(args.registry_ttl))
        .heartbeat_interval(Duration::from_millis(args.heartbeat_ms))
        .drain_timeout(Duration::from_millis(args.drain_timeout_ms));
    if let Some(instance) = args.instance {
        runner = runner.instance_id(instance);
    }
    let running = runner.start().await?;
    println!("ready {}", running.instance_id());
    running.stop_on_signal().await;
    Ok(())
}
