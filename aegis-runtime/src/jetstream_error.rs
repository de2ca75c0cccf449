//! The error of setting up or using a JetStream resource (a KV bucket, a stream, a
//! consumer), with the kinds a user reacts to: JetStream missing, a permission refused, a
//! resource with settings Aegis cannot use, no answer in time.
//!
//! async-nats reports these several layers deep (`JetStream error: JetStream unavailable:
//! requested JetStream resource does not exist` for a server without JetStream), and a
//! refused permission not at all: the request just goes unanswered, and only the
//! connection's event callback hears the server's `Permissions Violation`. This module
//! reads the kinds out of async-nats's error chain once, for every caller.

use std::error::Error as StdError;

use async_nats::jetstream::{self, ErrorCode, context, kv, stream};

/// A boxed error, as async-nats boxes the sources of its own errors.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a JetStream resource Aegis needs (the registry and election buckets, the `EVENTS`
/// and `COMMANDS` streams and their consumers) could not be set up or used.
///
/// Each kind says how to fix it in its message; match on the kind to react in code. It is
/// the source of [`StartError::Registry`](crate::StartError::Registry),
/// [`Election`](crate::StartError::Election), [`Commands`](crate::StartError::Commands) and
/// [`Events`](crate::StartError::Events):
///
/// ```
/// use aegis_runtime::{JetStreamError, StartError};
///
/// fn advice(err: &StartError) -> String {
///     // Anywhere in the source chain, whichever step of the start failed.
///     let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
///     while let Some(current) = source {
///         match current.downcast_ref::<JetStreamError>() {
///             Some(JetStreamError::NotEnabled { .. }) => return "enable JetStream".into(),
///             Some(JetStreamError::PermissionDenied { subject, .. }) => {
///                 return format!("grant publish on {subject}");
///             }
///             _ => source = current.source(),
///         }
///     }
///     err.to_string()
/// }
/// # let _ = advice;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JetStreamError {
    /// JetStream is not enabled: nothing answers JetStream requests on this server, or
    /// the server has JetStream but the user's account does not.
    #[error("cannot {action}: {}", not_enabled_advice(.for_account))]
    NotEnabled {
        /// What Aegis was doing.
        action: String,
        /// `true` when the server has JetStream but the account of this connection's user
        /// has not; `false` when no JetStream answered at all.
        for_account: bool,
        /// async-nats's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The server refused this user a permission (to publish or subscribe on `subject`).
    /// Reported when the runner made the connection itself (with
    /// [`url`](crate::ServiceRunner::url) or [`connect_with`](crate::ServiceRunner::connect_with)):
    /// on a connection of your own a refused JetStream request is only unanswered, and
    /// ends as [`TimedOut`](JetStreamError::TimedOut).
    #[error(
        "cannot {action}: the NATS server refused this user the permission to {permission} on \"{subject}\" \
         (Permissions Violation); grant the user that permission ({}; docs/security.md lists \
         the least-privilege set, \"Permissions\")",
        permission_advice(.permission, .subject)
    )]
    PermissionDenied {
        /// What Aegis was doing.
        action: String,
        /// What was refused.
        permission: Permission,
        /// The subject it was refused on, as the server named it.
        subject: String,
    },
    /// A bucket or stream exists with a setting Aegis cannot work with (it uses an
    /// existing one as it is, and never changes it).
    #[error("the {resource} exists with {setting}, which Aegis cannot use: {fix}")]
    Misconfigured {
        /// The bucket or stream, e.g. `KV bucket service_registry`.
        resource: String,
        /// The setting and its value.
        setting: String,
        /// How to fix it.
        fix: String,
    },
    /// JetStream did not answer in time.
    #[error(
        "cannot {action}: JetStream did not answer in time (the server may be overloaded or \
         unreachable, or this user may not publish the request: the server leaves a refused \
         request unanswered; check its log for \"Permissions Violation\", docs/security.md)"
    )]
    TimedOut {
        /// What Aegis was doing.
        action: String,
        /// async-nats's error.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else; async-nats's error says what.
    #[error("cannot {action}: {source}")]
    Other {
        /// What Aegis was doing.
        action: String,
        /// async-nats's error.
        #[source]
        source: BoxError,
    },
}

/// A permission the server may refuse a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// Publishing (JetStream requests are publishes to `$JS.API.…`, KV writes to `$KV.…`).
    Publish,
    /// Subscribing.
    Subscribe,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Permission::Publish => "publish",
            Permission::Subscribe => "subscribe",
        })
    }
}

fn not_enabled_advice(for_account: &bool) -> &'static str {
    if *for_account {
        "JetStream is not enabled for this user's account; enable it for the account \
         (`jetstream: enabled` in the account's block of the server config)"
    } else {
        "JetStream is not enabled on the NATS server (nothing answers on $JS.API); start \
         nats-server with -js, or add a `jetstream {}` block to its config"
    }
}

