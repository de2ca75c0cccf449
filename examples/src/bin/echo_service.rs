//! One instance of the echo service, as its own process.
//!
//! Run with: `cargo run -p aegis-examples --bin echo_service -- --nats nats://127.0.0.1:4222`
//!
//! Start several; `echo_client` spreads its calls over them. Prints `ready {instance id}`
//! once it serves; stops gracefully on SIGINT or SIGTERM (a second signal exits at once).

#![allow(clippy::print_stdout)] // an example: `ready` tells a parent process it serves

use std::time::Duration;

use aegis_examples::echo::Echo;
use aegis_runtime::ServiceRunner;
use aegis_runtime::connect::NatsArgs;
use clap::Parser;

/// One instance of the echo service.
#[derive(Debug, Parser)]
struct Args {
    /// How to connect to NATS: `--nats`/`--server`, `--user`, `--creds`, `--tls-ca`, ... (or
    /// the NATS_* environment variables).
    #[command(flatten)]
    nats: NatsArgs,
    /// The instance id (default: `echo-{8 hex digits}`).
    #[arg(long)]
    instance: Option<String>,
    /// Milliseconds a stop waits for calls in flight before it gives up on them.
    #[arg(long, default_value_t = 30_000)]
    drain_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    aegis_examples::init_logging();
    let args = Args::parse();
    let mut runner = ServiceRunner::new(Echo)
        .connect_with(args.nats.config())
        .drain_timeout(Duration::from_millis(args.drain_timeout_ms));
    if let Some(instance) = args.instance {
        runner = runner.instance_id(instance);
    }
    let running = runner.start().await?;
    println!("ready {}", running.instance_id());
    running.stop_on_signal().await;
    Ok(())
}
