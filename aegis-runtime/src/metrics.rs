//! The metrics Aegis records, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Nothing is recorded until the application installs a recorder (any `metrics`
//! exporter); with the `prometheus` feature, `install_prometheus_exporter` does it.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `aegis_client_calls_total` | counter | service, method, outcome (`ok`/`error`) | calls made by clients |
//! | `aegis_client_errors_total` | counter | service, method, kind | failed calls by [`CallErrorKind`](crate::CallErrorKind) name |
//! | `aegis_client_attempts_total` | counter | service, method | requests sent, retries included |
//! | `aegis_client_retries_total` | counter | service, method | attempts after the first |
//! | `aegis_client_not_active_total` | counter | service, method | NOT_ACTIVE answers received |
//! | `aegis_client_call_seconds` | histogram | service, method | time from the first attempt to the outcome |
//! | `aegis_client_failover_seconds` | histogram | service, method | for calls that succeeded after retries: first attempt to success |
//! | `aegis_discovery_cache_hits_total` | counter | service | lookups answered from memory: the default discovery's live registry watch, or a [`CachedDiscovery`](crate::discovery::CachedDiscovery) |
//! | `aegis_discovery_cache_misses_total` | counter | service | lookups that read the registry (a `CachedDiscovery`, also the default discovery's fallback while its watch is down) |
//! | `aegis_nats_connection_events_total` | counter | event (`connected`/`disconnected`/`permissions_violation`/`server_error`/...) | events of connections made by [`ConnectConfig`](crate::connect::ConnectConfig) |
//! | `aegis_events_poison_total` | counter | method | events dropped because their payload does not decode |
//! | `aegis_commands_poison_total` | counter | command | commands failed at once because their payload does not decode |
//! | `aegis_election_step_downs_total` | counter | service, reason (`key_deleted`/`key_purged`/`foreign_value`/`renewal_conflict`/`lease_expired`) | leaders that lost their leadership other than by a graceful stop |
//! | `aegis_election_stale_keys_removed_total` | counter | service | leader keys a standby removed because no live leader rewrote them (see docs/single-active.md) |
//! | `aegis_client_ejections_total` | counter | service | instances ejected from a client's selection after a timeout or no responders (see docs/clients.md) |
//! | `aegis_exclusive_calls_forwarded_total` | counter | service, method | exclusive calls a non-leader forwarded to the leader (see docs/single-active.md) |
//! | `aegis_handler_panics_total` | counter | kind (`rpc`/`exclusive_rpc`/`event`/`command`/`on_start`/`on_stop`), method | handlers and hooks that panicked (caught; see docs/runtime.md) |
//! | `aegis_server_requests_total` | counter | service, method, outcome (`ok`/`error`/`not_active`) | RPC calls an instance answered |
//! | `aegis_server_errors_total` | counter | service, method, kind (`handler`/`bad_request`/`deadline_exceeded`) | RPC calls that failed on the instance |
//! | `aegis_server_handler_seconds` | histogram (s) | service, method | time from the handler's start to its reply |
//! | `aegis_server_queue_seconds` | histogram (s) | service, method | time from a call's receipt to its handler's start (waiting for a concurrency permit) |
//! | `aegis_server_in_flight` | gauge | service, method | RPC calls running now |
//! | `aegis_leader` | gauge | service, group | 1 while an instance of this process leads the group, else 0 |
//! | `aegis_leader_term` | gauge | service, group | the fencing term of the last leadership of this process in the group |
//! | `aegis_leader_changes_total` | counter | service, group, change (`elected`/`lost`) | leaderships this process gained and lost |
//! | `aegis_registry_heartbeat_failures_total` | counter | service | registry heartbeats that failed |
//! | `aegis_health_changes_total` | counter | status (`active`/`unhealthy`) | changes of an instance's reported status |
//! | `aegis_registry_recreations_total` | counter | service | registry entries written again after they were gone (expired, deleted) |
//! | `aegis_kv_bucket_recreations_total` | counter | bucket | KV buckets re-created after an operator deleted them |
//! | `aegis_discovery_seconds` | histogram (s) | service | lookups that were not answered from memory: a registry read on a cache miss, or the default discovery's wait for its watch to catch up |
//! | `aegis_command_deliveries_total` | counter | command | command deliveries to a handler, redeliveries included |
//! | `aegis_command_redeliveries_total` | counter | command | command deliveries after the first |
//! | `aegis_event_acks_total` | counter | method, ack (`ack`/`nak`/`term`) | how event deliveries were acknowledged |
//!
//! Every metric is also listed in [`ALL`], with its `# HELP` text; [`describe`] gives that
//! text to the installed recorder. Latencies are histograms in seconds; the Prometheus
//! exporter of this module serves them with the buckets [`LATENCY_BUCKETS`].