fn permission_advice(permission: &Permission, subject: &str) -> String {
    if *permission == Permission::Publish && subject.starts_with("$JS.API.") {
        format!("publish on {subject}, or on $JS.API.> for every JetStream request")
    } else {
        format!("{permission} on {subject}")
    }
}

/// What the chain of an async-nats error says, once read.
enum Found {
    NotEnabled { for_account: bool },
    TimedOut,
}

/// How many times an idempotent JetStream request that got no answer in time is sent in
/// all (see [`patiently`]).
const ATTEMPTS_WHEN_SILENT: u32 = 3;

/// Runs `request` (an idempotent JetStream API request: creating or updating a consumer
/// with one configuration) again when JetStream did not answer in time, up to
/// [`ATTEMPTS_WHEN_SILENT`] times in all. A busy meta leader (every instance of a deploy
/// creating the same durable consumer at once, on a cluster) answers some of them late;
/// any other failure is returned at once, as a [`JetStreamError`] naming `action`.
pub(crate) async fn patiently<T, E, F, Fut>(
    action: impl Fn() -> String,
    mut request: F,
) -> Result<T, JetStreamError>
where
    E: Into<BoxError>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Ok(value) => return Ok(value),
            Err(err) => match JetStreamError::from_nats(action(), err) {
                JetStreamError::TimedOut { .. } if attempt < ATTEMPTS_WHEN_SILENT => {
                    tracing::debug!(
                        action = action(),
                        attempt,
                        "JetStream did not answer in time; asking again"
                    );
                    attempt += 1;
                }
                err => return Err(err),
            },
        }
    }
}

impl JetStreamError {
    /// Classifies async-nats's `error` from doing `action` ("open the KV bucket
    /// service_registry"): JetStream missing or no answer in time become their kinds,
    /// anything else [`Other`](JetStreamError::Other).
    pub(crate) fn from_nats(action: impl Into<String>, error: impl Into<BoxError>) -> Self {
        let action = action.into();
        let error = error.into();
        match found_in(error.as_ref()) {
            Some(Found::NotEnabled { for_account }) => JetStreamError::NotEnabled {
                action,
                for_account,
                source: Some(error),
            },
            Some(Found::TimedOut) => JetStreamError::TimedOut {
                action,
                source: Some(error),
            },
            None => JetStreamError::Other {
                action,
                source: error,
            },
        }
    }

    /// The subject, when the server refused one.
    pub fn refused_subject(&self) -> Option<&str> {
        match self {
            JetStreamError::PermissionDenied { subject, .. } => Some(subject),
            _ => None,
        }
    }
}

/// The permission and subject of the server's `Permissions Violation for Publish to "…"`
/// (or `for Subscription to "…"`).
pub(crate) fn parse_violation(violation: &str) -> Option<(Permission, String)> {
    let rest = &violation[violation.find("Permissions Violation for ")?..];
    let rest = rest.strip_prefix("Permissions Violation for ")?;
    let permission = if rest.starts_with("Publish") {
        Permission::Publish
    } else if rest.starts_with("Subscription") {
        Permission::Subscribe
    } else {
        return None;
    };
    let quoted = &rest[rest.find(" to \"")? + " to \"".len()..];
    let subject = &quoted[..quoted.find('"')?];
    Some((permission, subject.to_owned()))
}

/// Whether `subject` is one of JetStream's own (its API, acks, flow control) or of a KV
/// bucket: a refusal on it is a JetStream permission.
pub(crate) fn is_jetstream_subject(subject: &str) -> bool {
    subject.starts_with("$JS.") || subject.starts_with("$KV.")
}

fn code_found(error: &jetstream::Error) -> Option<Found> {
    match error.error_code() {
        ErrorCode::JETSTREAM_NOT_ENABLED => Some(Found::NotEnabled { for_account: false }),
        ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
            Some(Found::NotEnabled { for_account: true })
        }
        _ => None,
    }
}

