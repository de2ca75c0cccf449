//! Running a service as a live instance on NATS: lifecycle, subscriptions, dispatch,
//! registry entry and heartbeats, built-in status RPCs, the NATS micro protocol, and a
//! graceful stop.

mod builtins;
mod commands;
mod config;
mod dispatch;
mod events;
mod forward;
mod hooks;
mod invoke;
mod micro;
mod schedules;
mod signal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::JetStreamError;
use crate::codec::Timestamp;
use crate::instance::InstanceStatus;
use crate::leader::LeaderWatch;
use crate::leadership::Leadership;
use crate::lifecycle::{Lifecycle, LifecycleCell};
use crate::python_sdk::PythonSdk;
use crate::registry::{self, Registration};
use crate::service::{Service, ServiceDescriptor};
use crate::stats::EndpointStats;
use crate::subject::{GroupId, InstanceId, InvalidName, ServiceName};

pub use crate::registry::{
    CLUSTER_BUCKET_REPLICAS, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_REGISTRY_TTL,
    UNHEALTHY_AFTER_FAILURES,
};
pub use builtins::{
    DESCRIBE_METHOD, HEALTH_METHOD, HealthReport, MethodReport, STATUS_METHOD, StatusReport,
};
pub use config::InvalidConfig;
pub use hooks::HookError;
pub use micro::{MicroEndpointInfo, MicroEndpointStats, MicroInfo, MicroPing, MicroStats};
pub use schedules::InvalidSchedule;

/// Default number of calls an instance runs at once.
pub const DEFAULT_CONCURRENCY: usize = 256;
/// How long [`RunningService::stop`] waits for calls in flight, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a stop takes beyond the drain timeout, whatever NATS does: [`RunningService::stop`]
/// returns within `drain timeout + STOP_GRACE`.
///
/// It is made of five steps of [`STOP_STEP_TIMEOUT`] each: releasing the leadership, leaving
/// the shared exclusive subjects (calls on their way are forwarded to the successor), the
/// `#[on_stop]` method when
/// the drain used up its timeout, removing the registry entry, and flushing the connection.
/// A step that runs out of time is given up with a warning: a leader key or registry entry
/// left behind expires after its TTL.
pub const STOP_GRACE: Duration = Duration::from_millis(2500);
/// The most each NATS step of a stop (handover, leadership release, registry removal,
/// flush) may take, and the least time the `#[on_stop]` method gets when the drain used up its timeout.
pub const STOP_STEP_TIMEOUT: Duration = Duration::from_millis(500);

// The grace is the sum of the steps that may run past the drain deadline.
const _: () = assert!(STOP_STEP_TIMEOUT.as_millis() * 5 == STOP_GRACE.as_millis());

/// Starts a service as an instance on NATS.
///
/// ```no_run
/// use std::time::Duration;
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
/// let running = ServiceRunner::new(Echo)
///     .nats(nats)
///     .registry_ttl(Duration::from_secs(15))
///     .heartbeat_interval(Duration::from_secs(5))
///     .start()
///     .await?;
/// println!("serving as {}", running.instance_id());
/// running.stop_on_signal().await; // SIGINT or SIGTERM: graceful stop
/// # Ok(())
/// # }
/// ```
#[must_use = "a runner does nothing until `.start().await`"]
pub struct ServiceRunner<S> {
    service: S,
    nats: Option<async_nats::Client>,
    connect: Option<crate::connect::ConnectConfig>,
    instance_id: Option<String>,
    group: Option<String>,
    concurrency: usize,
    registry_ttl: Duration,
    heartbeat_interval: Duration,
    drain_timeout: Duration,
    leader_ttl: Duration,
    python: PythonSdk,
}

