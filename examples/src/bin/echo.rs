//! An echo service and a client, over a nats-server this program starts itself.
//!
//! Run with: `cargo run -p aegis-examples --bin echo`
//!
//! Two instances of the `echo` service serve `rpc.echo.say` in one queue group, so NATS
//! spreads the calls over them; the generated `EchoClient` sends Aegis RPC envelopes
//! (MessagePack, the Python SDK's format) and the program prints who answered.

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::time::Instant;

use aegis_examples::echo::{Echo, EchoClient, Say};
use aegis_runtime::ServiceRunner;
use aegis_runtime::testing::NatsServer;

/// What the client sends.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    aegis_examples::init_logging();

    let server = NatsServer::start().await?;
    println!(
        "nats-server {} running at {}",
        server.pid().unwrap_or_default(),
        server.url()
    );

    let mut instances = Vec::new();
    for _ in 0..2 {
        let nats = server.connect().await?;
        instances.push(ServiceRunner::new(Echo).nats(nats).start().await?);
    }

    let client = EchoClient::new(server.connect().await?);
    for text in ["hello", "from", "aegis", "over", "nats", "!"] {
        let started = Instant::now();
        let echoed = client.say(Say { text: text.into() }).await?;
        println!(
            "say {text:>6} -> {:>6} from {} in {:?}",
            echoed.text,
            echoed.instance_id,
            started.elapsed()
        );
    }
    match client
        .say(Say {
            text: String::new(),
        })
        .await
    {
        Ok(echoed) => println!("say {:>6} -> unexpectedly answered {echoed:?}", "\"\""),
        Err(err) => println!("say {:>6} -> error, as it should: {err}", "\"\""),
    }

    for instance in instances {
        instance.stop().await;
    }
    println!("done; stopping nats-server");
    Ok(())
}
