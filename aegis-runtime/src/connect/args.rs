//! The connection flags shared by the `aegis` command and the examples, with the
//! conventional environment variables as fallbacks.

use std::path::PathBuf;

use super::{ConnectConfig, Nkey, Secret};

/// NATS connection flags: flatten into a clap parser with `#[command(flatten)]`.
///
/// Every flag falls back to its environment variable; secret variables are never shown in
/// `--help`, and `Debug` redacts the secrets.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "NATS connection")]
pub struct NatsArgs {
    /// NATS server URL(s): repeat the flag or separate with commas (nats://, tls://).
    /// Credentials inside a URL are used, and never shown.
    #[arg(
        long = "server",
        short = 's',
        visible_alias = "nats",
        env = "NATS_URL",
        // A URL may hold credentials: `--help` must not print the variable's value.
        hide_env_values = true,
        value_name = "URL",
        default_value = super::DEFAULT_SERVER,
        global = true
    )]
    servers: Vec<String>,
    /// User name (with --password).
    #[arg(long, env = "NATS_USER", global = true)]
    user: Option<String>,
    /// Password (with --user). Prefer NATS_PASSWORD: a flag shows in the process list.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, global = true)]
    password: Option<Secret>,
    /// Authentication token. Prefer NATS_TOKEN: a flag shows in the process list.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, global = true)]
    token: Option<Secret>,
    /// Nkey seed file (or the seed itself, `SU…`).
    #[arg(
        long,
        env = "NATS_NKEY",
        hide_env_values = true,
        value_name = "FILE",
        global = true
    )]
    nkey: Option<String>,
    /// Creds file (user JWT and seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE", global = true)]
    creds: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the server's certificate; implies TLS.
    #[arg(long, env = "NATS_CA", value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --tls-key; implies TLS.
    #[arg(long, env = "NATS_CERT", value_name = "FILE", global = true)]
    tls_cert: Option<PathBuf>,
    /// Client certificate key (PEM), with --tls-cert.
    #[arg(long, env = "NATS_KEY", value_name = "FILE", global = true)]
    tls_key: Option<PathBuf>,
    /// Require TLS (with the system's roots when no --tls-ca is given).
    #[arg(long, global = true)]
    tls: bool,
    /// Start TLS before the server's greeting (servers with `handshake_first`).
    #[arg(long, global = true)]
    tls_first: bool,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Through the config's `Debug`: a server URL may hold credentials.
        f.debug_tuple("NatsArgs").field(&self.config()).finish()
    }
}

impl NatsArgs {
    /// The connection config these flags describe.
    pub fn config(&self) -> ConnectConfig {
        ConnectConfig {
            servers: self.servers.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey: self.nkey.clone().map(Nkey::from_value),
            creds: self.creds.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            require_tls: self.tls,
            tls_first: self.tls_first,
            ..ConnectConfig::default()
        }
    }

    /// Connects as [`ConnectConfig::connect`].
    ///
    /// # Errors
    /// As [`ConnectConfig::connect`].
    pub async fn connect(&self) -> Result<async_nats::Client, super::ConnectError> {
        self.config().connect().await
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    #[test]
    fn repeated_and_aliased_server_flags_add_up_and_debug_redacts() {
        let cli = Cli::try_parse_from([
            "x",
            "--server",
            "nats://u:urlpass@a:1",
            "--nats",
            "nats://b:2,nats://c:3",
            "--user",
            "svc",
            "--password",
            "hunter2",
        ])
        .expect("parse");
        let config = cli.nats.config();
        assert_eq!(config.servers_shown(), "nats://a:1,nats://b:2,nats://c:3");
        for shown in [format!("{cli:?}"), format!("{config:?}")] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("urlpass"),
                "{shown}"
            );
        }
    }
}