/// Why an instance could not start.
///
/// The JetStream steps (registry, election, commands, events) carry a [`JetStreamError`]
/// as their source, to match what went wrong:
///
/// ```no_run
/// use aegis_runtime::{JetStreamError, ServiceRunner, StartError, service};
///
/// struct Echo;
///
/// #[service(name = "echo-start")]
/// impl Echo {
///     #[rpc]
///     async fn ping(&self) -> String {
///         "pong".into()
///     }
/// }
///
/// # #[tokio::main]
/// # async fn main() {
/// match ServiceRunner::new(Echo).url("nats://127.0.0.1:4222").start().await {
///     Ok(running) => running.stop_on_signal().await,
///     Err(StartError::Registry(JetStreamError::NotEnabled { .. })) => {
///         eprintln!("this NATS server runs without JetStream: start it with -js");
///     }
///     Err(StartError::Registry(JetStreamError::PermissionDenied { subject, .. })) => {
///         eprintln!("the service's user may not use {subject}");
///     }
///     Err(err) => eprintln!("{err}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Neither a NATS connection nor a URL was given.
    #[error("no NATS connection: call `.nats(client)` or `.url(\"nats://…\")` on the runner")]
    NoConnection,
    /// The connection to NATS failed: what failed (authentication rejected, TLS,
    /// unreachable, a bad URL or file) is in the [`ConnectError`](crate::connect::ConnectError).
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// A name in the service definition or the configuration breaks its rule.
    #[error("{0}")]
    InvalidName(#[from] InvalidName),
    /// A setting is out of range, or the service's version breaks the rule.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] InvalidConfig),
    /// Subscribing failed.
    #[error("cannot subscribe {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::SubscribeError,
    },
    /// The registry (the KV bucket `service_registry`) could not be read or written: the
    /// [`JetStreamError`] says why (JetStream not enabled, a permission refused, the bucket
    /// unusable, no answer in time) and how to fix it.
    #[error("cannot register the instance: {0}")]
    Registry(#[source] JetStreamError),
    /// The leader election (the KV bucket `sticky_active`) could not be set up.
    #[error("cannot take part in the leader election: {0}")]
    Election(#[source] JetStreamError),
    /// The consumer of a command (on the stream `COMMANDS`) could not be set up.
    #[error("cannot take commands: {0}")]
    Commands(#[source] JetStreamError),
    /// An event subscription (a consumer on the stream `EVENTS`) could not be set up.
    #[error("cannot subscribe to events: {0}")]
    Events(#[source] JetStreamError),
    /// A `#[schedule]` method's timing is invalid.
    #[error(transparent)]
    Schedule(#[from] schedules::InvalidSchedule),
    /// A live instance (fresh heartbeat, answers its status RPC) already has this id.
    #[error(
        "the instance id {instance} is in use by a live instance of {service} (its registry \
         heartbeat is fresh and it answers its status RPC): give this instance another id \
         with `.instance_id(..)`, or omit it for a generated one"
    )]
    DuplicateInstance {
        /// The service.
        service: ServiceName,
        /// The id in use.
        instance: InstanceId,
    },
    /// The service's `#[on_start]` method failed.
    #[error("the service's #[on_start] method failed: {0}")]
    Hook(#[source] HookError),
    /// The server refused an operation the instance needs other than a JetStream one (a
    /// refused JetStream request is a [`JetStreamError::PermissionDenied`] of the step that
    /// made it). Reported when the runner made the connection itself, with
    /// [`url`](ServiceRunner::url) or [`connect_with`](ServiceRunner::connect_with).
    #[error(
        "the NATS server refused an operation this instance needs ({violation}); give the \
         service's user that permission (docs/security.md, \"Permissions\")"
    )]
    PermissionDenied {
        /// The server's words: which operation, on which subject.
        violation: String,
    },
}

impl<S: Service> ServiceRunner<S> {
    /// A runner for `service`.
    pub fn new(service: S) -> Self {
        Self {
            service,
            nats: None,
            connect: None,
            instance_id: None,
            group: None,
            concurrency: DEFAULT_CONCURRENCY,
            registry_ttl: registry::DEFAULT_REGISTRY_TTL,
            heartbeat_interval: registry::DEFAULT_HEARTBEAT_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            leader_ttl: crate::election::DEFAULT_LEADER_TTL,
            python: PythonSdk::new(),
        }
    }

    /// The NATS connection to serve on.
    pub fn nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
        self
    }

    /// Connect to this NATS URL at start (when no connection is given): one URL or a
    /// comma-separated list; credentials inside it (`nats://user:password@host`,
    /// `nats://token@host`) are used and never shown. For creds files, nkeys or TLS use
    /// [`connect_with`](Self::connect_with).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.connect = Some(crate::connect::ConnectConfig::new(url));
        self
    }

    /// Connect at start with this config (servers, authentication, TLS), when no
    /// connection is given.
    pub fn connect_with(mut self, config: crate::connect::ConnectConfig) -> Self {
        self.connect = Some(config);
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

    /// How long the registry keeps this instance's entry without a heartbeat (default
    /// 30 s; whole seconds, rounded up). A crashed instance disappears after it.
    pub fn registry_ttl(mut self, ttl: Duration) -> Self {
        self.registry_ttl = ttl;
        self
    }

    /// How often the entry is refreshed (default 10 s); must be shorter than the TTL.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long the leader key lives without a renewal (default 2 s, at least 1 s; whole
    /// seconds). A crashed leader is replaced about this long after its last renewal; a
    /// gracefully stopped one at once. Only used by services with exclusive methods.
    pub fn leader_ttl(mut self, ttl: Duration) -> Self {
        self.leader_ttl = ttl;
        self
    }

    /// How this instance works beside Python AegisSDK instances of its service (default:
    /// Aegis keys only). See [`PythonSdk`] and docs/python-interop.md.
    pub fn python_sdk(mut self, python: PythonSdk) -> Self {
        self.python = python;
        self
    }

    /// How long a stop waits for calls in flight (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Validates the configuration, registers the instance, subscribes every subject, and
    /// returns once the server has the subscriptions (a round trip through it, not just a
    /// flush).
    ///
    /// # Errors
    /// [`StartError`] saying what is wrong.
    pub async fn start(self) -> Result<RunningService, StartError> {
        crate::metrics::describe();
        let lifecycle = LifecycleCell::new();
        let definition = S::definition();
        let service_name = ServiceName::new(definition.name)?;
        crate::instance::InvalidVersion::check(definition.version).map_err(InvalidConfig::from)?;
        let ttl = registry::whole_seconds(self.registry_ttl);
        let leader_ttl = definition.elects_leader().then_some(self.leader_ttl);
        config::check_timing(self.heartbeat_interval, ttl, leader_ttl)?;
        let instance_id = match self.instance_id {
            Some(id) => InstanceId::new(id)?,
            None => InstanceId::generate(&service_name),
        };
        let group = match self.group {
            Some(group) => GroupId::new(group)?,
            None => GroupId::default(),
        };
        let (nats, mut refused) = match (self.nats, self.connect) {
            (Some(nats), _) => (nats, None),
            (None, Some(config)) => {
                let (nats, refused) = config
                    .name_if_unset(instance_id.as_str())
                    .connect_observed()
                    .await?;
                (nats, Some(refused))
            }
            (None, None) => return Err(StartError::NoConnection),
        };
        lifecycle.set(Lifecycle::Starting);
        // Before the hook: an id in use fails the start with nothing run.
        let claimed = async {
            registry::claim(&nats, &service_name, &instance_id)
                .await
                .map_err(|err| match err {
                    registry::ClaimError::InUse(_) => StartError::DuplicateInstance {
                        service: service_name.clone(),
                        instance: instance_id.clone(),
                    },
                    registry::ClaimError::Read { key, source } => StartError::Registry(
                        JetStreamError::from_nats(format!("read the registry entry {key}"), source),
                    ),
                })
        };
        let expected = unless_refused(&mut refused, Step::Register, claimed).await?;
        let service = Arc::new(self.service);
        if let Some(on_start) = definition.on_start
            && let Err(failure) = hooks::on_start(definition.name, on_start, service.clone()).await
        {
            lifecycle.set(Lifecycle::Failed);
            return Err(StartError::Hook(failure));
        }

        let exclusive_group = definition.elects_leader().then(|| group.clone());
        let entry = registry::initial_entry(
            service_name.clone(),
            instance_id.clone(),
            definition.version,
            exclusive_group,
        )
        .map_err(InvalidConfig::from)?;
        let registered = async {
            Registration::register(nats.clone(), entry, ttl, expected, self.python.is_visible())
                .await
                .map_err(StartError::Registry)
        };
        let registration = unless_refused(&mut refused, Step::Register, registered).await?;

        let leader_watch = definition
            .has_exclusive_methods()
            .then(|| LeaderWatch::shared(&nats, &service_name, &group));
        let core = Arc::new(Core {
            name: definition.name,
            nats: nats.clone(),
            service_name: service_name.clone(),
            version: definition.version,
            instance_id: instance_id.clone(),
            instance_key: instance_id.as_str().into(),
            events: crate::events::EventPublisher::new(nats.clone()).with_source(definition.name),
            leader_watch,
            elects_leader: definition.elects_leader(),
            // Leader gauges only for services that elect a leader.
            leadership: if definition.elects_leader() {
                Leadership::for_service(&service_name, group)
            } else {
                Leadership::new(group)
            },
            permits: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
            lifecycle,
            registration: Arc::new(registration),
            endpoints: definition
                .rpcs
                .iter()
                .map(|rpc| Endpoint {
                    name: rpc.name,
                    exclusive: rpc.exclusive,
                    stats: EndpointStats::new(&service_name, rpc.name),
                })
                .collect(),
            started: Instant::now(),
            started_at: Timestamp::now(),
            descriptor: (definition.describe)(),
            drain_timeout: self.drain_timeout,
            leave_commands_to_sdk: self.python.leaves_commands(),
            share_events_with_sdk: self.python.shares_events(),
            stopping: tokio::sync::watch::channel(false).0,
            leaving_exclusive: tokio::sync::watch::channel(false).0,
            on_stop: definition.on_stop.map(|hook| {
                let service = service.clone();
                StopHook(Box::new(move || hook(service.clone())))
            }),
        });
        let shared = Arc::new(dispatch::Shared {
            core: core.clone(),
            service,
            definition,
        });

        let mut listeners = JoinSet::new();
        let mut exclusive = JoinSet::new();
        let mut workers = JoinSet::new();
        let subscribed = async {
            dispatch::subscribe_all(&shared, &mut listeners, &mut exclusive, &mut workers).await?;
            schedules::spawn_all(&shared, &mut workers)?;
            builtins::subscribe(&core, &mut listeners).await?;
            micro::subscribe(&core, &mut listeners).await
        };
        let subscribed = unless_refused(&mut refused, Step::Subscribe, async {
            subscribed.await?;
            // The server answers a connection in order: its refusal of a subscription comes
            // before the round trip's message.
            dispatch::round_trip(&nats).await;
            Ok(())
        });
        if let Err(err) = subscribed.await {
            core.lifecycle.set(Lifecycle::Failed);
            listeners.shutdown().await;
            exclusive.shutdown().await;
            workers.shutdown().await;
            let _ = core.registration.deregister().await;
            return Err(err);
        }
        // Only now may this instance become leader: its exclusive subscriptions follow.
        let election = if definition.elects_leader() {
            let opened = crate::election::Election::open(
                nats.clone(),
                core.service_name.clone(),
                core.instance_id.clone(),
                core.leadership.clone(),
                core.registration.clone(),
                self.leader_ttl,
                &self.python,
            );
            let opened = unless_refused(&mut refused, Step::Elect, async {
                opened.await.map_err(StartError::Election)
            })
            .await;
            match opened {
                Ok(election) => {
                    // The bucket exists now: the forwarding's view of the leader need not
                    // wait out a backoff begun when it did not.
                    if let Some(watch) = &core.leader_watch {
                        watch.retry_now();
                    }
                    let election = Arc::new(election);
                    Some((election.clone(), tokio::spawn(election.run())))
                }
                Err(err) => {
                    core.lifecycle.set(Lifecycle::Failed);
                    listeners.shutdown().await;
                    exclusive.shutdown().await;
                    let _ = core.registration.deregister().await;
                    return Err(err);
                }
            }
        } else {
            None
        };
        let heartbeat = tokio::spawn(
            core.registration
                .clone()
                .heartbeats(self.heartbeat_interval),
        );
        core.lifecycle.set(Lifecycle::Started);
        tracing::info!(service = %core.service_name, instance = %core.instance_id, rpcs = definition.rpcs.len(), "instance serving");
        Ok(RunningService {
            core,
            listeners,
            exclusive,
            workers,
            heartbeat,
            election,
        })
    }
}

