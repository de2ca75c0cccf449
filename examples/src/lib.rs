//! Services shared by the example binaries and the integration tests.

pub mod echo;
pub mod failover;
pub mod orders;
pub mod process;
pub mod scale;

/// Sends the program's logs to stderr, at `info` (`async_nats` at `warn`) unless `RUST_LOG`
/// says otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .init();
}
