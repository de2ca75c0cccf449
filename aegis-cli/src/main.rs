//! `aegis`: the failover demo, and a look into the services running on a NATS server.
//!
//! Run with: `cargo run -p aegis-cli --bin aegis -- demo` (or `scripts/demo`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: printing is its job

mod asyncapi;
mod call;
mod dashboard;
mod demo;
mod error;
mod output;
mod registry;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use aegis_runtime::connect::NatsArgs;
use clap::{Parser, Subcommand};

use error::{CliError, EXIT_CODES_HELP, Exit};
use output::Format;

/// Aegis services on NATS: run the failover demo, or look into running services.
#[derive(Debug, Parser)]
#[command(name = "aegis", version, after_help = EXIT_CODES_HELP)]
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
    #[command(after_help = EXIT_CODES_HELP)]
    Services {
        #[command(flatten)]
        format: Format,
    },
    /// Lists the instances of a service: version, status, role, heartbeat age; an instance
    /// whose last heartbeat is older than its registry TTL is STALE (it is gone).
    #[command(after_help = EXIT_CODES_HELP)]
    Instances {
        /// The service.
        service: String,
        #[command(flatten)]
        format: Format,
    },
    /// Shows the leader of a service's group and its term.
    #[command(after_help = EXIT_CODES_HELP)]
    Leader {
        /// The service.
        service: String,
        /// The sticky-active group.
        #[arg(long, default_value = "default")]
        group: String,
        #[command(flatten)]
        format: Format,
    },
    /// Prints registry and leader changes of a service as they happen.
    #[command(after_help = EXIT_CODES_HELP)]
    Watch {
        /// The service.
        service: String,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        duration: Option<f64>,
        #[command(flatten)]
        format: Format,
    },
    /// Calls a method with JSON parameters and prints the result. Exclusive methods are
    /// recognised from the service's own `$SRV.INFO` answer.
    #[command(after_help = EXIT_CODES_HELP)]
    Call(call::Args),
    /// Serves a live web page of the services: instances, leaders and terms, per-endpoint
    /// counters, and an event log pushed as the registry and the election change; with a
    /// JSON API beside it (`/api/services`, `/api/services/{name}`).
    #[command(after_help = EXIT_CODES_HELP)]
    Dashboard(dashboard::Args),
    /// Prints the AsyncAPI 3.0 document of a running service (from its built-in
    /// `aegis_describe`): its RPC, event and command channels, messages and schemas.
    #[command(after_help = EXIT_CODES_HELP)]
    Asyncapi(asyncapi::Args),
    /// Prints the JSON Schemas of a running service's methods.
    #[command(after_help = EXIT_CODES_HELP)]
    Schema {
        /// The service.
        service: String,
        #[command(flatten)]
        format: Format,
    },
}

impl Command {
    /// Whether the command prints JSON.
    fn json(&self) -> bool {
        match self {
            // `asyncapi` prints JSON, but its failures as text: it has no `--json`.
            Self::Demo(_) | Self::Dashboard(_) | Self::Asyncapi(_) => false,
            Self::Call(args) => args.format().json,
            Self::Services { format }
            | Self::Instances { format, .. }
            | Self::Leader { format, .. }
            | Self::Watch { format, .. }
            | Self::Schema { format, .. } => format.json,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person reading a terminal, never into a pipe or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,async_nats=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let json = cli.command.json();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args).await.map_err(CliError::Demo),
        command => inspect(&cli.nats, command).await,
    };
    match outcome {
        Ok(()) => Exit::Success.into(),
        Err(err) => {
            if json {
                // A script reading stdout gets one JSON value, a failure too; a closed
                // stdout leaves the message on stderr.
                let _ = output::json(&err.to_json());
            }
            eprintln!("error: {err}");
            err.exit().into()
        }
    }
}

/// Connects and runs one of the inspecting commands. An operation the server refuses
/// (async-nats only tells the connection's event callback; the operation itself goes
/// unanswered) ends the command at once, with the server's words.
async fn inspect(nats: &NatsArgs, command: Command) -> Result<(), CliError> {
    let (nats, mut refused) = nats.config().connect_observed().await?;
    let work = async {
        match command {
            Command::Services { format } => registry::services(&nats, format).await,
            Command::Instances { service, format } => {
                registry::instances(&nats, &service, format).await
            }
            Command::Leader {
                service,
                group,
                format,
            } => registry::leader(&nats, &service, &group, format).await,
            Command::Watch {
                service,
                duration,
                format,
            } => {
                let duration = duration
                    .map(|seconds| {
                        Duration::try_from_secs_f64(seconds).map_err(|_| CliError::BadSeconds {
                            flag: "--for",
                            value: seconds,
                        })
                    })
                    .transpose()?;
                registry::watch(&nats, &service, duration, format).await
            }
            Command::Call(args) => call::run(&nats, args).await,
            Command::Schema { service, format } => call::schema(&nats, &service, format).await,
            Command::Asyncapi(args) => asyncapi::run(&nats, args).await,
            Command::Dashboard(args) => dashboard::run(&nats, args).await,
            // Handled by `main` (it needs no connection); kept whole here all the same.
            Command::Demo(args) => demo::run(args).await.map_err(CliError::Demo),
        }
    };
    tokio::select! {
        outcome = work => outcome,
        violation = refused.next() => Err(CliError::PermissionDenied { violation }),
    }
}
