//! The instance that `tests/hostile_input.rs` attacks: a service with every kind of
//! handler, as two instances in one process (the first is the leader of the group, the
//! second a standby), serving until it is killed.
//!
//! Run by the test as `aegis-hostile-target --nats nats://127.0.0.1:PORT`; it prints
//! `ready leader=ID standby=ID` once both instances serve. Its handlers take
//! `serde_json::Value` wherever they can, the type whose decoding recurses into anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aegis_runtime::{Event, Progress, ServiceRunner, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request or payload carrying any value.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Anything {
    value: Value,
}

/// Events and commands the handlers completed, in this process (either instance may take
/// them), so the test can see the instances still serving.
static EVENTS: AtomicU64 = AtomicU64::new(0);
static COMMANDS: AtomicU64 = AtomicU64::new(0);

struct Target;

#[service(name = "hostile", version = "1.0.0")]
impl Target {
    /// Any instance answers with what it was sent.
    #[rpc]
    async fn echo(&self, request: Anything) -> Anything {
        request
    }

    /// Only the leader answers with what it was sent.
    #[exclusive_rpc]
    async fn exclusive_echo(&self, request: Anything) -> Anything {
        request
    }

    /// How many events and commands the handlers of this process completed.
    #[rpc]
    async fn handled(&self) -> (u64, u64) {
        (
            EVENTS.load(Ordering::SeqCst),
            COMMANDS.load(Ordering::SeqCst),
        )
    }

    #[subscribe("events.hostile.*")]
    async fn on_event(&self, _event: Event<Anything>) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }

    #[command]
    async fn work(&self, command: Anything, _progress: Progress) -> Anything {
        COMMANDS.fetch_add(1, Ordering::SeqCst);
        command
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let url = match (args.next().as_deref(), args.next()) {
        (Some("--nats"), Some(url)) => url,
        _ => return Err("usage: aegis-hostile-target --nats nats://HOST:PORT".into()),
    };
    let nats = aegis_runtime::ConnectConfig::new(url).connect().await?;
    let runner = |id: &str| {
        ServiceRunner::new(Target)
            .nats(nats.clone())
            .instance_id(id)
    };
    let leader = runner("hostile-leader").start().await?;
    // The second instance starts once the first leads, so the roles are known.
    for _ in 0..500 {
        if leader.leadership().is_active() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !leader.leadership().is_active() {
        return Err("the first instance did not become leader within 5 s".into());
    }
    let standby = runner("hostile-standby").start().await?;
    let ready = format!(
        "ready leader={} standby={}\n",
        leader.instance_id(),
        standby.instance_id()
    );
    std::io::Write::write_all(&mut std::io::stdout(), ready.as_bytes())?;
    std::future::pending::<()>().await;
    Ok(())
}
