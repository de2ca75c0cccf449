//! Running a service as a live instance on NATS: subscribe its subjects, dispatch calls.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::codec::headers;
use crate::leadership::Leadership;
use crate::service::{Reply, RpcCall, RpcContext, RpcDefinition, Service, ServiceDefinition};
use crate::subject::{self, GroupId, InstanceId, InvalidName, MethodName, ServiceName};

/// Default number of calls an instance runs at once.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// How long [`RunningService::stop`] waits for calls in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a service as an instance on NATS.
///
/// ```no_run
/// use aegis_runtime::{ServiceRunner, service};
///
/// struct Echo;
///
/// #[service(name = "echo-runner")]
/// impl Echo {
///     #[rpc]
///     async fn ping(&self) -> String {
///         "pong".into()
///     }
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let running = ServiceRunner::new(Echo).nats(nats).start().await?;
/// println!("serving as {}", running.instance_id());
/// running.stop().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "a runner does nothing until `.start().await`"]
pub struct ServiceRunner<S> {
    service: S,
    nats: Option<async_nats::Client>,
    instance_id: Option<String>,
    group: Option<String>,
    concurrency: usize,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No NATS connection was given.
    #[error("no NATS connection: call `.nats(client)` on the runner")]
    NoConnection,
    /// A name in the service definition or the configuration breaks its rule.
    #[error("{0}")]
    InvalidName(#[from] InvalidName),
    /// The service version is not `MAJOR.MINOR.PATCH`.
    #[error("{0}")]
    InvalidVersion(String),
    /// Subscribing failed.
    #[error("cannot subscribe {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::SubscribeError,
    },
}

impl<S: Service> ServiceRunner<S> {
    /// A runner for `service`.
    pub fn new(service: S) -> Self {
        Self {
            service,
            nats: None,
            instance_id: None,
            group: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// The NATS connection to serve on.
    pub fn nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
        self
    }

    /// The instance id (default `{service}-{8 hex digits}`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// The sticky-active group (default `default`).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How many calls run at once (default 256); further calls wait.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// Validates the configuration, subscribes every RPC subject, and returns once the
    /// server has the subscriptions (a round trip through it, not just a flush).
    ///
    /// # Errors
    /// [`StartError`] saying what is wrong.
    pub async fn start(self) -> Result<RunningService, StartError> {
        let definition = S::definition();
        let nats = self.nats.ok_or(StartError::NoConnection)?;
        let service_name = ServiceName::new(definition.name)?;
        crate::instance::check_version(definition.version).map_err(StartError::InvalidVersion)?;
        let instance_id = match self.instance_id {
            Some(id) => InstanceId::new(id)?,
            None => InstanceId::generate(&service_name),
        };
        let group = match self.group {
            Some(group) => GroupId::new(group)?,
            None => GroupId::default(),
        };
        let leadership = Leadership::new(group);
        let shared = Arc::new(Shared {
            service: Arc::new(self.service),
            definition,
            nats: nats.clone(),
            instance_id: instance_id.as_str().into(),
            leadership: leadership.clone(),
            permits: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
        });

        let mut listeners = JoinSet::new();
        for rpc in definition.rpcs {
            let method = MethodName::new(rpc.name)?;
            let queue = subject::rpc_queue_group(&service_name);
            let any = subject::rpc(&service_name, &method);
            let one = subject::rpc_instance(&service_name, &instance_id, &method);
            // Addressed to this instance: always served (a standby answers NOT_ACTIVE).
            let own =
                nats.subscribe(one.clone())
                    .await
                    .map_err(|source| StartError::Subscribe {
                        subject: one,
                        source,
                    })?;
            listeners.spawn(listen(shared.clone(), rpc, own));
            if rpc.exclusive {
                // Shared by the group: only the active instance subscribes, so calls are
                // never spread over standbys.
                listeners.spawn(serve_while_active(shared.clone(), rpc, any, queue));
            } else {
                let shared_sub =
                    nats.queue_subscribe(any.clone(), queue)
                        .await
                        .map_err(|source| StartError::Subscribe {
                            subject: any,
                            source,
                        })?;
                listeners.spawn(listen(shared.clone(), rpc, shared_sub));
            }
        }
        for command in definition.commands {
            let (nats, name, service) =
                (nats.clone(), service_name.clone(), shared.service.clone());
            let permits = shared.permits.clone();
            listeners.spawn(async move {
                if let Err(err) =
                    crate::commands::worker::serve(nats, name, service, command, permits).await
                {
                    tracing::error!(command = command.name, %err, "commands are not served");
                }
            });
        }
        round_trip(&nats).await;
        tracing::info!(service = %service_name, instance = %instance_id, rpcs = definition.rpcs.len(), "instance serving");
        Ok(RunningService {
            shared,
            listeners,
            instance_id,
            service_name,
        })
    }
}

/// State shared by the listeners and handlers of one instance.
struct Shared<S: 'static> {
    service: Arc<S>,
    definition: &'static ServiceDefinition<S>,
    nats: async_nats::Client,
    instance_id: Arc<str>,
    leadership: Leadership,
    permits: Arc<Semaphore>,
    concurrency: usize,
}

/// A live instance. Stop it with [`RunningService::stop`]; dropping it stops listening
/// without waiting for calls in flight.
#[derive(Debug)]
pub struct RunningService {
    shared: Arc<dyn Stoppable>,
    listeners: JoinSet<()>,
    instance_id: InstanceId,
    service_name: ServiceName,
}

/// What `stop` needs from the shared state, without the service's type.
trait Stoppable: Send + Sync + std::fmt::Debug {
    fn leadership(&self) -> &Leadership;
    fn permits(&self) -> (&Arc<Semaphore>, usize);
    fn nats(&self) -> &async_nats::Client;
}

