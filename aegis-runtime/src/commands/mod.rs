//! Commands: units of work sent to a service through the JetStream work-queue stream
//! `COMMANDS`, taken by exactly one instance, with progress and an outcome sent back.
//!
//! This module holds what both sides share, the stream. The client side is
//! [`CommandHandle`](crate::CommandHandle) (from `ServiceClient::start_command`, in
//! [`client`](crate::client)); the service side runs inside the runner, one durable pull
//! consumer per command (see docs/events-and-commands.md for its delivery bound).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// How long an unconsumed message (such as a progress update, which shares the
/// `commands.>` subjects) stays in the stream.
const COMMANDS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The most deliveries of one command, whatever its `max_retries` says: the `max_deliver` of
/// every command consumer. A command runs at most `min(max_retries + 1, MAX_DELIVER)` times;
/// the last run it may have reports its failure to the caller.
pub const MAX_DELIVER: i64 = 10;

/// Gets the `COMMANDS` stream, creating it (work queue on `commands.>`) if missing; an
/// existing one, such as the Python SDK's, is used as it is.
pub(crate) async fn commands_stream(
    js: &jetstream::Context,
) -> Result<stream::Stream, crate::JetStreamError> {
    crate::streams::get_or_create(
        js,
        stream::Config {
            name: crate::subject::COMMANDS_STREAM.to_owned(),
            subjects: vec!["commands.>".to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_age: COMMANDS_MAX_AGE,
            ..Default::default()
        },
    )
    .await
}

/// Why an existing `COMMANDS` stream cannot carry a service's commands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IncompatibleStream {
    /// Not a work queue: commands would stay after they are done, and every new consumer
    /// would run them all again.
    #[error(
        "the stream COMMANDS exists with {retention:?} retention, but commands need a work queue \
         (each taken by one instance and removed once done): recreate it as Aegis and the Python \
         SDK make it (subjects `commands.>`, retention workqueue)"
    )]
    NotWorkQueue {
        /// What it has.
        retention: stream::RetentionPolicy,
    },
    /// It does not store the command's subject.
    #[error(
        "the stream COMMANDS exists but does not store {subject} (its subjects: {subjects:?}): \
         add `commands.>` to it"
    )]
    NotCovered {
        /// The command's subject.
        subject: String,
        /// The stream's.
        subjects: Vec<String>,
    },
}

/// Checks that the `COMMANDS` stream configured as `config` (made by Aegis, the Python
/// SDK, or an operator) carries commands on `subject` as both expect.
pub(crate) fn check_stream(
    config: &stream::Config,
    subject: &str,
) -> Result<(), IncompatibleStream> {
    if config.retention != stream::RetentionPolicy::WorkQueue {
        return Err(IncompatibleStream::NotWorkQueue {
            retention: config.retention,
        });
    }
    if !config
        .subjects
        .iter()
        .any(|pattern| crate::subject::matches(pattern, subject))
    {
        return Err(IncompatibleStream::NotCovered {
            subject: subject.to_owned(),
            subjects: config.subjects.clone(),
        });
    }
    Ok(())
}
