//! Calling services: the one call path every generated `{Type}Client` goes through.

mod error;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, ExclusiveReply, RpcRequest, RpcResponse};
use crate::commands::{CommandHandle, CommandOptions};
use crate::subject::{self, MethodName, ServiceName};

pub use error::{CallError, CallErrorKind};
pub use retry::RetryPolicy;

/// Default time a call waits for its reply.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one service: calls its methods by name, encodes and decodes envelopes,
/// unwraps exclusive replies and retries calls that provably did not run.
///
/// Generated clients (`OrderProcessorClient`) wrap one; use it directly for untyped calls.
///
/// ```no_run
/// use aegis_runtime::ServiceClient;
/// use serde_json::{Value, json};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let orders = ServiceClient::new(nats, "order-processor")?;
/// let health: Value = orders.call("health_check", &json!({})).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceClient {
    nats: async_nats::Client,
    service: ServiceName,
    source: Arc<str>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl ServiceClient {
    /// A client of `service` over `nats`.
    ///
    /// # Errors
    /// [`InvalidName`](crate::subject::InvalidName) when `service` breaks the naming rule.
    pub fn new(
        nats: async_nats::Client,
        service: &str,
    ) -> Result<Self, crate::subject::InvalidName> {
        Ok(Self::for_service(nats, ServiceName::new(service)?))
    }

    /// A client of `service` over `nats`.
    pub fn for_service(nats: async_nats::Client, service: ServiceName) -> Self {
        let source = format!("{service}-client-{}", &codec::new_message_id()[..8]);
        Self {
            nats,
            service,
            source: source.into(),
            timeout: DEFAULT_CALL_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// Sets how long each call waits for a reply.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy for calls that did not run.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The service this client calls.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Calls `method` with `params` and decodes its result.
    ///
    /// # Errors
    /// [`CallError`]: the handler's error, a timeout, no instance, a reply that does not
    /// decode.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CallError> {
        self.call_with(method, params, false).await
    }

    /// Calls the exclusive `method`, which only the active instance runs: a `NOT_ACTIVE`
    /// answer (the method did not run) is retried per the retry policy.
    ///
    /// # Errors
    /// As [`ServiceClient::call`], and [`CallErrorKind::NotActive`] when no instance was
    /// active within the retries.
    pub async fn call_exclusive<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CallError> {
        self.call_with(method, params, true).await
    }

    /// Sends the command `name` with `payload` and waits for its typed result.
    ///
    /// # Errors
    /// [`CallError`]: the handler's failure (after its retries), a timeout, a result that
    /// does not decode, or a stream that cannot be reached.
    pub async fn command<P: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        payload: &P,
    ) -> Result<R, CallError> {
        self.start_command(name, payload, CommandOptions::default())
            .await?
            .outcome()
            .await
    }

    /// Sends the command `name` with `payload` and returns once the stream has it: follow
    /// its progress and await its outcome on the handle.
    ///
    /// # Errors
    /// [`CallError`] when the command cannot be encoded or stored.
    pub async fn start_command<P: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        payload: &P,
        options: CommandOptions,
    ) -> Result<CommandHandle<R>, CallError> {
        let fail = |kind| CallError::new(&self.service, name, 1, kind);
        let method = MethodName::new(name).map_err(|e| fail(CallErrorKind::InvalidName(e)))?;
        let mut command = codec::Command::new(name, payload)
            .with_priority(options.priority)
            .with_target(self.service.as_str())
            .with_source(self.source.as_ref());
        command.max_retries = options.max_retries;
        command.timeout = options.timeout.as_secs_f64();
        let bytes =
            codec::encode(&command).map_err(|e| fail(CallErrorKind::Encode(e.to_string())))?;
        let transport = |e: &dyn std::fmt::Display| fail(CallErrorKind::Transport(e.to_string()));
        // Listen before sending, so neither progress nor the outcome can be missed.
        let progress = self
            .nats
            .subscribe(subject::command_progress(&command.message_id))
            .await
            .map_err(|e| transport(&e))?;
        let callback = self
            .nats
            .subscribe(subject::command_callback(&command.message_id))
            .await
            .map_err(|e| transport(&e))?;
        let js = async_nats::jetstream::new(self.nats.clone());
        crate::commands::commands_stream(&js)
            .await
            .map_err(|e| transport(&e))?;
        js.publish(subject::command(&self.service, &method), bytes.into())
            .await
            .map_err(|e| transport(&e))?
            .await
            .map_err(|e| transport(&e))?;
        let runs = options.max_retries.saturating_add(1);
        Ok(CommandHandle {
            id: command.message_id,
            progress,
            callback,
            wait: options.timeout.saturating_mul(runs) + Duration::from_secs(5),
            client: self.clone(),
            name: name.to_owned(),
            done: None,
            _result: std::marker::PhantomData,
        })
    }

    async fn call_with<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        exclusive: bool,
    ) -> Result<R, CallError> {
        let fail = |attempts, kind| CallError::new(&self.service, method, attempts, kind);
        let method_name =
            MethodName::new(method).map_err(|e| fail(0, CallErrorKind::InvalidName(e)))?;
        let subject = subject::rpc(&self.service, &method_name);
        let request = RpcRequest::new(method, params)
            .with_source(self.source.as_ref())
            .with_target(self.service.as_str())
            .with_timeout(self.timeout.as_secs_f64());
        let payload: bytes::Bytes = codec::encode(&request)
            .map_err(|e| fail(0, CallErrorKind::Encode(e.to_string())))?
            .into();

        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .attempt::<R>(&subject, payload.clone(), exclusive)
                .await;
            match outcome {
                Ok(value) => return Ok(value),
                Err(kind) if self.retry.may_retry(&kind) && attempt < self.retry.max_attempts => {
                    let delay = self.retry.delay_before_retry(attempt);
                    tracing::debug!(service = %self.service, method, attempt, ?delay, error = %kind, "retrying a call that did not run");
                    tokio::time::sleep(delay).await;
                }
                Err(kind) => return Err(fail(attempt, kind)),
            }
        }
    }

    async fn attempt<R: DeserializeOwned>(
        &self,
        subject: &str,
        payload: bytes::Bytes,
        exclusive: bool,
    ) -> Result<R, CallErrorKind> {
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => CallErrorKind::NoResponders,
                async_nats::RequestErrorKind::TimedOut => CallErrorKind::Timeout(self.timeout),
                _ => CallErrorKind::Transport(e.to_string()),
            })?;
        if exclusive {
            let response: RpcResponse<ExclusiveReply<R>> =
                codec::decode(&reply.payload).map_err(CallErrorKind::Decode)?;
            let nested = unwrap_response(response)?.ok_or_else(|| {
                CallErrorKind::MissingResult(
                    "the reply of an exclusive method has no exclusive reply in it".into(),
                )
            })?;
            if nested.is_not_active() {
                return Err(CallErrorKind::NotActive(nested.message.unwrap_or_default()));
            }
            match nested.into_result() {
                Ok(result) => value_or_unit(result),
                Err(message) => Err(CallErrorKind::Handler(message)),
            }
        } else {
            let response: RpcResponse<R> =
                codec::decode(&reply.payload).map_err(CallErrorKind::Decode)?;
            value_or_unit(unwrap_response(response)?)
        }
    }
}

/// The result of a response, or the handler's error (or a top-level NOT_ACTIVE).
fn unwrap_response<R>(response: RpcResponse<R>) -> Result<Option<R>, CallErrorKind> {
    match response.into_result() {
        Ok(result) => Ok(result),
        Err(message)
            if message == ExclusiveReply::<()>::NOT_ACTIVE || message.starts_with("NOT_ACTIVE") =>
        {
            Err(CallErrorKind::NotActive(message))
        }
        Err(message) => Err(CallErrorKind::Handler(message)),
    }
}

/// A nil result is the value of methods returning `()` or `Option`; for any other type it
/// is an error.
fn value_or_unit<R: DeserializeOwned>(result: Option<R>) -> Result<R, CallErrorKind> {
    match result {
        Some(value) => Ok(value),
        None => serde_json::from_value(serde_json::Value::Null).map_err(|e| {
            CallErrorKind::MissingResult(format!(
                "the reply has no result, but one was expected ({e})"
            ))
        }),
    }
}
