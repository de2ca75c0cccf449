//! `aegis`: the failover demo, and a look into the services running on a NATS server.
//!
//! Run with: `cargo run -p aegis-cli --bin aegis -- demo` (or `scripts/demo`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: printing is its job

mod call;
mod demo;
mod registry;

use std::process::ExitCode;
use std::time::Duration;

use aegis_runtime::connect::NatsArgs;
use clap::{Parser, Subcommand};

/// Aegis services on NATS: run the failover demo, or look into running services.
#[derive(Debug, Parser)]
#[command(name = "aegis", version)]
struct Cli {
    /// How to connect to NATS (not used by `demo`, which starts its own server).
    #[command(flatten)]
    nats: NatsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts nats-server, three order_service instances and a client calling all along;
    /// kills the leader (SIGKILL), then stops the next one (SIGTERM); prints what happened.
    Demo(demo::Args),
    /// Lists the services in the registry, with their instance counts.
    Services,
    /// Lists the instances of a service: version, status, role, heartbeat age.
    Instances {
        /// The service.
        service: String,
    },
    /// Shows the leader of a service's group and its term.
    Leader {
        /// The service.
        service: String,
        /// The sticky-active group.
        #[arg(long, default_value = "default")]
        group: String,
    },
    /// Prints registry and leader changes of a service as they happen.
    Watch {
        /// The service.
        service: String,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        duration: Option<f64>,
    },
    /// Calls a method with JSON parameters and prints the result.
    Call(call::Args),
    /// Prints the JSON Schemas of a running service's methods.
    Schema {
        /// The service.
        service: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,async_nats=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        command => match cli.nats.connect().await.map_err(|err| err.to_string()) {
            Ok(nats) => match command {
                Command::Services => registry::services(&nats).await,
                Command::Instances { service } => registry::instances(&nats, &service).await,
                Command::Leader { service, group } => {
                    registry::leader(&nats, &service, &group).await
                }
                Command::Watch { service, duration } => {
                    registry::watch(&nats, &service, duration.map(Duration::from_secs_f64)).await
                }
                Command::Call(args) => call::run(&nats, args).await,
                Command::Schema { service } => call::schema(&nats, &service).await,
                Command::Demo(_) => unreachable!("handled above"),
            },
            Err(err) => Err(err),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
