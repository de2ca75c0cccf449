//! Progress and completion messages of commands.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BrokenRule, Timestamp, WireMessage};

/// Progress of a running command, published on `commands.progress.{command_id}`.
///
/// ```
/// use aegis_runtime::codec::CommandProgress;
///
/// let progress = CommandProgress::new("d0385f6c-afca-4125-9dd9-8604ac16c9d7", 50.0, "half");
/// assert_eq!(progress.progress, 50.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandProgress {
    /// The `message_id` of the command.
    pub command_id: String,
    /// Percent done, 0 to 100.
    pub progress: f64,
    /// A short description of the current step.
    pub status: String,
    /// When this was reported, in seconds since the Unix epoch (as the Python SDK writes it).
    pub timestamp: f64,
}

impl CommandProgress {
    /// Progress of `command_id`, stamped now.
    pub fn new(command_id: impl Into<String>, progress: f64, status: impl Into<String>) -> Self {
        Self {
            command_id: command_id.into(),
            progress,
            status: status.into(),
            timestamp: Timestamp::now().as_epoch_seconds(),
        }
    }
}

impl WireMessage for CommandProgress {
    const NAME: &'static str = "command progress";

    fn check(&self) -> Result<(), BrokenRule> {
        if (0.0..=100.0).contains(&self.progress) {
            Ok(())
        } else {
            Err(BrokenRule::new(format!(
                "`progress` must be between 0 and 100, got {}",
                self.progress
            )))
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CommandStatus {
    /// The handler returned a result.
    Completed,
    /// The handler failed; `error` says why.
    Failed,
    /// The handler ran past the command's timeout and was cancelled.
    TimedOut,
    /// The command was cancelled before it finished.
    Cancelled,
}

/// The outcome of a command, published on `commands.callback.{command_id}`.
///
/// A completed command has the three keys the Python SDK writes (`command_id`, `status`,
/// `result`); a failed one adds `error`, which the Python SDK never sends.
///
/// ```
/// use aegis_runtime::codec::{CommandCallback, CommandStatus};
/// use serde_json::json;
///
/// let done = CommandCallback::completed("c-1", json!({"reindexed": 3}));
/// assert_eq!(done.status, CommandStatus::Completed);
/// let failed: CommandCallback = CommandCallback::failed("c-2", "disk full");
/// assert_eq!(failed.error.as_deref(), Some("disk full"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCallback<R = Value> {
    /// The `message_id` of the command.
    pub command_id: String,
    /// How it ended.
    pub status: CommandStatus,
    /// The handler's result when completed.
    pub result: Option<R>,
    /// Why it did not complete; absent when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<R> CommandCallback<R> {
    /// The command completed with `result`.
    pub fn completed(command_id: impl Into<String>, result: R) -> Self {
        Self {
            command_id: command_id.into(),
            status: CommandStatus::Completed,
            result: Some(result),
            error: None,
        }
    }

    /// The command failed with `error`.
    pub fn failed(command_id: impl Into<String>, error: impl Into<String>) -> Self {
        Self::ended(command_id, CommandStatus::Failed, error)
    }

    /// The command ran past its timeout.
    pub fn timed_out(command_id: impl Into<String>, error: impl Into<String>) -> Self {
        Self::ended(command_id, CommandStatus::TimedOut, error)
    }

    fn ended(
        command_id: impl Into<String>,
        status: CommandStatus,
        error: impl Into<String>,
    ) -> Self {
        Self {
            command_id: command_id.into(),
            status,
            result: None,
            error: Some(error.into()),
        }
    }
}

impl<R: DeserializeOwned> WireMessage for CommandCallback<R> {
    const NAME: &'static str = "command callback";

    fn check(&self) -> Result<(), BrokenRule> {
        match (self.status, &self.error) {
            (CommandStatus::Completed, Some(error)) => Err(BrokenRule::new(format!(
                "a completed command has no `error`, got {error:?}"
            ))),
            (CommandStatus::Completed, None) | (_, Some(_)) => Ok(()),
            (status, None) => Err(BrokenRule::new(format!(
                "a command that ended {status:?} needs an `error`"
            ))),
        }
    }
}
