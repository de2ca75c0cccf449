//! Why a command failed, and the exit code each failure gives: the one place where failures
//! become exit codes, so scripts can tell "the call failed" from "there is no such method"
//! from "the server cannot do this" without reading the message.

use std::process::ExitCode;

use aegis_runtime::codec::DecodeError;
use aegis_runtime::subject::InvalidName;
use aegis_runtime::{CallError, CallErrorKind, ConnectError};
use async_nats::jetstream::context::AccountError;
use serde_json::{Value, json};

/// The exit codes of `aegis`, as `--help` and docs/cli.md list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: the command did what it was asked.
    Success = 0,
    /// 1: the call failed (the handler's error, NOT_ACTIVE, a timeout after which the
    /// method may have run), or what was asked for is not there right now (no leader).
    Failed = 1,
    /// 2: usage, as clap's own errors: bad flags, parameters that are not a JSON object,
    /// a name that breaks the naming rules.
    Usage = 2,
    /// 3: no such service, or the service has no such method.
    Unknown = 3,
    /// 4: the server cannot do it: no JetStream, permission denied.
    ServerCannot = 4,
    /// 5: no NATS server could be reached.
    Unreachable = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The exit codes, for `aegis --help` (kept in step with [`Exit`] and docs/cli.md).
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the call failed: the handler's error, NOT_ACTIVE, a timeout (the method may have run);
     or nothing to show right now (no leader)
  2  usage: bad flags or arguments, parameters that are not a JSON object, an invalid name
  3  unknown service or unknown method
  4  the server cannot do it: no JetStream, permission denied
  5  cannot reach NATS

With --json, a failure also prints {\"error\": {\"kind\", \"exit_code\", \"message\"}} on stdout.";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The connection to NATS could not be made (or its settings are wrong).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A service, method, instance or group name breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The parameters of `call` are not JSON.
    #[error("the parameters are not JSON ({source}): {params}")]
    ParamsNotJson {
        /// The parameters as given.
        params: String,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// The parameters of `call` are JSON but not an object.
    #[error(
        "the parameters must be a JSON object, like '{{\"order_id\": \"ORD-1\"}}'; got {params}"
    )]
    ParamsNotObject {
        /// The parameters as given.
        params: String,
    },
    /// `--timeout` or `--for` is not a usable number of seconds.
    #[error("{flag} {value} is not a duration in seconds")]
    BadSeconds {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: f64,
    },
    /// The registry has no instance of the service.
    #[error("no instance of {service} is registered (see `aegis services`)")]
    UnknownService {
        /// The service asked for.
        service: String,
    },
    /// No instance of the service answers its subjects.
    #[error(
        "no instance of {service} is running: nothing answers {subject} (see `aegis services`)"
    )]
    NotRunning {
        /// The service asked for.
        service: String,
        /// The subject nobody answers.
        subject: String,
    },
    /// The service runs, but has no such method.
    #[error("{service} has no method {method}; its methods: {}", methods.join(", "))]
    UnknownMethod {
        /// The service.
        service: String,
        /// The method asked for.
        method: String,
        /// The methods the service has (its `$SRV.INFO` endpoints and the built-in ones).
        methods: Vec<String>,
    },
    /// The instance named by `--instance` does not answer its own subject.
    #[error(
        "nobody serves {subject}: is instance {instance} of {service} running? (see `aegis instances {service}`)"
    )]
    InstanceNotRunning {
        /// The service.
        service: String,
        /// The instance asked for.
        instance: String,
        /// Its subject for the method.
        subject: String,
    },
    /// A call through the service's client failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A call addressed to one instance failed.
    #[error("call of {service}.{method} on instance {instance} failed: {kind}")]
    InstanceCall {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// The instance called.
        instance: String,
        /// Why (boxed: it is large, and every result of the CLI carries this enum).
        #[source]
        kind: Box<CallErrorKind>,
    },
    /// The group has no leader now.
    #[error("{service} (group {group}) has no leader right now")]
    NoLeader {
        /// The service.
        service: String,
        /// The group.
        group: String,
    },
    /// JetStream is not enabled on the server, or not for this account.
    #[error(
        "the NATS server has no JetStream for this account ({source}); the registry and the \
         leader election live in JetStream: start nats-server with -js, or enable JetStream \
         for the account"
    )]
    NoJetStream {
        /// The server's (or the client's) answer to the account info request.
        #[source]
        source: AccountError,
    },
    /// The server refused an operation the command needs.
    #[error(
        "the NATS server refused an operation this command needs ({violation}); give this \
         user that permission (docs/security.md, \"Permissions\")"
    )]
    PermissionDenied {
        /// The server's words: which operation, on which subject.
        violation: String,
    },
    /// A JetStream operation failed for another reason.
    #[error("cannot {what}: {source}")]
    JetStream {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request to a service failed for another reason than silence (the connection
    /// closed, say).
    #[error("cannot {what}: {source}")]
    Request {
        /// What was being asked.
        what: String,
        /// The client's error.
        #[source]
        source: async_nats::RequestError,
    },
    /// An answer (INFO, a leader record) does not decode.
    #[error("the {what} does not decode: {source}")]
    Decode {
        /// What was read.
        what: String,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The dashboard cannot listen where it was asked to (the port is taken, say).
    #[error("the dashboard cannot listen on {}: {source}; choose another with --listen", address.map_or_else(|| "its socket".to_owned(), |a| a.to_string()))]
    Listen {
        /// Where; `None` for a socket bound elsewhere.
        address: Option<std::net::SocketAddr>,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Stdout cannot be written (a closed pipe).
    #[error("cannot write to stdout: {0}")]
    Output(#[source] std::io::Error),
    /// The demo failed; the failover harness of aegis-examples reports its failures as text.
    #[error("{0}")]
    Demo(String),
}

impl CliError {
    /// The exit code of this failure: the one mapping from failures to exit codes.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Connect(err) => match err {
                // Settings that cannot work, whatever the server: a usage error.
                ConnectError::NoServer
                | ConnectError::InvalidUrl { .. }
                | ConnectError::ConflictingAuth { .. }
                | ConnectError::IncompleteUserPassword
                | ConnectError::IncompleteClientCertificate
                | ConnectError::ReadFile { .. }
                | ConnectError::InvalidNkey { .. }
                | ConnectError::InvalidCreds { .. } => Exit::Usage,
                ConnectError::AuthenticationRejected { .. } => Exit::ServerCannot,
                _ => Exit::Unreachable,
            },
            Self::InvalidName(_)
            | Self::ParamsNotJson { .. }
            | Self::ParamsNotObject { .. }
            | Self::BadSeconds { .. } => Exit::Usage,
            Self::UnknownService { .. }
            | Self::NotRunning { .. }
            | Self::UnknownMethod { .. }
            | Self::InstanceNotRunning { .. } => Exit::Unknown,
            Self::Call(err) => call_exit(err.kind()),
            Self::InstanceCall { kind, .. } => call_exit(kind),
            Self::NoLeader { .. }
            | Self::Request { .. }
            | Self::Decode { .. }
            | Self::Output(_)
            | Self::Listen { .. }
            | Self::Demo(_) => Exit::Failed,
            Self::NoJetStream { .. } | Self::PermissionDenied { .. } | Self::JetStream { .. } => {
                Exit::ServerCannot
            }
        }
    }

    /// A short, stable name of the failure, the `kind` of the JSON error.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::InvalidName(_) => "invalid_name",
            Self::ParamsNotJson { .. } | Self::ParamsNotObject { .. } => "invalid_params",
            Self::BadSeconds { .. } => "invalid_duration",
            Self::UnknownService { .. } | Self::NotRunning { .. } => "unknown_service",
            Self::UnknownMethod { .. } => "unknown_method",
            Self::InstanceNotRunning { .. } => "unknown_instance",
            Self::Call(err) => err.kind().name(),
            Self::InstanceCall { kind, .. } => kind.name(),
            Self::NoLeader { .. } => "no_leader",
            Self::NoJetStream { .. } => "no_jetstream",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::JetStream { .. } => "jetstream",
            Self::Request { .. } => "request",
            Self::Decode { .. } => "decode",
            Self::Output(_) => "output",
            Self::Listen { .. } => "listen",
            Self::Demo(_) => "demo",
        }
    }

    /// The failure as the one JSON value `--json` prints on stdout.
    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({
            "kind": self.kind(),
            "exit_code": self.exit() as u8,
            "message": self.to_string(),
        });
        if let Self::UnknownMethod { methods, .. } = self {
            error["methods"] = json!(methods);
        }
        json!({ "error": error })
    }
}

