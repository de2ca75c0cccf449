//! `aegis`: the failover demo, and a look into the services running on a NATS server.
//!
//! Run with: `cargo run -p aegis-cli --bin aegis -- demo` (or `scripts/demo`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: printing is its job

mod call;
mod demo;
mod registry;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Aegis services on NATS: run the failover demo, or look into running services.
#[derive(Debug, Parser)]
#[command(name = "aegis", version)]
struct Cli {
    /// The NATS server (not used by `demo`, which starts its own).
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    server: String,
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
        command => match connect(&cli.server).await {
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

/// Connects to `url`, failing fast with a clear message when nothing answers there.
async fn connect(url: &str) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .retry_on_initial_connect();
    let connecting = async_nats::connect_with_options(url, options);
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(nats)) => {
            // `retry_on_initial_connect` returns at once: wait until it is really connected.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while nats.connection_state() != async_nats::connection::State::Connected {
                if tokio::time::Instant::now() > deadline {
                    return Err(unreachable_server(url));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(nats)
        }
        _ => Err(unreachable_server(url)),
    }
}

fn unreachable_server(url: &str) -> String {
    format!(
        "cannot reach a NATS server at {url}; start one, or point to yours with --server or NATS_URL"
    )
}
