//! Commands: units of work sent to a service through the JetStream work-queue stream
//! `COMMANDS`, taken by exactly one instance, with progress and an outcome sent back.
//!
//! The client side is [`CommandHandle`] (from `ServiceClient::start_command`); the service
//! side runs inside the runner, one durable pull consumer per command.

mod handle;
pub(crate) mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

pub use handle::CommandHandle;

/// How long an unconsumed message (such as a progress update, which shares the
/// `commands.>` subjects) stays in the stream.
const COMMANDS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Options of one command: priority, retries and timeout (the Python SDK's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOptions {
    /// Scheduling priority inside an instance.
    pub priority: crate::codec::Priority,
    /// How often a failed command is tried again.
    pub max_retries: u32,
    /// How long one run of the handler may take.
    pub timeout: Duration,
}

impl Default for CommandOptions {
    fn default() -> Self {
        Self {
            priority: crate::codec::Priority::Normal,
            max_retries: crate::codec::DEFAULT_COMMAND_MAX_RETRIES,
            timeout: Duration::from_secs_f64(crate::codec::DEFAULT_COMMAND_TIMEOUT_SECS),
        }
    }
}

/// Gets the `COMMANDS` stream, creating it (work queue on `commands.>`) if missing; an
/// existing one, such as the Python SDK's, is used as it is.
pub(crate) async fn commands_stream(js: &jetstream::Context) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: crate::subject::COMMANDS_STREAM.to_owned(),
        subjects: vec!["commands.>".to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: COMMANDS_MAX_AGE,
        ..Default::default()
    })
    .await
    .map_err(|e| {
        format!(
            "cannot get or create the {} stream: {e}",
            crate::subject::COMMANDS_STREAM
        )
    })
}
