//! The service's side: one durable pull consumer per command, so any one instance takes
//! each command, and a second instance simply shares the consumer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::codec::{self, Command, CommandCallback};
use crate::service::{CommandCall, CommandDefinition, NoParams, WorkFailure};
use crate::subject::{self, MethodName, ServiceName};

/// How long the server waits for an ack before redelivering: longer than most commands;
/// a running command also sends "in progress" acks.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Consumes the commands of one `#[command]` method until the consumer's stream ends.
pub(crate) async fn serve<S: Send + Sync + 'static>(
    nats: async_nats::Client,
    service_name: ServiceName,
    service: Arc<S>,
    command: &'static CommandDefinition<S>,
    permits: Arc<Semaphore>,
) -> Result<(), String> {
    let js = jetstream::new(nats.clone());
    let stream = super::commands_stream(&js).await?;
    let method = MethodName::new(command.name).map_err(|e| e.to_string())?;
    let durable = format!("{service_name}-{method}");
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: subject::command(&service_name, &method),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the consumer {durable}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot consume {durable}: {e}"))?;
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(%durable, %err, "command consumer error");
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return Ok(());
        };
        let (nats, service) = (nats.clone(), service.clone());
        tokio::spawn(async move {
            run_one(nats, service, command, message).await;
            drop(permit);
        });
    }
    Ok(())
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
