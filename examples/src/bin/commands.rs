//! A command with progress, over a nats-server this program starts itself.
//!
//! Run with: `cargo run -p aegis-examples --bin commands`
//!
//! An order processor instance takes a `reindex` command from the `COMMANDS` work queue and
//! reports its progress; the client follows it and prints the result, then sends one that
//! fails, and one that runs longer than its timeout.

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::time::Duration;

use aegis_examples::orders::{OrderProcessor, OrderProcessorClient, Reindex};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{CommandOptions, ServiceRunner};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = NatsServer::start().await?;
    let instance = ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await?)
        .start()
        .await?;
    let client = OrderProcessorClient::new(server.connect().await?);

    let mut handle = client
        .start_reindex(Reindex { orders: 200 }, CommandOptions::default())
        .await?;
    while let Some(update) = handle.next_progress().await {
        println!("progress {:>5.1}%  {}", update.progress, update.status);
    }
    println!("done: {:?}", handle.outcome().await?);

    let failing = CommandOptions {
        max_retries: 0,
        ..CommandOptions::default()
    };
    match client
        .start_reindex(Reindex { orders: 0 }, failing)
        .await?
        .outcome()
        .await
    {
        Ok(done) => println!("unexpectedly done: {done:?}"),
        Err(err) => println!("failed, as it should: {err}"),
    }

    let short = CommandOptions {
        timeout: Duration::from_millis(200),
        max_retries: 0,
        ..CommandOptions::default()
    };
    match client
        .start_reindex(Reindex { orders: 5000 }, short)
        .await?
        .outcome()
        .await
    {
        Ok(done) => println!("unexpectedly done: {done:?}"),
        Err(err) => println!("timed out, as it should: {err}"),
    }
    instance.stop().await;
    Ok(())
}
