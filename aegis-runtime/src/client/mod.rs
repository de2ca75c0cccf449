//! Calling services: the one call path every generated `{Type}Client` goes through.
//!
//! A call goes discovery → selection → request with a deadline → retry, and a retry happens
//! only when the call provably did not run (NOT_ACTIVE, no responders, an instance that
//! is gone), or after a timeout for a method marked idempotent; see `docs/clients.md`.

mod budget;
mod call;
mod command;
mod ejection;
mod error;
mod method;
mod options;
mod python_leader;
mod retry;
mod selection;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::codec;
use crate::discovery::{Discovery, WatchDiscovery};
use crate::jetstream_error::BoxError;
use crate::leader::{Leader, LeaderWatch};
use crate::subject::{self, GroupId, InstanceId, MethodName, ServiceName};
use crate::telemetry;

pub use budget::RetryBudget;
pub use call::decode_reply;
pub use command::{CommandHandle, CommandOptions};
pub use error::{CallError, CallErrorKind, TransportError};
pub use options::CallOptions;
pub use retry::{RetryPolicy, StickyActiveConfig};
pub use selection::{Selection, Selector};

use ejection::Ejections;
use method::KnownMethod;

/// Default deadline of a call: 5 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one service: finds its instances, picks one, calls methods by name with a
/// deadline, unwraps exclusive replies and retries calls that provably did not run.
///
/// Generated clients (`OrderProcessorClient`) wrap one; use it directly for untyped calls.
/// Clones share their discovery, selection state, exclusive pin and retry budget.
///
/// By default it discovers instances with a [`WatchDiscovery`] of its own, takes them in
/// turn ([`Selection::RoundRobin`]), waits 5 s per call, retries plain methods 3 times and
/// exclusive ones until the deadline, within a [`RetryBudget::default`].
///
/// ```no_run
/// use std::time::Duration;
/// use aegis_runtime::ServiceClient;
/// use aegis_runtime::client::Selection;
/// use serde_json::{Value, json};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let orders = ServiceClient::new(nats, "order-processor")?
///     .with_timeout(Duration::from_secs(2))
///     .with_selection(Selection::Random);
/// let health: Value = orders.call("health_check", &json!({})).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceClient {
    /// Behind one `Arc`, so that a clone per task or per call costs one increment.
    inner: Arc<Inner>,
}

/// What a [`ServiceClient`] and its clones share.
#[derive(Debug, Clone)]
struct Inner {
    nats: async_nats::Client,
    service: ServiceName,
    source: Arc<str>,
    timeout: Duration,
    retry: Option<RetryPolicy>,
    discovery: Option<Arc<dyn Discovery>>,
    selector: Arc<Selector>,
    /// The sticky-active group whose leader exclusive calls go to.
    group: GroupId,
    /// The watch of that leader, shared on the connection; started by the first exclusive
    /// call (or [`ServiceClient::leader`]).
    leader: Arc<OnceLock<Arc<LeaderWatch>>>,
    /// Whether a Python SDK instance leads the group while no Aegis instance does.
    python_leader: Arc<python_leader::PythonLeaderProbe>,
    /// The instance that last answered an exclusive call as the active one: where
    /// exclusive calls go while the leader watch cannot be followed.
    active_pin: Arc<Mutex<Option<InstanceId>>>,
    /// Instances that did not answer a plain call, skipped until they show a fresh
    /// heartbeat.
    ejections: Arc<Ejections>,
    budget: RetryBudget,
    /// Each method called so far. A service has a handful of methods: a scan compares
    /// fewer bytes than hashing the name would.
    methods: Arc<Mutex<Vec<Arc<KnownMethod>>>>,
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
        let inner = Inner {
            discovery: Some(Arc::new(WatchDiscovery::new(nats.clone()))),
            nats,
            service,
            source: source.into(),
            timeout: DEFAULT_CALL_TIMEOUT,
            retry: None,
            selector: Arc::default(),
            group: GroupId::default(),
            leader: Arc::default(),
            python_leader: Arc::default(),
            active_pin: Arc::default(),
            ejections: Arc::default(),
            budget: RetryBudget::default(),
            methods: Arc::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sets the deadline of each call: how long it may take, retries included. It is sent
    /// to the server, which does not run a request that arrives after it.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// Sets the retry policy of every method (instead of the defaults: 3 retries for plain
    /// methods, until the deadline for exclusive ones).
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        Arc::make_mut(&mut self.inner).retry = Some(retry);
        self
    }

