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