use std::time::{Duration, Instant};

use crate::subject::{GroupId, ServiceName};

/// Calls made by clients.
pub const CALLS: &str = "aegis_client_calls_total";
/// Failed calls, by kind.
pub const ERRORS: &str = "aegis_client_errors_total";
/// Requests sent, retries included.
pub const ATTEMPTS: &str = "aegis_client_attempts_total";
/// Attempts after the first.
pub const RETRIES: &str = "aegis_client_retries_total";
/// NOT_ACTIVE answers received.
pub const NOT_ACTIVE: &str = "aegis_client_not_active_total";
/// Time from the first attempt to the outcome, in seconds.
pub const CALL_SECONDS: &str = "aegis_client_call_seconds";
/// For calls that succeeded after retries: first attempt to success, in seconds.
pub const FAILOVER_SECONDS: &str = "aegis_client_failover_seconds";
/// Discovery lookups answered from memory: the default discovery's live registry watch,
/// or a cache.
pub const DISCOVERY_HITS: &str = "aegis_discovery_cache_hits_total";
/// Discovery lookups that read the registry.
pub const DISCOVERY_MISSES: &str = "aegis_discovery_cache_misses_total";
/// Events of the connections made by [`ConnectConfig`](crate::connect::ConnectConfig), by
/// event; `permissions_violation` counts operations the server refused.
pub const CONNECTION_EVENTS: &str = "aegis_nats_connection_events_total";

/// Events dropped because their payload does not decode into the handler's type.
pub const POISON_EVENTS: &str = "aegis_events_poison_total";

/// Commands failed at once because their payload does not decode.
pub const POISON_COMMANDS: &str = "aegis_commands_poison_total";

/// Leaders that lost their leadership other than by a graceful stop, by reason.
pub const LEADER_STEP_DOWNS: &str = "aegis_election_step_downs_total";

/// Leader keys a standby removed because no live leader had rewritten them in time.
pub const STALE_LEADER_KEYS: &str = "aegis_election_stale_keys_removed_total";

/// Handlers and lifecycle hooks that panicked (the panic was caught), by kind and method.
pub const HANDLER_PANICS: &str = "aegis_handler_panics_total";

/// Instances a client stopped sending plain calls to after one did not answer (timed out
/// or had no responders), until the registry shows a fresh heartbeat of theirs.
pub const EJECTIONS: &str = "aegis_client_ejections_total";

/// Exclusive calls an instance that is not the leader forwarded to the leader instead of
/// answering NOT_ACTIVE.
pub const FORWARDED_CALLS: &str = "aegis_exclusive_calls_forwarded_total";

