//! Real nats-servers for tests, examples and the demo (feature `testing`).
//!
//! [`NatsServer`] starts one server with JetStream on `127.0.0.1`, a free port and a
//! temporary store, waits until it accepts connections and kills it on drop. [`NatsCluster`]
//! starts three joined by routes. No mock: what a test checks is what a user's server does.
//!
//! The binary is found from `$AEGIS_NATS_SERVER`, then the repository's `.tools/` folder
//! (where `scripts/install-nats-server` puts it), then `PATH`; it must be nats-server 2.11
//! or newer (per-message TTL).

mod binary;
mod cluster;
mod server;
mod signal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use binary::{BINARY_ENV, MIN_VERSION};
pub use cluster::NatsCluster;
pub use server::{NatsServer, NatsServerBuilder};
pub use signal::send_signal;

/// Why a test server could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No nats-server binary was found.
    #[error("nats-server was not found (looked at: {}); to fix it, {}", searched.join(", "), binary::INSTALL_HINT)]
    NotFound {
        /// The paths that were tried.
        searched: Vec<String>,
    },
    /// The binary found is older than 2.11 or did not report a version.
    #[error(
        "{binary:?} is nats-server {version}, but Aegis needs >= 2.11 (per-message TTL); to fix it, {}",
        binary::INSTALL_HINT
    )]
    TooOld {
        /// The binary.
        binary: PathBuf,
        /// What it reported.
        version: String,
    },
    /// The binary could not be run.
    #[error("cannot run {binary:?}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// The server exited while starting.
    #[error("nats-server exited while starting; its log:\n{log}")]
    Exited {
        /// The server's log.
        log: String,
    },
    /// The server did not become ready in time.
    #[error("nats-server was not ready after {timeout:?}; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// The server's log.
        log: String,
    },
    /// A file system operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
}

impl ServerError {
    fn io(action: &'static str, source: std::io::Error) -> Self {
        ServerError::Io {
            action,
            source: Arc::new(source),
        }
    }
}
