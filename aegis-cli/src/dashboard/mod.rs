//! `aegis dashboard`: one web page with the services on a NATS server, live.
//!
//! Services, their instances (status, role, version, heartbeat age, stale ones marked),
//! the leader and term of each group, per-endpoint counters from each instance's
//! `$SRV.STATS`, and an event log (instance joined/left, leader elected/lost) pushed to
//! the page over Server-Sent Events as the registry and election watches report changes.
//! A JSON API beside it: `/api/services`, `/api/services/{name}`.

mod api;
mod live;
mod stats;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::CliError;
use crate::output;

/// `aegis dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to serve the page and its API (port 0: any free port; the URL is printed).
    #[arg(long, value_name = "ADDRESS:PORT", default_value = "127.0.0.1:8686")]
    listen: SocketAddr,
}

/// A running dashboard; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Dashboard {
    url: String,
    tasks: JoinSet<()>,
}

impl Dashboard {
    /// Serves the dashboard of `nats`'s services on `listener`.
    pub(crate) fn start(nats: async_nats::Client, listener: TcpListener) -> Result<Self, CliError> {
        let address = listener.local_addr().map_err(|source| CliError::Listen {
            address: None,
            source,
        })?;
        let (live, mut tasks) = live::Live::start(nats.clone());
        let app = api::router(nats, live);
        tasks.spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "the dashboard's server stopped");
            }
        });
        Ok(Self {
            url: format!("http://{address}/"),
            tasks,
        })
    }

    /// Binds `address` and serves there.
    pub(crate) async fn bind(
        nats: async_nats::Client,
        address: SocketAddr,
    ) -> Result<Self, CliError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| CliError::Listen {
                address: Some(address),
                source,
            })?;
        Self::start(nats, listener)
    }

    /// The page's address.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Until the server stops (it does not, short of a failure).
    async fn serve(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// `aegis dashboard`: serves until Ctrl-C.
pub(crate) async fn run(nats: &async_nats::Client, args: Args) -> Result<(), CliError> {
    let dashboard = Dashboard::bind(nats.clone(), args.listen).await?;
    output::line(format_args!("dashboard: {}", dashboard.url()))?;
    tokio::select! {
        () = dashboard.serve() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