/// RPC calls an instance answered, by outcome (`ok`, `error`, `not_active`).
pub const SERVER_REQUESTS: &str = "aegis_server_requests_total";
/// RPC calls that failed on the instance, by kind (`handler`, `bad_request`,
/// `deadline_exceeded`).
pub const SERVER_ERRORS: &str = "aegis_server_errors_total";
/// Time from an RPC handler's start to its reply, in seconds.
pub const SERVER_HANDLER_SECONDS: &str = "aegis_server_handler_seconds";
/// Time from an RPC call's receipt to its handler's start, in seconds: the wait for a
/// concurrency permit.
pub const SERVER_QUEUE_SECONDS: &str = "aegis_server_queue_seconds";
/// RPC calls running now.
pub const SERVER_IN_FLIGHT: &str = "aegis_server_in_flight";
/// 1 while an instance of this process leads the group, else 0 (the sum over the
/// process's instances of the group).
pub const LEADER: &str = "aegis_leader";
/// The fencing term of the last leadership an instance of this process held in the group.
pub const LEADER_TERM: &str = "aegis_leader_term";
/// Leaderships gained (`elected`) and lost (`lost`, graceful stops included).
pub const LEADER_CHANGES: &str = "aegis_leader_changes_total";
/// Registry heartbeats that failed (three in a row make the instance UNHEALTHY).
pub const HEARTBEAT_FAILURES: &str = "aegis_registry_heartbeat_failures_total";
/// Changes of an instance's reported status, by the new status.
pub const HEALTH_CHANGES: &str = "aegis_health_changes_total";
/// Registry entries written again after they were gone (expired or deleted).
pub const REGISTRATION_RECREATIONS: &str = "aegis_registry_recreations_total";
/// KV buckets (registry, election) re-created after they were deleted.
pub const BUCKET_RECREATIONS: &str = "aegis_kv_bucket_recreations_total";
/// Discovery lookups not answered from memory, in seconds: a registry read on a cache
/// miss, or the default discovery's wait for a new watch to catch up.
pub const DISCOVERY_SECONDS: &str = "aegis_discovery_seconds";
/// Command deliveries to a handler, redeliveries included.
pub const COMMAND_DELIVERIES: &str = "aegis_command_deliveries_total";
/// Command deliveries after the first (a retry, or a redelivery after a lost ack).
pub const COMMAND_REDELIVERIES: &str = "aegis_command_redeliveries_total";
/// How event deliveries were acknowledged: `ack`, `nak` (redelivered later) or `term`.
pub const EVENT_ACKS: &str = "aegis_event_acks_total";
/// Runs of `#[schedule]` methods, by outcome: `ok`, `error` (returned or panicked).
pub const SCHEDULE_RUNS: &str = "aegis_schedule_runs_total";
/// Ticks of `#[schedule]` methods that did not run on this instance, by reason: `missed`
/// (could not start in time), `standby` (an exclusive schedule on a non-leader).
pub const SCHEDULE_SKIPS: &str = "aegis_schedule_skipped_total";

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; Prometheus names end in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution, served with buckets.
    Histogram,
}

/// One metric Aegis records: what [`describe`] tells the recorder and the docs list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The metric's name.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// Its unit: `seconds` for latencies, empty for plain counts.
    pub unit: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    unit: &'static str,
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        labels,
        unit,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

const SERVICE_METHOD: &[&str] = &["service", "method"];