/// A step of a start that uses JetStream, to name it when the server refuses an operation.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Claiming the id and writing the registry entry.
    Register,
    /// Subscribing, and opening the event and command consumers.
    Subscribe,
    /// Opening the election.
    Elect,
}

/// Runs one step of a start, failing it at once when the server refuses an operation on the
/// connection: a refused operation is otherwise only unanswered, and the step would wait out
/// its timeouts before failing with a misleading error.
async fn unless_refused<T>(
    refused: &mut Option<crate::connect::RefusedOperations>,
    step: Step,
    run: impl std::future::Future<Output = Result<T, StartError>>,
) -> Result<T, StartError> {
    let Some(refused) = refused else {
        return run.await;
    };
    tokio::select! {
        result = run => result,
        violation = refused.next() => Err(refused_in(step, violation)),
    }
}

/// The error of `step` when the server refused an operation with `violation`: a
/// [`JetStreamError::PermissionDenied`] of the step when the subject is JetStream's, else
/// [`StartError::PermissionDenied`].
fn refused_in(step: Step, violation: String) -> StartError {
    use crate::subject::{COMMANDS_STREAM, EVENTS_STREAM, REGISTRY_BUCKET, STICKY_ACTIVE_BUCKET};
    let Some((permission, subject)) = crate::jetstream_error::parse_violation(&violation) else {
        return StartError::PermissionDenied { violation };
    };
    if !crate::jetstream_error::is_jetstream_subject(&subject) {
        return StartError::PermissionDenied { violation };
    }
    let (wrap, action): (fn(JetStreamError) -> StartError, String) = match step {
        Step::Register => (
            StartError::Registry,
            format!("use the KV bucket {REGISTRY_BUCKET}"),
        ),
        Step::Elect => (
            StartError::Election,
            format!("use the KV bucket {STICKY_ACTIVE_BUCKET}"),
        ),
        Step::Subscribe if subject.contains(COMMANDS_STREAM) => (
            StartError::Commands,
            format!("use the stream {COMMANDS_STREAM}"),
        ),
        Step::Subscribe if subject.contains(EVENTS_STREAM) => (
            StartError::Events,
            format!("use the stream {EVENTS_STREAM}"),
        ),
        Step::Subscribe => return StartError::PermissionDenied { violation },
    };
    wrap(JetStreamError::PermissionDenied {
        action,
        permission,
        subject,
    })
}

