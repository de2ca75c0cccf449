//! One way to connect to NATS, shared by the runner, the clients, the `aegis` command and the
//! examples: a server list, one authentication method (user and password, token, nkey seed
//! or creds file) and TLS (a custom CA, a client certificate, TLS-first).
//!
//! A [`ConnectConfig`] is built in code, from the conventional environment variables
//! ([`ConnectConfig::from_env`]) or from command-line flags (`NatsArgs`, feature `cli`).
//! Credentials never show: the config's `Debug` redacts them, URLs in messages lose their
//! userinfo, and [`ConnectError`] says what failed (authentication rejected, TLS, unreachable,
//! a bad file) from what the server and the client reported.
//!
//! ```no_run
//! use aegis_runtime::connect::ConnectConfig;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let nats = ConnectConfig::new("nats://10.0.0.1:4222,nats://10.0.0.2:4222")
//!     .creds_file("/etc/aegis/orders.creds")
//!     .tls_ca("/etc/aegis/ca.pem")
//!     .connect()
//!     .await?;
//! # drop(nats);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "cli")]
mod args;
mod env;
mod error;
mod events;
mod refused;
mod secret;
mod servers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "cli")]
pub use args::NatsArgs;
pub use error::ConnectError;
pub use refused::RefusedOperations;
pub use secret::Secret;

/// The server used when none is given.
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";
/// How long one connection attempt to one server may take.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an nkey seed comes from.
#[derive(Clone, Debug)]
enum Nkey {
    /// The seed itself.
    Seed(Secret),
    /// A file holding the seed (preferred: a value shows in the process list).
    File(PathBuf),
}

impl Nkey {
    /// A seed if `value` looks like one (`S…`, 58 characters), else a file path.
    fn from_value(value: String) -> Self {
        let looks_like_seed = value.len() == 58
            && value.starts_with('S')
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if looks_like_seed {
            Self::Seed(Secret::new(value))
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

/// How to connect to NATS: servers, authentication, TLS. Build it, then [`connect`].
///
/// At most one authentication method may be set (user and password, token, nkey, creds
/// file, or credentials inside a server URL); [`connect`] fails with
/// [`ConnectError::ConflictingAuth`] otherwise, rather than letting one silently win.
///
/// [`connect`]: ConnectConfig::connect
#[derive(Clone)]
#[must_use = "a config does nothing until `.connect().await`"]
pub struct ConnectConfig {
    servers: Vec<String>,
    user: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    nkey: Option<Nkey>,
    creds: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_tls: bool,
    tls_first: bool,
    connection_timeout: Duration,
    name: Option<String>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            user: None,
            password: None,
            token: None,
            nkey: None,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            tls_first: false,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            name: None,
        }
    }
}

impl ConnectConfig {
    /// A config for these servers: one URL or a comma-separated list (`nats://`, `tls://`,
    /// or `host:port`). Credentials inside a URL (`nats://user:password@host`,
    /// `nats://token@host`) are taken out of it and used as the authentication.
    pub fn new(servers: impl Into<String>) -> Self {
        Self::default().server(servers)
    }

    /// Adds servers (one URL or a comma-separated list) to the list.
    pub fn server(mut self, servers: impl Into<String>) -> Self {
        self.servers.push(servers.into());
        self
    }

    /// Authenticates with a user and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with this nkey seed (`SU…`). Prefer [`nkey_file`](Self::nkey_file) on a
    /// command line: a value there shows in the process list.
    pub fn nkey_seed(mut self, seed: impl Into<Secret>) -> Self {
        self.nkey = Some(Nkey::Seed(seed.into()));
        self
    }

    /// Authenticates with the nkey seed in this file.
    pub fn nkey_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.nkey = Some(Nkey::File(path.into()));
        self
    }

