//! The instance that `tests/schedules.rs` runs three of: a service with an exclusive and an
//! every-instance schedule, each firing every 200 ms, that reports every run it makes.
//!
//! Run as `aegis-schedule-target --nats nats://127.0.0.1:PORT --instance ID`; it prints
//! `ready ID` once it serves. Each run publishes one JSON [`LedgerEntry`] on the core
//! subject `ledger.ticker` (a plain publish: it does not depend on the schedule's own
//! machinery), so the test keeps a ledger of (schedule, instance, term, tick).

#![allow(clippy::print_stdout)] // `ready` tells the parent process it serves

use std::time::{Duration, UNIX_EPOCH};

use aegis_runtime::{ScheduleContext, ServiceRunner, service};
use serde::Serialize;

/// One run, as the test's ledger records it.
#[derive(Debug, Serialize)]
struct LedgerEntry<'a> {
    schedule: &'a str,
    instance: &'a str,
    term: Option<u64>,
    /// The tick, in milliseconds since the Unix epoch.
    tick_ms: u128,
}

struct Ticker {
    nats: async_nats::Client,
}

impl Ticker {
    async fn record(&self, ctx: &ScheduleContext) {
        let entry = LedgerEntry {
            schedule: ctx.schedule(),
            instance: ctx.instance_id(),
            term: ctx.term(),
            tick_ms: ctx
                .scheduled_at()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        };
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        if let Err(err) = self.nats.publish("ledger.ticker", body.into()).await {
            tracing::warn!(%err, "cannot record a run");
        }
    }
}

#[service(name = "ticker", version = "1.0.0")]
impl Ticker {
    /// Only the leader of the group runs it.
    #[schedule(every = "200ms")]
    async fn leader_tick(&self, ctx: &ScheduleContext) {
        self.record(ctx).await;
    }

    /// Every instance runs it.
    #[schedule(every = "200ms", mode = "every_instance")]
    async fn local_tick(&self, ctx: &ScheduleContext) {
        self.record(ctx).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, id) = match args.as_slice() {
        [nats, url, instance, id] if nats == "--nats" && instance == "--instance" => (url, id),
        _ => {
            return Err(
                "usage: aegis-schedule-target --nats nats://HOST:PORT --instance ID".into(),
            );
        }
    };
    let nats = aegis_runtime::ConnectConfig::new(url.as_str())
        .connect()
        .await?;
    let running = ServiceRunner::new(Ticker { nats: nats.clone() })
        .nats(nats)
        .instance_id(id.as_str())
        .leader_ttl(Duration::from_secs(2))
        .registry_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(500))
        .start()
        .await?;
    println!("ready {}", running.instance_id());
    running.stop_on_signal().await;
    Ok(())
}
