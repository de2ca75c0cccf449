//! Compete and broadcast subscriptions, side by side, over a nats-server this program
//! starts itself.
//!
//! Run with: `cargo run -p aegis-examples --bin events`
//!
//! Three instances of one service subscribe `events.orders.*` in compete mode (each event
//! goes to one of them) and `events.prices.*` in broadcast mode (each goes to all three).

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_runtime::events::EventPublisher;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Event, EventContext, ServiceRunner, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Update {
    id: u32,
}

/// (subscription, instance) → events handled.
type Handled = Arc<Mutex<BTreeMap<(&'static str, String), u32>>>;

#[derive(Clone)]
struct Desk {
    handled: Handled,
}

impl Desk {
    fn count(&self, which: &'static str, ctx: &EventContext) {
        if let Ok(mut handled) = self.handled.lock() {
            *handled
                .entry((which, ctx.instance_id().to_owned()))
                .or_default() += 1;
        }
    }
}

#[service(name = "desk", version = "1.0.0")]
impl Desk {
    /// One instance handles each order event.
    #[subscribe("events.orders.*", mode = "compete")]
    async fn on_order(&self, ctx: &EventContext, _event: Event<Update>) {
        self.count("compete  events.orders.*", ctx);
    }

    /// Every instance handles each price event.
    #[subscribe("events.prices.*", mode = "broadcast")]
    async fn on_price(&self, ctx: &EventContext, _event: Event<Update>) {
        self.count("broadcast events.prices.*", ctx);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = NatsServer::start().await?;
    let handled: Handled = Arc::default();
    let mut instances = Vec::new();
    for n in 1..=3 {
        let desk = Desk {
            handled: handled.clone(),
        };
        let runner = ServiceRunner::new(desk)
            .nats(server.connect().await?)
            .instance_id(format!("desk-{n}"));
        instances.push(runner.start().await?);
    }
    let events = EventPublisher::new(server.connect().await?).with_source("example");
    for id in 0..30 {
        events.publish("orders", "created", &Update { id }).await?;
        events.publish("prices", "changed", &Update { id }).await?;
    }
    let expected = 30 + 30 * 3;
    for _ in 0..100 {
        let total: u32 = handled.lock().map(|h| h.values().sum()).unwrap_or_default();
        if total >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("30 order events and 30 price events, 3 instances:");
    if let Ok(handled) = handled.lock() {
        for ((which, instance), count) in handled.iter() {
            println!("  {which:<28} {instance}: {count:>3}");
        }
    }
    for instance in instances {
        instance.stop().await;
    }
    Ok(())
}
