//! Why a connection to NATS could not be made, read from the client's and the server's
//! errors. No variant holds a credential: URLs are shown without their userinfo.

use std::path::PathBuf;
use std::time::Duration;

/// Why [`ConnectConfig::connect`](super::ConnectConfig::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server list is empty.
    #[error("no NATS server given: pass --server (or NATS_URL), e.g. nats://127.0.0.1:4222")]
    NoServer,
    /// A server URL cannot be parsed.
    #[error(
        "invalid NATS server URL {url}: {reason}; write it as nats://host:port or tls://host:port"
    )]
    InvalidUrl {
        /// The URL, without userinfo.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two ways to authenticate were given; the server accepts one.
    #[error("both {first} and {second} are given: a connection authenticates one way, keep one")]
    ConflictingAuth {
        /// The first method, with its flag and variable.
        first: &'static str,
        /// The second method.
        second: &'static str,
    },
    /// A password without a user, or a user without a password.
    #[error(
        "a user needs a password and a password needs a user: give both --user and --password (NATS_USER, NATS_PASSWORD)"
    )]
    IncompleteUserPassword,
    /// A client certificate without its key, or a key without its certificate.
    #[error(
        "a client certificate needs its key and a key its certificate: give both --tls-cert and --tls-key (NATS_CERT, NATS_KEY)"
    )]
    IncompleteClientCertificate,
    /// A file named in the config cannot be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    ReadFile {
        /// What the file holds: "creds file", "nkey seed file", "CA certificate", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The nkey seed is not a valid seed (it is not shown).
    #[error(
        "the nkey seed {origin} is not a valid nkey seed ({reason}); it must be a user seed starting with SU, as `nk -gen user` writes"
    )]
    InvalidNkey {
        /// Where the seed came from: a file, or "given as a value".
        origin: String,
        /// What the nkeys library said.
        reason: String,
    },
    /// The creds file cannot be parsed (its content is not shown).
    #[error("the creds file {} is not a valid NATS creds file: {source}; create it with `nsc generate creds`", path.display())]
    InvalidCreds {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the credentials (its `Authorization Violation`).
    #[error(
        "authentication rejected by the NATS server at {servers}: the server answered `Authorization Violation`; check the user and password, token, nkey or creds file"
    )]
    AuthenticationRejected {
        /// The servers tried, without userinfo.
        servers: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The client could not sign the server's nonce with the nkey or creds given.
    #[error("cannot sign the NATS server's challenge with the nkey or creds given: {source}")]
    Signing {
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The TLS handshake failed or TLS could not be set up.
    #[error(
        "TLS with the NATS server at {servers} failed: {source}; check the CA (--tls-ca / NATS_CA), the client certificate and key (--tls-cert, --tls-key), and whether the server expects --tls-first"
    )]
    Tls {
        /// The servers tried, without userinfo.
        servers: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// No server answered within the connection timeout.
    #[error(
        "no NATS server at {servers} answered within {timeout:?}; is it running, and is the address right?"
    )]
    TimedOut {
        /// The servers tried, without userinfo.
        servers: String,
        /// The connection timeout.
        timeout: Duration,
    },
    /// No server could be reached, or the connection failed for another reason.
    #[error(
        "cannot reach a NATS server at {servers}: {source}; start one, or point to yours with --server or NATS_URL"
    )]
    Unreachable {
        /// The servers tried, without userinfo.
        servers: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// Whether the server refused the credentials.
    pub fn is_auth_rejected(&self) -> bool {
        matches!(self, Self::AuthenticationRejected { .. })
    }

    /// Sorts the client's error by its kind: the kind is what the client read from the
    /// server or the socket, so nothing is guessed.
    pub(super) fn from_client(
        servers: String,
        timeout: Duration,
        source: async_nats::ConnectError,
    ) -> Self {
        use async_nats::ConnectErrorKind as Kind;
        match source.kind() {
            Kind::AuthorizationViolation => Self::AuthenticationRejected { servers, source },
            Kind::Authentication => Self::Signing { source },
            Kind::Tls => Self::Tls { servers, source },
            Kind::TimedOut => Self::TimedOut { servers, timeout },
            Kind::ServerParse => Self::InvalidUrl {
                url: servers,
                reason: source.to_string(),
            },
            // async-nats reports a failed handshake as I/O: the rustls error inside says
            // it was TLS (an untrusted certificate, a refused client certificate).
            Kind::Io if caused_by_tls(&source) => Self::Tls { servers, source },
            Kind::Dns | Kind::Io | Kind::MaxReconnects => Self::Unreachable { servers, source },
        }
    }
}

/// Whether a rustls error is somewhere in the chain of `error`, also inside an I/O error.
fn caused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::rustls;
    let mut next = Some(error);
    while let Some(current) = next {
        if current.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the wrapped error itself: look at it directly.
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && caused_by_tls(inner)
        {
            return true;
        }
        next = current.source();
    }
    false
}