/// Every metric Aegis records.
pub const ALL: &[MetricInfo] = &[
    metric(
        CALLS,
        Counter,
        &["service", "method", "outcome"],
        "",
        "Calls made by clients, by outcome (ok, error).",
    ),
    metric(
        ERRORS,
        Counter,
        &["service", "method", "kind"],
        "",
        "Failed client calls, by error kind.",
    ),
    metric(
        ATTEMPTS,
        Counter,
        SERVICE_METHOD,
        "",
        "Requests clients sent, retries included.",
    ),
    metric(
        RETRIES,
        Counter,
        SERVICE_METHOD,
        "",
        "Client attempts after the first.",
    ),
    metric(
        NOT_ACTIVE,
        Counter,
        SERVICE_METHOD,
        "",
        "NOT_ACTIVE answers clients received.",
    ),
    metric(
        CALL_SECONDS,
        Histogram,
        SERVICE_METHOD,
        "seconds",
        "Client calls: time from the first attempt to the outcome.",
    ),
    metric(
        FAILOVER_SECONDS,
        Histogram,
        SERVICE_METHOD,
        "seconds",
        "Client calls that succeeded after retries: time from the first attempt to success.",
    ),
    metric(
        DISCOVERY_HITS,
        Counter,
        &["service"],
        "",
        "Discovery lookups answered from memory (a live registry watch or a cache).",
    ),
    metric(
        DISCOVERY_MISSES,
        Counter,
        &["service"],
        "",
        "Discovery lookups that read the registry.",
    ),
    metric(
        CONNECTION_EVENTS,
        Counter,
        &["event"],
        "",
        "Events of NATS connections, by event.",
    ),
    metric(
        POISON_EVENTS,
        Counter,
        &["method"],
        "",
        "Events dropped because their payload does not decode.",
    ),
    metric(
        POISON_COMMANDS,
        Counter,
        &["command"],
        "",
        "Commands failed at once because their payload does not decode.",
    ),
    metric(
        LEADER_STEP_DOWNS,
        Counter,
        &["service", "reason"],
        "",
        "Leaders that lost their leadership other than by a graceful stop, by reason.",
    ),
    metric(
        STALE_LEADER_KEYS,
        Counter,
        &["service"],
        "",
        "Leader keys a standby removed because no live leader rewrote them.",
    ),
    metric(
        HANDLER_PANICS,
        Counter,
        &["kind", "method"],
        "",
        "Handlers and hooks that panicked (caught).",
    ),
    metric(
        EJECTIONS,
        Counter,
        &["service"],
        "",
        "Instances ejected from a client's selection after a timeout or no responders.",
    ),
    metric(
        FORWARDED_CALLS,
        Counter,
        SERVICE_METHOD,
        "",
        "Exclusive calls a non-leader forwarded to the leader.",
    ),
    metric(
        SERVER_REQUESTS,
        Counter,
        &["service", "method", "outcome"],
        "",
        "RPC calls an instance answered, by outcome (ok, error, not_active).",
    ),
    metric(
        SERVER_ERRORS,
        Counter,
        &["service", "method", "kind"],
        "",
        "RPC calls that failed on the instance, by kind (handler, bad_request, deadline_exceeded).",
    ),
    metric(
        SERVER_HANDLER_SECONDS,
        Histogram,
        SERVICE_METHOD,
        "seconds",
        "Time from an RPC handler's start to its reply.",
    ),
    metric(
        SERVER_QUEUE_SECONDS,
        Histogram,
        SERVICE_METHOD,
        "seconds",
        "Time from an RPC call's receipt to its handler's start.",
    ),
    metric(
        SERVER_IN_FLIGHT,
        Gauge,
        SERVICE_METHOD,
        "",
        "RPC calls running now.",
    ),
    metric(
        LEADER,
        Gauge,
        &["service", "group"],
        "",
        "1 while an instance of this process leads the group, else 0.",
    ),
    metric(
        LEADER_TERM,
        Gauge,
        &["service", "group"],
        "",
        "The fencing term of the last leadership of this process in the group.",
    ),
    metric(
        LEADER_CHANGES,
        Counter,
        &["service", "group", "change"],
        "",
        "Leaderships gained (elected) and lost (lost).",
    ),
    metric(
        HEARTBEAT_FAILURES,
        Counter,
        &["service"],
        "",
        "Registry heartbeats that failed.",
    ),
    metric(
        HEALTH_CHANGES,
        Counter,
        &["status"],
        "",
        "Changes of an instance's reported status, by the new status.",
    ),
    metric(
        REGISTRATION_RECREATIONS,
        Counter,
        &["service"],
        "",
        "Registry entries written again after they were gone (expired or deleted).",
    ),
    metric(
        BUCKET_RECREATIONS,
        Counter,
        &["bucket"],
        "",
        "KV buckets re-created after they were deleted.",
    ),
    metric(
        DISCOVERY_SECONDS,
        Histogram,
        &["service"],
        "seconds",
        "Discovery lookups not answered from memory: a registry read, or the wait for a new watch to catch up.",
    ),
    metric(
        COMMAND_DELIVERIES,
        Counter,
        &["command"],
        "",
        "Command deliveries to a handler, redeliveries included.",
    ),
    metric(
        COMMAND_REDELIVERIES,
        Counter,
        &["command"],
        "",
        "Command deliveries after the first.",
    ),
    metric(
        EVENT_ACKS,
        Counter,
        &["method", "ack"],
        "",
        "How event deliveries were acknowledged (ack, nak, term).",
    ),
    metric(
        SCHEDULE_RUNS,
        Counter,
        &["service", "schedule", "outcome"],
        "",
        "Runs of #[schedule] methods, by outcome (ok, error).",
    ),
    metric(
        SCHEDULE_SKIPS,
        Counter,
        &["service", "schedule", "reason"],
        "",
        "Ticks of #[schedule] methods this instance did not run, by reason (missed, standby).",
    ),
];

/// The bucket bounds (seconds) of every latency histogram: from 0.1 ms (a local call) to
/// 30 s (a slow failover or a long handler).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Gives the `# HELP` text and unit of every metric in [`ALL`] to the installed recorder.
///
/// A recorder keeps descriptions it receives after it is installed: call this once the
/// recorder is in place. `install_prometheus_exporter` (feature `prometheus`) and every
/// instance's start call it; calling it again is harmless.
pub fn describe() {
    for info in ALL {
        let unit = if info.unit == "seconds" {
            metrics::Unit::Seconds
        } else {
            metrics::Unit::Count
        };
        match info.kind {
            MetricKind::Counter => metrics::describe_counter!(info.name, unit, info.help),
            MetricKind::Gauge => metrics::describe_gauge!(info.name, unit, info.help),
            MetricKind::Histogram => metrics::describe_histogram!(info.name, unit, info.help),
        }
    }
}