/// One RPC method as the instance counts it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) name: &'static str,
    pub(crate) exclusive: bool,
    pub(crate) stats: EndpointStats,
}

/// The state of an instance that does not depend on the service's type.
#[derive(Debug)]
pub(crate) struct Core {
    /// The service name as the definition holds it.
    pub(crate) name: &'static str,
    pub(crate) nats: async_nats::Client,
    pub(crate) service_name: ServiceName,
    pub(crate) version: &'static str,
    pub(crate) instance_id: InstanceId,
    pub(crate) instance_key: Arc<str>,
    /// Publishes the events of the service's handlers.
    pub(crate) events: crate::events::EventPublisher,
    pub(crate) leadership: Leadership,
    /// Whether the instance takes part in its group's leader election (it has exclusive
    /// methods or exclusive schedules).
    pub(crate) elects_leader: bool,
    /// The group's leader as its key shows it: where exclusive calls that reach this
    /// instance while it is not the leader are forwarded. For services with exclusive
    /// methods only.
    pub(crate) leader_watch: Option<Arc<LeaderWatch>>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    pub(crate) lifecycle: LifecycleCell,
    pub(crate) registration: Arc<Registration>,
    /// Indexed like the definition's `rpcs`.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) started: Instant,
    pub(crate) started_at: Timestamp,
    pub(crate) descriptor: ServiceDescriptor,
    pub(crate) drain_timeout: Duration,
    /// Whether the service's commands are left to its Python SDK instances.
    pub(crate) leave_commands_to_sdk: bool,
    /// Whether compete event subscriptions join the Python SDK's consumer.
    pub(crate) share_events_with_sdk: bool,
    /// The service's `#[on_stop]` method, bound to the service.
    pub(crate) on_stop: Option<StopHook>,
    /// Becomes `true` when a graceful stop begins: listeners then drain and end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Becomes `true` when a graceful stop begins, before `stopping` and before the
    /// leadership is released: the shared exclusive subjects are left first, as leader.
    pub(crate) leaving_exclusive: tokio::sync::watch::Sender<bool>,
}