    /// Authenticates with this creds file (a user JWT and its nkey seed, as `nsc` writes).
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }

    /// Trusts this CA (a PEM file) for the server's certificate, and requires TLS.
    pub fn tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// Presents this client certificate and key (PEM files), and requires TLS.
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// Requires TLS even when no CA or certificate is given (the system's roots are trusted).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Starts TLS before the server's greeting, for servers configured with
    /// `handshake_first`. Implies TLS.
    pub fn tls_first(mut self, first: bool) -> Self {
        self.tls_first = first;
        self
    }

    /// How long one attempt to connect to one server may take (default 5 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The connection's name, shown in the server's monitoring.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Names the connection `name` unless a name was set (the runner names its connection
    /// after the instance, so the server's monitoring shows which instance it is).
    pub(crate) fn name_if_unset(mut self, name: &str) -> Self {
        if self.name.is_none() {
            self.name = Some(name.to_owned());
        }
        self
    }

    /// The servers as shown in messages: comma-separated, without userinfo.
    pub fn servers_shown(&self) -> String {
        if self.servers.is_empty() {
            return DEFAULT_SERVER.to_owned();
        }
        self.servers
            .iter()
            .map(|s| servers::redact(s))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects to the first server of the list that accepts the connection.
    ///
    /// It tries each server once; after that the connection reconnects on its own as
    /// async-nats does, with the same credentials.
    ///
    /// # Errors
    /// [`ConnectError`]: an invalid URL, conflicting or incomplete credentials, an unreadable
    /// or invalid file, the server rejecting the credentials, a TLS failure, or no server
    /// reachable.
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        self.connect_with_options(|options| options).await
    }

    /// As [`connect`](Self::connect), and the operations the server refuses on the
    /// connection, to react to at once: async-nats reports a refused permission only to the
    /// event callback, and the refused operation itself just goes unanswered. The runner
    /// connects this way, so a missing permission fails its start at once.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_observed(
        &self,
    ) -> Result<(async_nats::Client, RefusedOperations), ConnectError> {
        let (sender, refused) = refused::channel();
        let client = self
            .connect_with_options(|options| {
                options.event_callback(move |event| {
                    let sender = sender.clone();
                    async move {
                        if let Some(violation) = events::permission_violation(&event) {
                            sender.refused(violation);
                        }
                        events::record(event).await;
                    }
                })
            })
            .await?;
        Ok((client, refused))
    }

    /// As [`connect`](Self::connect), with async-nats options of your own added to the ones
    /// this config makes (an event callback, a custom inbox prefix, ...). Authentication and
    /// TLS set by `adjust` replace the config's.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with_options(
        &self,
        adjust: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<async_nats::Client, ConnectError> {
        let (options, servers) = self.options().await?;
        let options = adjust(options);
        let shown = servers.shown.join(",");
        tracing::debug!(servers = %shown, auth = self.auth_method(&servers).unwrap_or("none"), "connecting to NATS");
        options
            .connect(servers.addrs)
            .await
            .map_err(|source| ConnectError::from_client(shown, self.connection_timeout, source))
    }

    /// The client options and the parsed server list, with every file read and checked.
    async fn options(
        &self,
    ) -> Result<(async_nats::ConnectOptions, servers::Servers), ConnectError> {
        let specs: Vec<&str> = if self.servers.is_empty() {
            vec![DEFAULT_SERVER]
        } else {
            self.servers.iter().map(String::as_str).collect()
        };
        let servers = servers::parse(specs)?;
        self.check_one_auth(&servers)?;
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connection_timeout)
            .event_callback(events::record);
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        options = match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            (None, None) => options,
            _ => return Err(ConnectError::IncompleteUserPassword),
        };
        if let Some(token) = &self.token {
            options = options.token(token.expose().to_owned());
        }
        match &servers.credentials {
            Some(servers::UrlCredentials::UserPassword { user, password }) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            Some(servers::UrlCredentials::Token(token)) => options = options.token(token.clone()),
            None => {}
        }
        if let Some(nkey) = &self.nkey {
            options = options.nkey(read_nkey(nkey).await?);
        }
        if let Some(path) = &self.creds {
            let content = read("creds file", path).await?;
            options =
                options
                    .credentials(&content)
                    .map_err(|source| ConnectError::InvalidCreds {
                        path: path.clone(),
                        source,
                    })?;
        }
        let mut tls = self.require_tls || self.tls_first;
        if let Some(ca) = &self.tls_ca {
            read("CA certificate", ca).await?;
            options = options.add_root_certificates(ca.clone());
            tls = true;
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                read("client certificate", cert).await?;
                read("client key", key).await?;
                options = options.add_client_certificate(cert.clone(), key.clone());
                tls = true;
            }
            (None, None) => {}
            _ => return Err(ConnectError::IncompleteClientCertificate),
        }
        if tls {
            options = options.require_tls(true);
        }
        if self.tls_first {
            options = options.tls_first();
        }
        Ok((options, servers))
    }

    /// The one authentication method configured, if any.
    fn auth_method(&self, servers: &servers::Servers) -> Option<&'static str> {
        self.auth_methods(servers).into_iter().next()
    }

    fn auth_methods(&self, servers: &servers::Servers) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.user.is_some() || self.password.is_some() {
            methods.push("a user and password (--user, --password / NATS_USER, NATS_PASSWORD)");
        }
        if self.token.is_some() {
            methods.push("a token (--token / NATS_TOKEN)");
        }
        if self.nkey.is_some() {
            methods.push("an nkey (--nkey / NATS_NKEY)");
        }
        if self.creds.is_some() {
            methods.push("a creds file (--creds / NATS_CREDS)");
        }
        if servers.credentials.is_some() {
            methods.push("credentials inside the server URL");
        }
        methods
    }

    fn check_one_auth(&self, servers: &servers::Servers) -> Result<(), ConnectError> {
        match self.auth_methods(servers).as_slice() {
            [first, second, ..] => Err(ConnectError::ConflictingAuth { first, second }),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand: the server URLs may hold credentials, and the nkey may be a seed.
        let nkey = self.nkey.as_ref().map(|nkey| match nkey {
            Nkey::Seed(_) => "<redacted seed>".to_owned(),
            Nkey::File(path) => path.display().to_string(),
        });
        f.debug_struct("ConnectConfig")
            .field("servers", &self.servers_shown())
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("nkey", &nkey)
            .field("creds", &self.creds)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("require_tls", &self.require_tls)
            .field("tls_first", &self.tls_first)
            .field("connection_timeout", &self.connection_timeout)
            .field("name", &self.name)
            .finish()
    }
}