/// The metric handles of one method of one service, registered once: recording through
/// them allocates nothing (a call records half a dozen values).
///
/// Handles are registered with the recorder installed at that moment: install yours
/// before the first call.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    service: String,
    method: String,
    ok: metrics::Counter,
    failed: metrics::Counter,
    attempts: metrics::Counter,
    retries: metrics::Counter,
    not_active: metrics::Counter,
    seconds: metrics::Histogram,
    failover: metrics::Histogram,
}

impl CallMetrics {
    pub(crate) fn new(service: &ServiceName, method: &str) -> Self {
        let (service, method) = (service.to_string(), method.to_owned());
        let labels = [("service", service.clone()), ("method", method.clone())];
        let with_outcome = |outcome: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("outcome", outcome.to_owned()));
            metrics::counter!(CALLS, &labels)
        };
        Self {
            ok: with_outcome("ok"),
            failed: with_outcome("error"),
            attempts: metrics::counter!(ATTEMPTS, &labels),
            retries: metrics::counter!(RETRIES, &labels),
            not_active: metrics::counter!(NOT_ACTIVE, &labels),
            seconds: metrics::histogram!(CALL_SECONDS, &labels),
            failover: metrics::histogram!(FAILOVER_SECONDS, &labels),
            service,
            method,
        }
    }

    /// Records the outcome of one call.
    pub(crate) fn finished(
        &self,
        attempts: u32,
        elapsed: Duration,
        error_kind: Option<&'static str>,
    ) {
        self.attempts.increment(u64::from(attempts));
        if attempts > 1 {
            self.retries.increment(u64::from(attempts - 1));
        }
        self.seconds.record(elapsed.as_secs_f64());
        match error_kind {
            Some(kind) => {
                self.failed.increment(1);
                // Rare: registered when it happens.
                metrics::counter!(ERRORS, "service" => self.service.clone(), "method" => self.method.clone(), "kind" => kind)
                    .increment(1);
            }
            None => {
                self.ok.increment(1);
                if attempts > 1 {
                    self.failover.record(elapsed.as_secs_f64());
                }
            }
        }
    }

    /// Records a NOT_ACTIVE answer.
    pub(crate) fn not_active(&self) {
        self.not_active.increment(1);
    }
}

/// The server-side metric handles of one RPC method of one instance, registered once (at
/// the instance's start): a call records through them without a lookup.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    service: String,
    method: &'static str,
    ok: metrics::Counter,
    failed: metrics::Counter,
    not_active: metrics::Counter,
    handler: metrics::Histogram,
    queue: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl ServerMetrics {
    pub(crate) fn new(service: &ServiceName, method: &'static str) -> Self {
        let service = service.to_string();
        let labels = [("service", service.clone()), ("method", method.to_owned())];
        let with_outcome = |outcome: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("outcome", outcome.to_owned()));
            metrics::counter!(SERVER_REQUESTS, &labels)
        };
        Self {
            ok: with_outcome("ok"),
            failed: with_outcome("error"),
            not_active: with_outcome("not_active"),
            handler: metrics::histogram!(SERVER_HANDLER_SECONDS, &labels),
            queue: metrics::histogram!(SERVER_QUEUE_SECONDS, &labels),
            in_flight: metrics::gauge!(SERVER_IN_FLIGHT, &labels),
            service,
            method,
        }
    }

    /// A handler starts: `received` is when its call arrived.
    pub(crate) fn started(&self, received: Instant, now: Instant) {
        self.queue
            .record(now.saturating_duration_since(received).as_secs_f64());
        self.in_flight.increment(1.0);
    }

    /// A handler that started replied, after `took`; `error_kind` names a failure.
    pub(crate) fn finished(
        &self,
        took: Duration,
        error_kind: Option<&'static str>,
        not_active: bool,
    ) {
        self.in_flight.decrement(1.0);
        self.handler.record(took.as_secs_f64());
        match error_kind {
            Some(kind) => {
                self.failed.increment(1);
                // Rare: registered when it happens.
                metrics::counter!(SERVER_ERRORS, "service" => self.service.clone(), "method" => self.method, "kind" => kind)
                    .increment(1);
            }
            None if not_active => self.not_active.increment(1),
            None => self.ok.increment(1),
        }
    }
}

/// The leadership metric handles of one instance.
#[derive(Debug)]
pub(crate) struct LeaderMetrics {
    leader: metrics::Gauge,
    term: metrics::Gauge,
    elected: metrics::Counter,
    lost: metrics::Counter,
}

