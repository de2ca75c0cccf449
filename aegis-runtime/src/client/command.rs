//! The caller's side of a command: its options, its progress and its outcome.

use std::marker::PhantomData;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::client::CallErrorKind;
use crate::codec::{self, CommandCallback, CommandProgress, CommandStatus};

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

/// A command that was accepted by the stream: watch its progress, then await its outcome.
///
/// ```no_run
/// # async fn run(client: aegis_runtime::ServiceClient) -> Result<(), aegis_runtime::CallError> {
/// use futures_util::StreamExt;
///
/// let mut handle = client.start_command::<_, serde_json::Value>("reindex", &serde_json::json!({"orders": 3}), Default::default()).await?;
/// while let Some(update) = handle.next_progress().await {
///     println!("{}% {}", update.progress, update.status);
/// }
/// let outcome = handle.outcome().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CommandHandle<R> {
    pub(crate) id: String,
    pub(crate) progress: async_nats::Subscriber,
    pub(crate) callback: async_nats::Subscriber,
    pub(crate) wait: Duration,
    pub(crate) client: crate::ServiceClient,
    pub(crate) name: String,
    pub(crate) done: Option<CommandCallback<serde_json::Value>>,
    pub(crate) _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> CommandHandle<R> {
    /// The command's id (its envelope's `message_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next progress update, in the order they were sent; `None` once the command has
    /// ended (or nothing was heard within the wait).
    pub async fn next_progress(&mut self) -> Option<CommandProgress> {
        if self.done.is_some() {
            return None;
        }
        loop {
            tokio::select! {
                biased;
                message = self.progress.next() => {
                    let message = message?;
                    match codec::decode::<CommandProgress>(&message.payload) {
                        Ok(update) => return Some(update),
                        Err(err) => tracing::debug!(%err, "ignoring a progress message that does not decode"),
                    }
                }
                message = self.callback.next() => {
                    let message = message?;
                    match codec::decode::<CommandCallback>(&message.payload) {
                        Ok(callback) => {
                            self.done = Some(callback);
                            return None;
                        }
                        Err(err) => tracing::debug!(%err, "ignoring a callback that does not decode"),
                    }
                }
                () = tokio::time::sleep(self.wait) => return None,
            }
        }
    }

    /// Waits for the outcome: the typed result when the command completed.
    ///
    /// # Errors
    /// [`CallError`](crate::CallError): the handler's failure, a timeout, or a result that
    /// does not decode.
    pub async fn outcome(mut self) -> Result<R, crate::CallError> {
        let fail = |kind| crate::CallError::new(self.client.service(), &self.name, 1, kind);
        let callback = match self.done.take() {
            Some(callback) => callback,
            None => loop {
                let message = match tokio::time::timeout(self.wait, self.callback.next()).await {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        return Err(fail(CallErrorKind::Transport(
                            super::error::TransportError::new(super::error::ConnectionClosed),
                        )));
                    }
                    Err(_) => return Err(fail(CallErrorKind::Timeout(self.wait))),
                };
                match codec::decode::<CommandCallback>(&message.payload) {
                    Ok(callback) => break callback,
                    Err(err) => tracing::debug!(%err, "ignoring a callback that does not decode"),
                }
            },
        };
        match callback.status {
            CommandStatus::Completed => {
                let value = callback.result.unwrap_or(serde_json::Value::Null);
                serde_json::from_value(value).map_err(|e| {
                    fail(CallErrorKind::MissingResult(format!(
                        "the command's result does not decode: {e}"
                    )))
                })
            }
            CommandStatus::TimedOut => Err(fail(CallErrorKind::Handler(format!(
                "timed out: {}",
                callback.error.unwrap_or_default()
            )))),
            _ => Err(fail(CallErrorKind::Handler(
                callback.error.unwrap_or_default(),
            ))),
        }
    }
}