    /// Sets the retry budget (shared with the clones made after this).
    #[must_use]
    pub fn with_retry_budget(mut self, budget: RetryBudget) -> Self {
        Arc::make_mut(&mut self.inner).budget = budget;
        self
    }

    /// Finds instances with `discovery`: share one between the clients of a connection.
    #[must_use]
    pub fn with_discovery(mut self, discovery: impl Discovery) -> Self {
        Arc::make_mut(&mut self.inner).discovery = Some(Arc::new(discovery));
        self
    }

    /// Does not look instances up nor follow the leader: every call goes to the service's
    /// shared subject and NATS picks an instance of the queue group (for exclusive methods,
    /// the leader's). Retries cannot avoid an instance then.
    #[must_use]
    pub fn without_discovery(mut self) -> Self {
        Arc::make_mut(&mut self.inner).discovery = None;
        self
    }

    /// Sets how an instance is picked for plain methods (exclusive ones go to the active
    /// instance).
    #[must_use]
    pub fn with_selection(mut self, selection: Selection) -> Self {
        Arc::make_mut(&mut self.inner).selector = Arc::new(Selector::new(selection));
        self
    }

    /// Sets the sticky-active group whose leader runs this client's exclusive calls
    /// (default `default`; the runner's [`group`](crate::ServiceRunner::group)).
    #[must_use]
    pub fn with_group(mut self, group: GroupId) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.group = group;
        inner.leader = Arc::default();
        self
    }

    /// The service this client calls.
    pub fn service(&self) -> &ServiceName {
        &self.inner.service
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.nats
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// What the client keeps of `method`, made on its first call.
    fn known(&self, method: &str) -> Result<Arc<KnownMethod>, crate::subject::InvalidName> {
        let find = |known: &[Arc<KnownMethod>]| {
            known
                .iter()
                .find(|known| known.name.as_str() == method)
                .cloned()
        };
        if let Some(known) = self.inner.methods.lock().ok().and_then(|k| find(&k)) {
            return Ok(known);
        }
        let name = MethodName::new(method)?;
        let made = Arc::new(KnownMethod::new(&self.inner.service, name));
        let Ok(mut known) = self.inner.methods.lock() else {
            return Ok(made);
        };
        // Another task may have made it meanwhile: keep the first.
        Ok(find(&known).unwrap_or_else(|| {
            known.push(made.clone());
            made
        }))
    }

    /// The instance exclusive calls currently go to: the leader the election key names
    /// while it can be watched, else the one that last answered as active.
    pub fn active_instance(&self) -> Option<InstanceId> {
        if let Some(view) = self.inner.leader.get().map(|watch| watch.current())
            && view.is_followed()
        {
            return view.leader().map(|leader| leader.instance_id.clone());
        }
        self.inner
            .active_pin
            .lock()
            .ok()
            .and_then(|pin| pin.clone())
    }

    /// The watch of the group's leader (shared on the connection), started on first use;
    /// `None` for a client without discovery, whose calls all go to the shared subject.
    fn leader_watch(&self) -> Option<&Arc<LeaderWatch>> {
        self.inner.discovery.as_ref()?;
        Some(self.inner.leader.get_or_init(|| {
            LeaderWatch::shared(&self.inner.nats, &self.inner.service, &self.inner.group)
        }))
    }

    /// The current leader of the service's group and its fencing term, as the election
    /// key shows it (renewals do not change the term; a new leader always has a higher
    /// one): for callers that route or fence by themselves. `Ok(None)`: no instance leads
    /// right now. Waits up to the client's timeout for the watch to catch up.
    ///
    /// ```no_run
    /// # async fn run(orders: aegis_runtime::ServiceClient) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(leader) = orders.leader().await? {
    ///     println!("{} leads, term {:?}", leader.instance_id, leader.term);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`LeaderUnknown`](crate::leader::LeaderUnknown) when the election key cannot be
    /// watched within the timeout (no election bucket, no rights to read it).
    pub async fn leader(&self) -> Result<Option<Leader>, crate::leader::LeaderUnknown> {
        let watch = match self.leader_watch() {
            Some(watch) => watch.clone(),
            // Asked explicitly: follow the key even without discovery.
            None => LeaderWatch::shared(&self.inner.nats, &self.inner.service, &self.inner.group),
        };
        watch.leader(self.inner.timeout).await
    }

    /// Calls `method` with `params` and decodes its result.
    ///
    /// # Errors
    /// [`CallError`]: the handler's error, the deadline, no instance, a reply that does not
    /// decode.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CallError> {
        self.call_with_options(method, params, CallOptions::default())
            .await
    }

    /// Calls the exclusive `method`, which only the active instance runs: a `NOT_ACTIVE`
    /// answer (the method did not run) is retried until the deadline.
    ///
    /// # Errors
    /// As [`ServiceClient::call`], and [`CallErrorKind::NotActive`] when no instance was
    /// active within the retries.
    pub async fn call_exclusive<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CallError> {
        self.call_with_options(method, params, CallOptions::exclusive())
            .await
    }

    /// Calls `method` as `options` say (exclusive, idempotent, its own deadline).
    ///
    /// # Errors
    /// As [`ServiceClient::call`].
    pub async fn call_with_options<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
    ) -> Result<R, CallError> {
        let known = match self.known(method) {
            Ok(known) => known,
            Err(e) => {
                // Failing without I/O: yield now and then, as a failed call does.
                tokio::task::consume_budget().await;
                return Err(CallError::new(
                    &self.inner.service,
                    method,
                    0,
                    CallErrorKind::InvalidName(e),
                ));
            }
        };
        call::run(self, &known, params, options).await
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
        let fail = |kind| CallError::new(&self.inner.service, name, 1, kind);
        let method = MethodName::new(name).map_err(|e| fail(CallErrorKind::InvalidName(e)))?;
        let span = crate::telemetry::traced_span!(
            "aegis.command",
            service = %self.inner.service,
            command = name,
            id = tracing::field::Empty,
        );
        // The handler's span joins this one through the headers, sent only when a
        // subscriber records it.
        let trace = telemetry::start(&span, None);
        let mut command = codec::Command::new(name, payload)
            .with_priority(options.priority)
            .with_target(self.inner.service.as_str())
            .with_source(self.inner.source.as_ref());
        command.max_retries = options.max_retries;
        command.timeout = options.timeout.as_secs_f64();
        span.record("id", command.message_id.as_str());
        let headers = trace.map(|trace| {
            // One trace id format on both sides: the envelope's is the W3C one too.
            command.trace_id = trace.trace_id.to_string();
            let mut headers = async_nats::HeaderMap::new();
            trace.inject(&mut headers);
            headers
        });
        let sent = async {
            let bytes = codec::encode(&command).map_err(|e| fail(CallErrorKind::Encode(e)))?;
            let transport = |e: BoxError| fail(CallErrorKind::Transport(TransportError::new(e)));
            // Listen before sending, so neither progress nor the outcome can be missed.
            let progress = self
                .inner
                .nats
                .subscribe(subject::command_progress(&command.message_id))
                .await
                .map_err(|e| transport(e.into()))?;
            let callback = self
                .inner
                .nats
                .subscribe(subject::command_callback(&command.message_id))
                .await
                .map_err(|e| transport(e.into()))?;
            let js = async_nats::jetstream::new(self.inner.nats.clone());
            crate::commands::commands_stream(&js)
                .await
                .map_err(|e| transport(e.into()))?;
            let subject = subject::command(&self.inner.service, &method);
            let ack = match headers {
                Some(headers) => {
                    js.publish_with_headers(subject, headers, bytes.into())
                        .await
                }
                None => js.publish(subject, bytes.into()).await,
            };
            ack.map_err(|e| transport(e.into()))?
                .await
                .map_err(|e| transport(e.into()))?;
            Ok((progress, callback))
        }
        .instrument(span.clone())
        .await;
        let (progress, callback) = sent.inspect_err(|err| telemetry::record_error(&span, err))?;
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
}
