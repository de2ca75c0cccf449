//! JetStream deliveries of commands: one durable pull consumer per `#[command]` method, so
//! any one instance takes each command and a second instance simply shares the consumer;
//! each delivery runs through the serving core ([`super::invoke`]).
//!
//! Deliveries are bounded twice. The consumer is shared by every command of its method, so
//! its `max_deliver` is an upper bound, [`MAX_DELIVER`]; each delivery also checks the
//! command's own `max_retries`. A command thus runs at most
//! `min(max_retries + 1, MAX_DELIVER)` times, and the delivery that may not be retried
//! reports its failure to the caller and terminates the message itself, so the server never
//! drops a command silently. A run that ended without an outcome (its instance crashed)
//! counts as a failed run: a redelivery past `max_retries` fails without running. A handler
//! that panics or runs past the command's timeout fails the command at once (terminal: it
//! ran, and running it again may repeat its effects).

use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use futures_util::future::Either;
use tokio::sync::Semaphore;

use super::StartError;
use super::invoke::{self, Delivery, HandlerKind, Invoked};
use crate::JetStreamError;
use crate::codec::{self, Command, CommandCallback, Priority};
use crate::commands::MAX_DELIVER;
use crate::service::{CommandCall, CommandDefinition, CommandOutcome, NoParams, WorkFailure};
use crate::subject::{self, MethodName, ServiceName};
use crate::telemetry::{self, TraceContext};

/// How long the server waits for an ack before redelivering: longer than most commands;
/// a running command also sends "in progress" acks.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Opens the consumer of one `#[command]` method: before the instance counts as serving,
/// so a command sent right after `start()` returns has a stream and a consumer.
///
/// `None` when the Python SDK's consumer takes the command: the SDK makes a push consumer
/// under the same name, `{service}-{command}`, and binds one instance to it, and a work
/// queue admits no second consumer of a subject, so this instance leaves the command to
/// it rather than fail to start (docs/python-interop.md).
pub(crate) async fn open<S>(
    nats: &async_nats::Client,
    service_name: &ServiceName,
    command: &CommandDefinition<S>,
) -> Result<Option<Commands>, StartError> {
    let method = MethodName::new(command.name)?;
    let js = jetstream::new(nats.clone());
    let stream = crate::commands::commands_stream(&js)
        .await
        .map_err(StartError::Commands)?;
    let subject = subject::command(service_name, &method);
    crate::commands::check_stream(&stream.cached_info().config, &subject).map_err(|err| {
        StartError::Commands(JetStreamError::Other {
            action: format!("use the stream {}", crate::subject::COMMANDS_STREAM),
            source: Box::new(err),
        })
    })?;
    let durable = format!("{service_name}-{method}");
    if let Ok(existing) = stream.consumer_info(&durable).await
        && existing.config.deliver_subject.is_some()
    {
        tracing::warn!(
            %durable, %subject,
            "the Python SDK's push consumer takes this command: this instance leaves it to the SDK instance bound to it"
        );
        return Ok(None);
    }
    // Created or updated: a consumer made by an earlier version, without a delivery bound,
    // gets one.
    let config = consumer::pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: subject,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: MAX_DELIVER,
        ..Default::default()
    };
    let consumer: consumer::PullConsumer = crate::jetstream_error::patiently(
        || {
            format!(
                "create the command consumer {durable} of the stream {}",
                crate::subject::COMMANDS_STREAM
            )
        },
        || stream.create_consumer(config.clone()),
    )
    .await
    .map_err(StartError::Commands)?;
    let messages = consumer.messages().await.map_err(|e| {
        StartError::Commands(JetStreamError::from_nats(
            format!("consume the command consumer {durable}"),
            e,
        ))
    })?;
    Ok(Some(Commands { messages, durable }))
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
                invoke::serve(permit, CommandDelivery::new(nats.clone(), service.clone(), command, next));
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
    /// The envelope without its payload, when it decodes.
    header: Option<Command<NoParams>>,
    message: jetstream::Message,
}

impl Waiting {
    fn new(message: jetstream::Message, arrived: u64) -> Self {
        let header = codec::decode::<Command<NoParams>>(&message.payload).ok();
        Self {
            priority: header.as_ref().map(|c| c.priority).unwrap_or_default(),
            arrived,
            header,
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

/// One JetStream delivery of a command to its `#[command]` method.
struct CommandDelivery<S: 'static> {
    nats: async_nats::Client,
    service: Arc<S>,
    command: &'static CommandDefinition<S>,
    message: jetstream::Message,
    /// The command's id, when its envelope decodes: where its outcome goes.
    id: Option<String>,
    /// How long one run may take.
    timeout: Duration,
    /// How many deliveries this one is, and how many the command allows.
    delivered: u64,
    allowed: u64,
    /// The command's own `max_retries`.
    max_retries: u64,
}

impl<S: Send + Sync + 'static> CommandDelivery<S> {
    fn new(
        nats: async_nats::Client,
        service: Arc<S>,
        command: &'static CommandDefinition<S>,
        waiting: Waiting,
    ) -> Self {
        let Waiting {
            header, message, ..
        } = waiting;
        let delivered = message
            .info()
            .map(|info| info.delivered)
            .unwrap_or(1)
            .max(1) as u64;
        let timeout = header
            .as_ref()
            .and_then(|c| Duration::try_from_secs_f64(c.timeout).ok())
            .filter(|t| !t.is_zero())
            .unwrap_or(Duration::from_secs_f64(codec::DEFAULT_COMMAND_TIMEOUT_SECS));
        let max_retries = header.as_ref().map_or(0, |c| u64::from(c.max_retries));
        crate::metrics::command_delivered(command.name, delivered);
        Self {
            nats,
            service,
            command,
            message,
            id: header.map(|c| c.message_id),
            timeout,
            delivered,
            allowed: max_retries.saturating_add(1).min(MAX_DELIVER as u64),
            max_retries,
        }
    }

    /// The failure callback of this command, when its id is known.
    fn failed(
        &self,
        callback: impl FnOnce(String) -> CommandCallback<()>,
    ) -> Option<(String, Vec<u8>)> {
        let id = self.id.clone()?;
        let bytes = codec::encode(&callback(id.clone())).unwrap_or_default();
        Some((id, bytes))
    }
}

impl<S: Send + Sync + 'static> Delivery for CommandDelivery<S> {
    type Output = CommandOutcome;

