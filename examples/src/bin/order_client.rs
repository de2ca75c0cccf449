//! Calls the order processor's exclusive method and prints which instance served each
//! call and under which fencing term.
//!
//! Run with: `cargo run -p aegis-examples --bin order_client -- --nats nats://127.0.0.1:4222 --calls 100`
//!
//! Start two or three `order_service` first, then kill the leader while this runs: the calls
//! pause for about one leader TTL and go on with the new leader under a higher term; none
//! fails.

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::time::{Duration, Instant};

use aegis_examples::orders::{OrderProcessorClient, OrderRequest};
use aegis_runtime::RetryPolicy;
use aegis_runtime::connect::NatsArgs;
use clap::Parser;

/// Calls `process_order` in a loop.
#[derive(Debug, Parser)]
struct Args {
    /// How to connect to NATS: `--nats`/`--server`, `--user`, `--creds`, `--tls-ca`, ... (or
    /// the NATS_* environment variables).
    #[command(flatten)]
    nats: NatsArgs,
    /// How many calls to make.
    #[arg(long, default_value_t = 20)]
    calls: u32,
    /// Milliseconds between calls.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let nats = args.nats.connect().await?;
    // Exclusive calls retry NOT_ACTIVE and "no responders" until the deadline; the method
    // is idempotent, so a reply lost with a crashed leader is retried after 500 ms.
    let retry = RetryPolicy {
        attempt_timeout: Some(Duration::from_millis(500)),
        ..RetryPolicy::until_deadline()
    };
    let client = OrderProcessorClient::configured(nats, |c| {
        c.with_retry_policy(retry)
            .with_timeout(Duration::from_secs(5))
    });
    for n in 1..=args.calls {
        let started = Instant::now();
        let order = OrderRequest {
            order_id: format!("ORD-{n}"),
            amount: 10.0,
        };
        match client.process_order(order).await {
            Ok(done) => println!(
                "{} served by {} under term {} in {:?}",
                done.order_id,
                done.instance_id,
                done.term,
                started.elapsed()
            ),
            Err(err) => println!("ORD-{n} failed: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    Ok(())
}
