//! Calls the echo service and prints which instance answered each call.
//!
//! Run with: `cargo run -p aegis-examples --bin echo_client -- --nats nats://127.0.0.1:4222 --selection round-robin`
//!
//! Start two or three `echo_service` first. `--selection` picks how the client chooses an
//! instance among those discovery (a live watch of the registry) lists: `round-robin`,
//! `random`, or `sticky:{instance id}`.

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::collections::BTreeMap;
use std::time::Duration;

use aegis_examples::echo::{EchoClient, Say};
use aegis_runtime::client::Selection;
use aegis_runtime::connect::NatsArgs;
use aegis_runtime::subject::InstanceId;
use clap::Parser;

/// Calls the echo service.
#[derive(Debug, Parser)]
struct Args {
    /// How to connect to NATS: `--nats`/`--server`, `--user`, `--creds`, `--tls-ca`, ... (or
    /// the NATS_* environment variables).
    #[command(flatten)]
    nats: NatsArgs,
    /// How many calls to make.
    #[arg(long, default_value_t = 12)]
    calls: u32,
    /// `round-robin`, `random` or `sticky:{instance id}`.
    #[arg(long, default_value = "round-robin", value_parser = parse_selection)]
    selection: Selection,
}

fn parse_selection(text: &str) -> Result<Selection, String> {
    match text {
        "round-robin" => Ok(Selection::RoundRobin),
        "random" => Ok(Selection::Random),
        _ => match text.strip_prefix("sticky:") {
            Some(id) => InstanceId::new(id)
                .map(Selection::Sticky)
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "{text:?}: expected round-robin, random or sticky:{{instance id}}"
            )),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let nats = args.nats.connect().await?;
    let selection = args.selection.clone();
    let client = EchoClient::configured(nats, |c| {
        c.with_selection(selection)
            .with_timeout(Duration::from_secs(2))
    });
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for n in 1..=args.calls {
        let echoed = client
            .say(Say {
                text: format!("hello #{n}"),
            })
            .await?;
        println!("{} <- {}", echoed.text, echoed.instance_id);
        *served.entry(echoed.instance_id).or_default() += 1;
    }
    println!("served by {served:?} ({:?})", args.selection);
    Ok(())
}