    fn kind(&self) -> HandlerKind {
        HandlerKind::Command
    }

    fn method(&self) -> &'static str {
        self.command.name
    }

    fn span(&self) -> tracing::Span {
        crate::telemetry::traced_span!(
            "command",
            kind = "command",
            command = self.command.name,
            id = self.id.as_deref(),
            delivery = self.delivered,
        )
    }

    fn remote_trace(&self) -> Option<TraceContext> {
        TraceContext::extract(self.message.headers.as_ref())
    }

    fn limit(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    /// Runs the handler, telling JetStream meanwhile that the command is in progress. A
    /// delivery past what the command allows (an earlier run ended without an outcome: its
    /// instance stopped or crashed) does not run: the command has failed for good.
    fn start(&mut self) -> impl Future<Output = CommandOutcome> + Send + 'static {
        // A command whose envelope does not decode runs: its handler reports why, as poison.
        if self.id.is_some() && self.delivered > self.allowed {
            let failure = WorkFailure::Failed(format!(
                "the command was delivered {} times but allows {} run(s) (max_retries {}): an \
                 earlier run ended without an outcome (its instance stopped or crashed), so it \
                 is not run again",
                self.delivered, self.allowed, self.max_retries
            ));
            return Either::Left(std::future::ready(CommandOutcome::failure(
                self.id.clone(),
                failure,
            )));
        }
        let call = CommandCall::new(self.message.payload.clone(), self.nats.clone());
        let run = (self.command.handler)(self.service.clone(), call);
        let message = self.message.clone();
        Either::Right(async move {
            let mut run = run;
            loop {
                tokio::select! {
                    outcome = &mut run => return outcome,
                    () = tokio::time::sleep(ACK_WAIT / 2) => {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        })
    }

    /// Acks, retries or terminates the command, and publishes its outcome once it is final.
    async fn settle(self, invoked: Invoked<CommandOutcome>) {
        let name = self.command.name;
        let delivered = self.delivered;
        // A panic or a timeout is recorded where it is caught.
        if let Invoked::Returned(CommandOutcome {
            failure: Some(failure),
            ..
        }) = &invoked
        {
            telemetry::record_error(&tracing::Span::current(), failure);
        }
        let (callback, ack) = match invoked {
            Invoked::TimedOut(limit) => {
                tracing::warn!(
                    command = name,
                    delivered,
                    ?limit,
                    "command ran past its timeout: failed"
                );
                let callback = self.failed(|id| {
                    CommandCallback::timed_out(
                        id,
                        format!("the handler ran longer than its timeout of {limit:?}"),
                    )
                });
                (callback, AckKind::Term)
            }
            Invoked::Panicked(message) => {
                let callback =
                    self.failed(|id| CommandCallback::failed(id, invoke::panicked(&message)));
                (callback, AckKind::Term)
            }
            Invoked::Returned(outcome) => match &outcome.failure {
                None => (outcome.callback, AckKind::Ack),
                Some(WorkFailure::BadPayload(error)) => {
                    tracing::error!(command = name, %error, "command payload does not decode: failed without retries");
                    metrics::counter!(crate::metrics::POISON_COMMANDS, "command" => name)
                        .increment(1);
                    (outcome.callback, AckKind::Term)
                }
                Some(WorkFailure::Failed(error)) if delivered < self.allowed => {
                    tracing::info!(command = name, delivered, allowed = self.allowed, %error, "command failed; it will be retried");
                    (
                        None,
                        AckKind::Nak(Some(Duration::from_millis(200 * delivered))),
                    )
                }
                Some(failure) => {
                    tracing::warn!(command = name, delivered, %failure, "command failed for good");
                    (outcome.callback, AckKind::Term)
                }
            },
        };
        if let Some((id, bytes)) = callback
            && let Err(err) = self
                .nats
                .publish(subject::command_callback(&id), bytes.into())
                .await
        {
            tracing::warn!(command = name, %err, "cannot publish a command's outcome");
        }
        if let Err(err) = self.message.ack_with(ack).await {
            tracing::warn!(command = name, %err, "cannot acknowledge a command");
        }
    }
}
