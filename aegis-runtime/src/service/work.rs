//! Events and commands as their generated handlers see them: not yet decoded, so each
//! handler decodes straight into its own payload type.

use std::fmt::Display;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EventContext, Progress};
use crate::codec::{self, Command, CommandCallback, Event};

#[doc(hidden)] // glue for the generated code, not public API
/// Why an event or command handler did not succeed, which decides what happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkFailure {
    /// The message cannot be decoded into the handler's type: retrying cannot help, so it
    /// is terminated and counted, never redelivered.
    #[error("{0}")]
    BadPayload(String),
    /// The handler returned an error; delivery may be retried.
    #[error("{0}")]
    Failed(String),
}

#[doc(hidden)] // glue for the generated code, not public API
/// An event delivered to a generated `#[subscribe]` handler.
#[derive(Debug)]
pub struct EventCall {
    payload: Bytes,
    context: EventContext,
}

impl EventCall {
    /// An event received as `payload`.
    pub fn new(payload: Bytes, context: EventContext) -> Self {
        Self { payload, context }
    }

    /// Decodes the event envelope with a payload of type `T`.
    ///
    /// # Errors
    /// [`WorkFailure::BadPayload`] saying what is wrong.
    pub fn decode<T: DeserializeOwned>(self) -> Result<(EventContext, Event<T>), WorkFailure> {
        match codec::decode::<Event<T>>(&self.payload) {
            Ok(event) => Ok((self.context, event)),
            Err(err) => Err(WorkFailure::BadPayload(err.to_string())),
        }
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// What an event handler or a lifecycle hook may return: `()` or `Result<(), E>`.
pub trait UnitOutcome {
    /// The outcome as the runtime acts on it.
    fn into_outcome(self) -> Result<(), WorkFailure>;
}

impl UnitOutcome for () {
    fn into_outcome(self) -> Result<(), WorkFailure> {
        Ok(())
    }
}

impl<E: Display> UnitOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), WorkFailure> {
        self.map_err(|e| WorkFailure::Failed(e.to_string()))
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// A command delivered to a generated `#[command]` handler.
#[derive(Debug)]
pub struct CommandCall {
    payload: Bytes,
    nats: async_nats::Client,
}

/// The identity of the command being handled, to address its outcome.
#[derive(Debug, Clone)]
pub struct CommandInfo {
    /// The command's `message_id`.
    pub id: String,
    /// Its `timeout`, in seconds.
    pub timeout: f64,
    /// Its `max_retries`.
    pub max_retries: u32,
}

impl CommandCall {
    /// A command received as `payload`; progress is published over `nats`.
    pub fn new(payload: Bytes, nats: async_nats::Client) -> Self {
        Self { payload, nats }
    }

    /// Decodes the command envelope with a payload of type `T`.
    ///
    /// # Errors
    /// A [`WorkFailure::BadPayload`] outcome, ready to report.
    pub fn decode<T: DeserializeOwned>(self) -> Result<(CommandInfo, Progress, T), CommandOutcome> {
        match codec::decode::<Command<T>>(&self.payload) {
            Ok(command) => {
                let info = CommandInfo {
                    id: command.message_id,
                    timeout: command.timeout,
                    max_retries: command.max_retries,
                };
                let progress = Progress::new(self.nats, info.id.clone());
                Ok((info, progress, command.payload))
            }
            Err(err) => {
                // Report to the caller when at least the envelope's id is readable.
                let id = codec::decode::<Command<serde_json::Value>>(&self.payload)
                    .map(|c| c.message_id)
                    .ok();
                Err(CommandOutcome::failure(
                    id,
                    WorkFailure::BadPayload(err.to_string()),
                ))
            }
        }
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// How a command ended: the encoded callback to publish, if the command's id is known.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// The command's id and the encoded `CommandCallback`.
    pub callback: Option<(String, Vec<u8>)>,
    /// `None` when it completed.
    pub failure: Option<WorkFailure>,
}

impl CommandOutcome {
    /// The outcome of a handler that returned `output`.
    pub fn of<O: CommandOutput>(command: &CommandInfo, output: O) -> Self {
        match output.into_result() {
            Ok(encoded_result) => Self::encode(
                &command.id,
                CommandCallback::completed(command.id.clone(), encoded_result),
                None,
            ),
            Err(failure) => Self::failure(Some(command.id.clone()), failure),
        }
    }

    /// The outcome of a command that failed with `failure` (reported when `id` is known).
    pub(crate) fn failure(id: Option<String>, failure: WorkFailure) -> Self {
        match id {
            Some(id) => {
                let callback = CommandCallback::<()>::failed(id.clone(), failure.to_string());
                Self::encode(&id, callback, Some(failure))
            }
            None => Self {
                callback: None,
                failure: Some(failure),
            },
        }
    }

    fn encode<R: Serialize>(
        id: &str,
        callback: CommandCallback<R>,
        failure: Option<WorkFailure>,
    ) -> Self {
        match codec::encode(&callback) {
            Ok(bytes) => Self {
                callback: Some((id.to_owned(), bytes)),
                failure,
            },
            Err(err) => Self::failure(
                Some(id.to_owned()),
                WorkFailure::Failed(format!("the result cannot be encoded: {err}")),
            ),
        }
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// What a command handler may return: a value, `()`, or `Result<T, E>`.
pub trait CommandOutput {
    /// The result as a JSON value, or the failure.
    fn into_result(self) -> Result<serde_json::Value, WorkFailure>;
}

impl<T: Serialize, E: Display> CommandOutput for Result<T, E> {
    fn into_result(self) -> Result<serde_json::Value, WorkFailure> {
        match self {
            Ok(value) => serde_json::to_value(value)
                .map_err(|e| WorkFailure::Failed(format!("the result cannot be encoded: {e}"))),
            Err(error) => Err(WorkFailure::Failed(error.to_string())),
        }
    }
}

#[doc(hidden)] // glue for the generated code, not public API
/// A command handler's plain value, wrapped so it cannot be confused with a `Result`.
#[derive(Debug)]
pub struct Completed<T>(pub T);

impl<T: Serialize> CommandOutput for Completed<T> {
    fn into_result(self) -> Result<serde_json::Value, WorkFailure> {
        Ok::<T, std::convert::Infallible>(self.0).into_result()
    }
}