/// The `#[on_stop]` method, bound to its service, without the service's type.
pub(crate) struct StopHook(
    Box<
        dyn Fn() -> crate::service::BoxFuture<'static, Result<(), crate::service::WorkFailure>>
            + Send
            + Sync,
    >,
);

impl std::fmt::Debug for StopHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopHook")
    }
}

impl Core {
    /// What the instance reports in the registry and its status RPC.
    pub(crate) fn status(&self) -> InstanceStatus {
        self.registration.health().status()
    }
}

/// A live instance. Stop it with [`RunningService::stop`] (or
/// [`RunningService::stop_on_signal`]); dropping it stops listening at once, without
/// draining calls or removing its registry entry (which then expires after its TTL).
#[derive(Debug)]
pub struct RunningService {
    core: Arc<Core>,
    /// Tasks that take calls from subscriptions; they drain on stop.
    listeners: JoinSet<()>,
    /// Tasks that hold the shared exclusive subjects while this instance leads; a stop
    /// waits for them to leave before it releases the leadership.
    exclusive: JoinSet<()>,
    /// Tasks that pull commands; a stop aborts them (unacknowledged commands are redelivered).
    workers: JoinSet<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    election: Option<(Arc<crate::election::Election>, tokio::task::JoinHandle<()>)>,
}