impl LeaderMetrics {
    pub(crate) fn new(service: &ServiceName, group: &GroupId) -> Self {
        let labels = [
            ("service", service.to_string()),
            ("group", group.to_string()),
        ];
        let change = |change: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("change", change.to_owned()));
            metrics::counter!(LEADER_CHANGES, &labels)
        };
        let leader = metrics::gauge!(LEADER, &labels);
        // Present (0) from the start, so a dashboard shows standbys too.
        leader.increment(0.0);
        Self {
            leader,
            term: metrics::gauge!(LEADER_TERM, &labels),
            elected: change("elected"),
            lost: change("lost"),
        }
    }

    /// This instance became the leader under `term`.
    pub(crate) fn elected(&self, term: u64) {
        self.leader.increment(1.0);
        #[allow(clippy::cast_precision_loss)] // terms are KV revisions, far below 2^53
        self.term.set(term as f64);
        self.elected.increment(1);
    }

    /// This instance stopped being the leader.
    pub(crate) fn lost(&self) {
        self.leader.decrement(1.0);
        self.lost.increment(1);
    }
}

/// Records a failed registry heartbeat.
pub(crate) fn heartbeat_failed(service: &str) {
    metrics::counter!(HEARTBEAT_FAILURES, "service" => service.to_owned()).increment(1);
}

/// Records a change of an instance's reported status.
pub(crate) fn health_changed(status: crate::instance::InstanceStatus) {
    let status = if status == crate::instance::InstanceStatus::Active {
        "active"
    } else {
        "unhealthy"
    };
    metrics::counter!(HEALTH_CHANGES, "status" => status).increment(1);
}

/// Records that a registry entry is written again after it was gone.
pub(crate) fn registration_recreated(service: &str) {
    metrics::counter!(REGISTRATION_RECREATIONS, "service" => service.to_owned()).increment(1);
}

/// Records that a KV bucket was re-created.
pub(crate) fn bucket_recreated(bucket: &str) {
    metrics::counter!(BUCKET_RECREATIONS, "bucket" => bucket.to_owned()).increment(1);
}

/// Records one delivery of a command (`delivered`: its delivery count, 1 the first time).
pub(crate) fn command_delivered(command: &'static str, delivered: u64) {
    metrics::counter!(COMMAND_DELIVERIES, "command" => command).increment(1);
    if delivered > 1 {
        metrics::counter!(COMMAND_REDELIVERIES, "command" => command).increment(1);
    }
}

/// Records how an event delivery was acknowledged.
pub(crate) fn event_acked(method: &'static str, ack: &async_nats::jetstream::AckKind) {
    let ack = match ack {
        async_nats::jetstream::AckKind::Ack => "ack",
        async_nats::jetstream::AckKind::Nak(_) => "nak",
        async_nats::jetstream::AckKind::Term => "term",
        _ => "other",
    };
    metrics::counter!(EVENT_ACKS, "method" => method, "ack" => ack).increment(1);
}

/// Records how long a registry read of the default discovery took.
pub(crate) fn discovery_read(service: &ServiceName, took: Duration) {
    metrics::histogram!(DISCOVERY_SECONDS, "service" => service.to_string())
        .record(took.as_secs_f64());
}

/// Records a discovery cache lookup.
pub(crate) fn discovery_lookup(service: &ServiceName, hit: bool) {
    let name = if hit {
        DISCOVERY_HITS
    } else {
        DISCOVERY_MISSES
    };
    metrics::counter!(name, "service" => service.to_string()).increment(1);
}

/// Serves every Aegis metric (and any other recorded through `metrics`) for Prometheus
/// on `http://{address}/metrics`, with `# HELP` text ([`describe`]) and the latency
/// histograms as `_bucket` series ([`LATENCY_BUCKETS`]). Needs a Tokio runtime.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// aegis_runtime::metrics::install_prometheus_exporter("127.0.0.1:9000".parse()?)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When a recorder is already installed or the address cannot be bound.
#[cfg(feature = "prometheus")]
pub fn install_prometheus_exporter(
    address: std::net::SocketAddr,
) -> Result<(), metrics_exporter_prometheus::BuildError> {
    use metrics_exporter_prometheus::Matcher;

    let mut builder =
        metrics_exporter_prometheus::PrometheusBuilder::new().with_http_listener(address);
    // Buckets rather than the default summaries: buckets add up across instances.
    for info in ALL.iter().filter(|info| info.kind == MetricKind::Histogram) {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(info.name.to_owned()), LATENCY_BUCKETS)?;
    }
    builder.install()?;
    describe();
    Ok(())
}