/// Walks the chain of `error`, reading the kinds of the async-nats errors Aegis meets (a
/// kind may hold the server's error without making it a source).
fn found_in(error: &(dyn StdError + 'static)) -> Option<Found> {
    use context::{
        AccountErrorKind as Account, CreateKeyValueErrorKind as CreateKv,
        CreateStreamErrorKind as CreateStream, GetStreamErrorKind as GetStream,
        RequestErrorKind as Request,
    };
    let mut current = Some(error);
    while let Some(error) = current {
        let found = if let Some(e) = error.downcast_ref::<jetstream::Error>() {
            code_found(e)
        } else if let Some(e) = error.downcast_ref::<context::RequestError>() {
            match e.kind() {
                Request::NoResponders => Some(Found::NotEnabled { for_account: false }),
                Request::TimedOut => Some(Found::TimedOut),
                _ => None,
            }
        } else if let Some(e) = error.downcast_ref::<context::CreateStreamError>() {
            match e.kind() {
                CreateStream::JetStreamUnavailable => {
                    Some(Found::NotEnabled { for_account: false })
                }
                CreateStream::TimedOut => Some(Found::TimedOut),
                CreateStream::JetStream(e) => code_found(&e),
                _ => None,
            }
        } else if let Some(e) = error.downcast_ref::<context::GetStreamError>() {
            match e.kind() {
                GetStream::JetStream(e) => code_found(&e),
                _ => None,
            }
        } else if let Some(e) = error.downcast_ref::<context::AccountError>() {
            match e.kind() {
                Account::JetStreamUnavailable => Some(Found::NotEnabled { for_account: false }),
                Account::TimedOut => Some(Found::TimedOut),
                Account::JetStream(e) => code_found(&e),
                Account::Other => None,
            }
        } else if let Some(e) = error.downcast_ref::<context::CreateKeyValueError>() {
            (e.kind() == CreateKv::TimedOut).then_some(Found::TimedOut)
        } else if let Some(e) = error.downcast_ref::<stream::ConsumerError>() {
            match e.kind() {
                stream::ConsumerErrorKind::TimedOut => Some(Found::TimedOut),
                stream::ConsumerErrorKind::JetStream(e) => code_found(&e),
                _ => None,
            }
        } else if let Some(e) = error.downcast_ref::<jetstream::consumer::StreamError>() {
            (e.kind() == jetstream::consumer::StreamErrorKind::TimedOut).then_some(Found::TimedOut)
        } else if let Some(e) = error.downcast_ref::<kv::EntryError>() {
            (e.kind() == kv::EntryErrorKind::TimedOut).then_some(Found::TimedOut)
        } else if let Some(e) = error.downcast_ref::<context::PublishError>() {
            (e.kind() == context::PublishErrorKind::TimedOut).then_some(Found::TimedOut)
        } else if let Some(e) = error.downcast_ref::<async_nats::RequestError>() {
            match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    Some(Found::NotEnabled { for_account: false })
                }
                async_nats::RequestErrorKind::TimedOut => Some(Found::TimedOut),
                _ => None,
            }
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_read_in_the_servers_words() {
        assert_eq!(
            parse_violation("nats: Permissions Violation for Publish to \"$JS.API.INFO\""),
            Some((Permission::Publish, "$JS.API.INFO".to_owned()))
        );
        assert_eq!(
            parse_violation(
                "Permissions Violation for Subscription to \"rpc.orders.>\" using queue \"q\""
            ),
            Some((Permission::Subscribe, "rpc.orders.>".to_owned()))
        );
        assert_eq!(parse_violation("authorization violation"), None);
        assert_eq!(
            parse_violation("Permissions Violation for Publish to \"x"),
            None
        );
    }

    #[test]
    fn a_missing_jetstream_is_read_through_the_chain() {
        // As async-nats reports a server without JetStream: no responders, two levels down.
        let request = context::RequestError::new(context::RequestErrorKind::NoResponders);
        let unavailable = context::CreateStreamError::with_source(
            context::CreateStreamErrorKind::JetStreamUnavailable,
            request,
        );
        let create = context::CreateKeyValueError::with_source(
            context::CreateKeyValueErrorKind::JetStream,
            unavailable,
        );
        let err = JetStreamError::from_nats("open the KV bucket b", create);
        assert!(
            matches!(
                err,
                JetStreamError::NotEnabled {
                    for_account: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("-js"), "{err}");
        assert!(
            err.source().is_some(),
            "async-nats's error stays the source"
        );
    }

    #[test]
    fn a_timeout_and_anything_else_keep_their_source() {
        let timed_out = context::CreateStreamError::new(context::CreateStreamErrorKind::TimedOut);
        let err = JetStreamError::from_nats("get the stream S", timed_out);
        assert!(matches!(err, JetStreamError::TimedOut { .. }), "{err:?}");
        assert!(err.to_string().contains("Permissions Violation"), "{err}");
        let other = context::CreateStreamError::new(context::CreateStreamErrorKind::ResponseParse);
        let err = JetStreamError::from_nats("get the stream S", other);
        assert!(matches!(err, JetStreamError::Other { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot get the stream S: failed to parse server response"
        );
    }

    #[test]
    fn a_refused_jetstream_request_names_its_subject_and_the_fix() {
        let (permission, subject) = parse_violation(
            "nats: Permissions Violation for Publish to \"$JS.API.STREAM.INFO.KV_service_registry\"",
        )
        .expect("a violation");
        let err = JetStreamError::PermissionDenied {
            action: "open the KV bucket service_registry".into(),
            permission,
            subject,
        };
        assert_eq!(
            err.refused_subject(),
            Some("$JS.API.STREAM.INFO.KV_service_registry")
        );
        let message = err.to_string();
        assert!(message.contains("$JS.API.>"), "{message}");
        assert!(message.contains("docs/security.md"), "{message}");
    }
}