/// A failed call gives 1, except when it says the request never made sense (a bad name),
/// or the server could not be talked to.
fn call_exit(kind: &CallErrorKind) -> Exit {
    match kind {
        CallErrorKind::InvalidName(_) | CallErrorKind::Encode(_) => Exit::Usage,
        CallErrorKind::BudgetExhausted(last) => call_exit(last),
        _ => Exit::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_exit_code_is_documented_in_the_help() {
        for exit in [
            Exit::Success,
            Exit::Failed,
            Exit::Usage,
            Exit::Unknown,
            Exit::ServerCannot,
            Exit::Unreachable,
        ] {
            let line = format!("\n  {}  ", exit as u8);
            assert!(EXIT_CODES_HELP.contains(&line), "{exit:?} missing");
        }
    }

    #[test]
    fn unknown_method_names_the_methods_in_text_and_json() {
        let err = CliError::UnknownMethod {
            service: "orders".into(),
            method: "nope".into(),
            methods: vec!["a".into(), "b".into()],
        };
        assert_eq!(err.exit(), Exit::Unknown);
        assert_eq!(
            err.to_string(),
            "orders has no method nope; its methods: a, b"
        );
        let json = err.to_json();
        assert_eq!(json["error"]["kind"], "unknown_method");
        assert_eq!(json["error"]["exit_code"], 3);
        assert_eq!(json["error"]["methods"], json!(["a", "b"]));
    }

    #[test]
    fn a_usage_problem_in_the_connection_settings_is_exit_2() {
        assert_eq!(CliError::from(ConnectError::NoServer).exit(), Exit::Usage);
    }
}