async fn read(what: &'static str, path: &Path) -> Result<String, ConnectError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ConnectError::ReadFile {
            what,
            path: path.to_owned(),
            source,
        })
}

/// The seed, checked: a bad seed fails here with a clear message instead of as a failed
/// signature during the handshake.
async fn read_nkey(nkey: &Nkey) -> Result<String, ConnectError> {
    let (seed, origin) = match nkey {
        Nkey::Seed(seed) => (seed.expose().to_owned(), "given as a value".to_owned()),
        Nkey::File(path) => (
            read("nkey seed file", path).await?.trim().to_owned(),
            format!("in {}", path.display()),
        ),
    };
    match nkeys::KeyPair::from_seed(&seed) {
        Ok(_) => Ok(seed),
        Err(err) => Err(ConnectError::InvalidNkey {
            origin,
            reason: err.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credential() {
        let config = ConnectConfig::new("nats://u:urlpass@h:1")
            .user_and_password("svc", "hunter2")
            .token("t0k3n")
            .nkey_seed("SUAEXAMPLESEED");
        let shown = format!("{config:?}");
        for secret in ["urlpass", "hunter2", "t0k3n", "SUAEXAMPLESEED"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("nats://h:1") && shown.contains("svc"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn two_auth_methods_are_refused() {
        let err = ConnectConfig::new("nats://tok@h:1")
            .user_and_password("svc", "pw")
            .connect()
            .await
            .expect_err("conflict");
        assert!(matches!(err, ConnectError::ConflictingAuth { .. }), "{err}");
        let err = ConnectConfig::new("h:1")
            .token("a")
            .creds_file("/x.creds")
            .connect()
            .await
            .expect_err("conflict");
        assert!(err.to_string().contains("--creds"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_nkey_or_missing_file_is_named_without_the_seed() {
        let err = ConnectConfig::new("h:1")
            .nkey_seed("SUNOTAREALSEED")
            .connect()
            .await
            .expect_err("bad seed");
        assert!(matches!(err, ConnectError::InvalidNkey { .. }), "{err}");
        assert!(!err.to_string().contains("SUNOTAREALSEED"), "{err}");
        let err = ConnectConfig::new("h:1")
            .tls_ca("/no/such/ca.pem")
            .connect()
            .await
            .expect_err("missing CA");
        assert!(
            err.to_string().contains("CA certificate /no/such/ca.pem"),
            "{err}"
        );
        let err = ConnectConfig::new("h:1")
            .creds_file("/no/such.creds")
            .connect()
            .await
            .expect_err("missing creds");
        assert!(
            matches!(
                err,
                ConnectError::ReadFile {
                    what: "creds file",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn half_a_credential_is_refused() {
        let mut config = ConnectConfig::new("h:1");
        config.user = Some("svc".into());
        let err = config.connect().await.expect_err("no password");
        assert!(matches!(err, ConnectError::IncompleteUserPassword), "{err}");
        let mut config = ConnectConfig::new("h:1");
        config.tls_cert = Some("/c.pem".into());
        let err = config.connect().await.expect_err("no key");
        assert!(
            matches!(err, ConnectError::IncompleteClientCertificate),
            "{err}"
        );
    }

    #[test]
    fn an_nkey_value_is_a_seed_or_a_path() {
        let seed = format!("SU{}", "A".repeat(56));
        assert!(matches!(Nkey::from_value(seed), Nkey::Seed(_)));
        assert!(matches!(
            Nkey::from_value("/etc/svc.nk".into()),
            Nkey::File(_)
        ));
    }
}
