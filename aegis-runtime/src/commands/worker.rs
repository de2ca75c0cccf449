//! The service's side: one durable pull consumer per command, so any one instance takes
//! each command, and a second instance simply shares the consumer.

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::codec::{self, Command, CommandCallback, Priority};
use crate::service::{CommandCall, CommandDefinition, NoParams, WorkFailure};
use crate::subject::{self, MethodName, ServiceName};

/// How long the server waits for an ack before redelivering: longer than most commands;
/// a running command also sends "in progress" acks.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Opens the consumer of one `#[command]` method: before the instance counts as serving,
/// so a command sent right after `start()` returns has a stream and a consumer.
pub(crate) async fn open<S>(
    nats: &async_nats::Client,
    service_name: &ServiceName,
    command: &CommandDefinition<S>,
) -> Result<Commands, String> {
    let js = jetstream::new(nats.clone());
    let stream = super::commands_stream(&js).await?;
    let method = MethodName::new(command.name).map_err(|e| e.to_string())?;
    let durable = format!("{service_name}-{method}");
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: subject::command(service_name, &method),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the consumer {durable}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot consume {durable}: {e}"))?;
    Ok(Commands { messages, durable })
}

/// The commands of one `#[command]` method, as its consumer delivers them.
pub(crate) struct Commands {
    messages: consumer::pull::Stream,
    durable: String,
}

/// Runs the commands of `commands` until the consumer's stream ends.
pub(crate) async fn serve<S: Send + Sync + 'static>(
    commands: Commands,
    nats: async_nats::Client,
    service: Arc<S>,
    command: &'static CommandDefinition<S>,
    permits: Arc<Semaphore>,
) {
    let Commands {
        mut messages,
        durable,
    } = commands;
    // Commands wait here for a permit, highest priority first, then oldest first. Only a
    // bounded number is taken from the consumer ahead, so the others stay available to
    // the other instances (and are not held past their ack wait).
    let mut waiting: BinaryHeap<Waiting> = BinaryHeap::new();
    let mut arrived: u64 = 0;
    let mut ended = false;
    // Taken but not yet running: tell JetStream they are in progress, so that it does not
    // redeliver them elsewhere while they wait here.
    let mut keep_alive = tokio::time::interval(ACK_WAIT / 3);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let may_take = !ended && waiting.len() < MAX_WAITING;
        tokio::select! {
            biased;
            message = messages.next(), if may_take => match message {
                Some(Ok(message)) => {
                    arrived += 1;
                    waiting.push(Waiting::new(message, arrived));
                }
                Some(Err(err)) => tracing::warn!(%durable, %err, "command consumer error"),
                None => ended = true,
            },
            permit = permits.clone().acquire_owned(), if !waiting.is_empty() => {
                let Ok(permit) = permit else { return };
                let Some(next) = waiting.pop() else { continue };
                let (nats, service) = (nats.clone(), service.clone());
                tokio::spawn(async move {
                    run_one(nats, service, command, next.message).await;
                    drop(permit);
                });
            },
            _ = keep_alive.tick(), if !waiting.is_empty() => {
                for queued in waiting.iter() {
                    let _ = queued.message.ack_with(AckKind::Progress).await;
                }
            },
            else => return,
        }
    }
}

/// How many commands one instance takes from the consumer ahead of running them.
const MAX_WAITING: usize = 64;

/// A command waiting for a permit, ordered by priority, then by arrival.
struct Waiting {
    priority: Priority,
    arrived: u64,
    message: jetstream::Message,
}

impl Waiting {
    fn new(message: jetstream::Message, arrived: u64) -> Self {
        let priority = codec::decode::<Command<NoParams>>(&message.payload)
            .map(|command| command.priority)
            .unwrap_or_default();
        Self {
            priority,
            arrived,
            message,
        }
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    /// The greatest is served first: the highest priority, and among equals the oldest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.arrived.cmp(&self.arrived))
    }
}

/// Runs one delivery of a command: within its timeout, acking or retrying as its outcome
/// says, and publishing the outcome when it is final.
async fn run_one<S: Send + Sync + 'static>(
    nats: async_nats::Client,
    service: Arc<S>,
    command: &'static CommandDefinition<S>,
    message: jetstream::Message,
) {
    let delivered = message
        .info()
        .map(|info| info.delivered)
        .unwrap_or(1)
        .max(1) as u64;
    let header = codec::decode::<Command<NoParams>>(&message.payload).ok();
    let timeout = header
        .as_ref()
        .and_then(|c| Duration::try_from_secs_f64(c.timeout).ok())
        .filter(|t| !t.is_zero())
        .unwrap_or(Duration::from_secs_f64(codec::DEFAULT_COMMAND_TIMEOUT_SECS));
    let max_retries = header.as_ref().map_or(0, |c| u64::from(c.max_retries));

    let call = CommandCall::new(message.payload.clone(), nats.clone());
    let run = (command.handler)(service, call);
    let keep_alive = async {
        loop {
            tokio::time::sleep(ACK_WAIT / 2).await;
            let _ = message.ack_with(AckKind::Progress).await;
        }
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, run) => outcome,
        () = keep_alive => return,
    };
    let (callback, ack) = match outcome {
        Err(_elapsed) => {
            let id = header.map(|c| c.message_id);
            let callback = id.map(|id| {
                let bytes = codec::encode(&CommandCallback::<()>::timed_out(
                    id.clone(),
                    format!("the handler ran longer than its timeout of {timeout:?}"),
                ))
                .unwrap_or_default();
                (id, bytes)
            });
            (callback, AckKind::Term)
        }
        Ok(outcome) => match &outcome.failure {
            None => (outcome.callback, AckKind::Ack),
            Some(WorkFailure::Failed(error)) if delivered <= max_retries => {
                tracing::info!(command = command.name, delivered, %error, "command failed; it will be retried");
                (
                    None,
                    AckKind::Nak(Some(Duration::from_millis(200 * delivered))),
                )
            }
            Some(WorkFailure::BadPayload(error)) => {
                tracing::error!(command = command.name, %error, "command payload does not decode: failed without retries");
                metrics::counter!(crate::metrics::POISON_COMMANDS, "command" => command.name)
                    .increment(1);
                (outcome.callback, AckKind::Term)
            }
            Some(failure) => {
                tracing::warn!(command = command.name, delivered, %failure, "command failed for good");
                (outcome.callback, AckKind::Term)
            }
        },
    };
    if let Some((id, bytes)) = callback
        && let Err(err) = nats
            .publish(subject::command_callback(&id), bytes.into())
            .await
    {
        tracing::warn!(command = command.name, %err, "cannot publish a command's outcome");
    }
    if let Err(err) = message.ack_with(ack).await {
        tracing::warn!(command = command.name, %err, "cannot acknowledge a command");
    }
}