impl RunningService {
    /// The instance id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.core.instance_id
    }

    /// The service name.
    pub fn service_name(&self) -> &ServiceName {
        &self.core.service_name
    }

    /// Where the instance is in its lifecycle.
    pub fn lifecycle(&self) -> Lifecycle {
        self.core.lifecycle.get()
    }

    /// ACTIVE while heartbeats succeed; UNHEALTHY after three failures in a row.
    pub fn status(&self) -> InstanceStatus {
        self.core.status()
    }

    /// This instance's role in its sticky-active group.
    pub fn leadership(&self) -> &Leadership {
        &self.core.leadership
    }

    /// A report as the status RPC gives it.
    pub fn report(&self) -> StatusReport {
        builtins::status_report(&self.core)
    }

    /// Stops gracefully: hands the leadership over (leaves the shared exclusive subjects
    /// while still leading, answering the calls already on their way as leader, then
    /// releases the key), stops taking calls, answers every call in flight (waiting up to
    /// the drain timeout), runs the `#[on_stop]` method, removes the registry entry, and
    /// flushes.
    ///
    /// Returns within the drain timeout plus [`STOP_GRACE`], also when NATS is unreachable:
    /// each NATS step is given up after [`STOP_STEP_TIMEOUT`] (a leader key or registry
    /// entry left behind expires after its TTL), calls still running at the drain deadline
    /// are abandoned, and the `#[on_stop]` method gets what is left of the drain timeout, but
    /// at least [`STOP_STEP_TIMEOUT`].
    pub async fn stop(mut self) {
        let core = self.core.clone();
        let began = Instant::now();
        core.lifecycle.set(Lifecycle::Stopping);
        // Leadership first: a standby takes over while this instance drains. The release
        // steps down before its first await, so a timeout never leaves this instance serving
        // exclusive calls; only the leader key may stay behind, until its TTL. Calls that
        // still reach this instance afterwards, on the shared exclusive subjects (the Python
        // SDK's route) or on its own (a client whose view of the leader is a moment old), are
        // forwarded to the successor and its answer relayed (`forward`): no caller sees
        // NOT_ACTIVE, and the successor serves within milliseconds of the signal.
        if let Some((election, task)) = self.election.take() {
            task.abort();
            if tokio::time::timeout(STOP_STEP_TIMEOUT, election.release())
                .await
                .is_err()
            {
                tracing::warn!(instance = %core.instance_id, timeout = ?STOP_STEP_TIMEOUT, "cannot release the leadership in time; the leader key expires after its TTL");
            }
        }
        // Then the shared exclusive subjects are left (with the fence of `consume`).
        core.leaving_exclusive.send_replace(true);
        let left = async { while self.exclusive.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_STEP_TIMEOUT, left).await.is_err() {
            tracing::warn!(instance = %core.instance_id, timeout = ?STOP_STEP_TIMEOUT, "the exclusive methods were not left in time");
        }
        // Every listener unsubscribes and hands over what was already delivered to it: no new
        // call is accepted, and none that was is dropped.
        core.stopping.send_replace(true);
        self.workers.shutdown().await;
        let deadline = tokio::time::Instant::now() + core.drain_timeout;
        let listeners_done = async {
            while self.listeners.join_next().await.is_some() {}
            while self.exclusive.join_next().await.is_some() {}
        };
        if tokio::time::timeout_at(deadline, listeners_done)
            .await
            .is_err()
        {
            self.listeners.shutdown().await;
            self.exclusive.shutdown().await;
        }
        self.heartbeat.abort();
        let all = u32::try_from(core.concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout_at(deadline, core.permits.acquire_many(all)).await {
            Ok(_) => tracing::debug!(instance = %core.instance_id, "calls in flight drained"),
            Err(_) => {
                tracing::warn!(instance = %core.instance_id, timeout = ?core.drain_timeout, "calls still running after the drain timeout")
            }
        }
        // The hook is part of the drain, but one that the calls left no time gets a short
        // fixed slot rather than none.
        let hook_deadline = deadline.max(tokio::time::Instant::now() + STOP_STEP_TIMEOUT);
        hooks::on_stop(&core, hook_deadline - tokio::time::Instant::now()).await;
        match tokio::time::timeout(STOP_STEP_TIMEOUT, core.registration.deregister()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(instance = %core.instance_id, %err, "cannot remove the registry entry; it expires after its TTL");
            }
            Err(_) => {
                tracing::warn!(instance = %core.instance_id, timeout = ?STOP_STEP_TIMEOUT, "cannot remove the registry entry in time; it expires after its TTL");
            }
        }
        // A flush waits for the server: without one it would wait for a reconnection, forever.
        if tokio::time::timeout(STOP_STEP_TIMEOUT, core.nats.flush())
            .await
            .is_err()
        {
            tracing::warn!(instance = %core.instance_id, timeout = ?STOP_STEP_TIMEOUT, "cannot flush the NATS connection in time; messages still buffered are lost");
        }
        core.lifecycle.set(Lifecycle::Stopped);
        tracing::info!(service = %core.service_name, instance = %core.instance_id, took = ?began.elapsed(), "instance stopped");
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully (see [`RunningService::stop`]).
    ///
    /// A second SIGINT or SIGTERM during that stop exits the process at once, without
    /// waiting for calls in flight or removing the registry entry (it expires after its
    /// TTL), with the shell's exit code for that signal: 130 for SIGINT, 143 for SIGTERM.
    /// This is what an operator who presses Ctrl-C twice expects.
    pub async fn stop_on_signal(self) {
        let mut signals = signal::ShutdownSignals::register();
        let first = signals.next().await;
        let instance = self.core.instance_id.clone();
        tracing::info!(%instance, signal = first.name(), "shutdown signal received: stopping gracefully (a second signal exits at once)");
        tokio::select! {
            () = self.stop() => {}
            second = signals.next() => {
                tracing::error!(%instance, signal = second.name(), code = second.exit_code(), "second shutdown signal during the stop: exiting at once, calls in flight are abandoned and the registry entry expires after its TTL");
                std::process::exit(second.exit_code());
            }
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some((_, task)) = &self.election {
            task.abort();
        }
    }
}