impl<S: Service> Stoppable for Shared<S> {
    fn leadership(&self) -> &Leadership {
        &self.leadership
    }
    fn permits(&self) -> (&Arc<Semaphore>, usize) {
        (&self.permits, self.concurrency)
    }
    fn nats(&self) -> &async_nats::Client {
        &self.nats
    }
}

impl<S: 'static> std::fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("service", &self.definition.name)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The instance id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// The service name.
    pub fn service_name(&self) -> &ServiceName {
        &self.service_name
    }

    /// This instance's role in its sticky-active group.
    pub fn leadership(&self) -> &Leadership {
        self.shared.leadership()
    }

    /// Stops taking calls, waits (up to 30 s) for the calls in flight to be answered, and
    /// flushes the replies.
    pub async fn stop(mut self) {
        self.listeners.shutdown().await;
        let (permits, all) = self.shared.permits();
        let drained =
            tokio::time::timeout(DEFAULT_DRAIN_TIMEOUT, permits.acquire_many(all as u32)).await;
        if drained.is_err() {
            tracing::warn!(instance = %self.instance_id, "calls still running after the drain timeout");
        }
        let _ = self.shared.nats().flush().await;
        tracing::info!(service = %self.service_name, instance = %self.instance_id, "instance stopped");
    }
}

/// Receives the calls of one subscription and runs each in its own task.
async fn listen<S: Service>(
    shared: Arc<Shared<S>>,
    rpc: &'static RpcDefinition<S>,
    mut subscriber: async_nats::Subscriber,
) {
    while let Some(message) = subscriber.next().await {
        let Some(reply_to) = message.reply.clone() else {
            tracing::debug!(subject = %message.subject, "ignoring a request without a reply subject");
            continue;
        };
        let Ok(permit) = shared.permits.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let reply = dispatch(&shared, rpc, message.payload).await;
            let mut headers = HeaderMap::new();
            headers.insert(headers::INSTANCE_ID, shared.instance_id.as_ref());
            if let Some(term) = reply.1 {
                headers.insert(headers::TERM, term.to_string().as_str());
            }
            if let Err(err) = shared
                .nats
                .publish_with_headers(reply_to, headers, reply.0.payload.into())
                .await
            {
                tracing::warn!(method = rpc.name, %err, "cannot send a reply");
            }
            drop(permit);
        });
    }
}

/// Holds the group's subscription to an exclusive method's subject while this instance is
/// active, and drops it (unsubscribing) when it steps down.
async fn serve_while_active<S: Service>(
    shared: Arc<Shared<S>>,
    rpc: &'static RpcDefinition<S>,
    subject: String,
    queue: String,
) {
    loop {
        if !shared.leadership.wait_until(true).await {
            return;
        }
        let subscriber = match shared
            .nats
            .queue_subscribe(subject.clone(), queue.clone())
            .await
        {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!(%subject, %err, "cannot subscribe an exclusive method; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::debug!(%subject, "active: serving exclusive method");
        tokio::select! {
            () = listen(shared.clone(), rpc, subscriber) => return,
            _ = shared.leadership.wait_until(false) => {
                tracing::debug!(%subject, "standby: no longer serving exclusive method");
            }
        }
    }
}

/// Runs one call: the active check for exclusive methods, the handler with panics caught.
/// Returns the reply and, for exclusive calls, the term they ran under.
async fn dispatch<S: Service>(
    shared: &Shared<S>,
    rpc: &'static RpcDefinition<S>,
    payload: bytes::Bytes,
) -> (Reply, Option<u64>) {
    let term = if rpc.exclusive {
        shared.leadership.term()
    } else {
        None
    };
    let context = RpcContext::new(
        shared.definition.name,
        rpc.name,
        shared.instance_id.clone(),
        rpc.exclusive,
        term,
    );
    let span = tracing::debug_span!("rpc", service = shared.definition.name, method = rpc.name, instance = %shared.instance_id);
    let _entered = span.enter();
    if rpc.exclusive && term.is_none() {
        // Decode only the header, to answer with the request's ids.
        let call = RpcCall::new(payload, context);
        return match call.decode::<crate::service::NoParams>() {
            Ok((context, _)) => (Reply::not_active(&context, shared.leadership.group()), None),
            Err(bad_request) => (bad_request, None),
        };
    }
    let call = RpcCall::new(payload, context.clone());
    let handler = (rpc.handler)(shared.service.clone(), call);
    drop(_entered);
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(reply) => (reply, term),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(method = rpc.name, %message, "handler panicked");
            (
                Reply::handler_error(&context, &format!("the handler panicked: {message}")),
                term,
            )
        }
    }
}

/// Sends a message to this connection through the server and waits for it: the server
/// processes a connection's protocol in order, so every subscription made before is in
/// place once the message comes back.
async fn round_trip(nats: &async_nats::Client) {
    let inbox = nats.new_inbox();
    let Ok(mut probe) = nats.subscribe(inbox.clone()).await else {
        return;
    };
    if nats.publish(inbox, bytes::Bytes::new()).await.is_err() {
        return;
    }
    if tokio::time::timeout(Duration::from_secs(5), probe.next())
        .await
        .is_err()
    {
        tracing::warn!(
            "no round trip through the server within 5 s; subscriptions may not be ready yet"
        );
    }
}

#[cfg(feature = "testing")]
impl RunningService {
    /// Makes this instance active under `term` without an election: for tests of exclusive
    /// methods only. Real instances become active only by winning the election.
    #[doc(hidden)]
    pub fn force_active_for_tests(&self, term: u64) {
        self.shared.leadership().become_active(term);
    }
}
