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
//! | `aegis_discovery_cache_hits_total` | counter | service | lookups answered from a discovery cache |
//! | `aegis_discovery_cache_misses_total` | counter | service | lookups that read the registry |
//! | `aegis_nats_connection_events_total` | counter | event (`connected`/`disconnected`/`permissions_violation`/`server_error`/...) | events of connections made by [`ConnectConfig`](crate::connect::ConnectConfig) |
//! | `aegis_events_poison_total` | counter | method | events dropped because their payload does not decode |
//! | `aegis_commands_poison_total` | counter | command | commands failed at once because their payload does not decode |
//! | `aegis_election_step_downs_total` | counter | service, reason (`key_deleted`/`key_purged`/`foreign_value`/`renewal_conflict`/`lease_expired`) | leaders that lost their leadership other than by a graceful stop |
//! | `aegis_election_stale_keys_removed_total` | counter | service | leader keys a standby removed because no live leader rewrote them (see docs/single-active.md) |
//! | `aegis_client_ejections_total` | counter | service | instances ejected from a client's selection after a timeout or no responders (see docs/clients.md) |
//! | `aegis_exclusive_calls_forwarded_total` | counter | service, method | exclusive calls a non-leader forwarded to the leader (see docs/single-active.md) |
//! | `aegis_handler_panics_total` | counter | kind (`rpc`/`exclusive_rpc`/`event`/`command`/`on_start`/`on_stop`), method | handlers and hooks that panicked (caught; see docs/runtime.md) |

use std::time::Duration;

use crate::subject::ServiceName;

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
/// Discovery lookups answered from a cache.
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
/// on `http://{address}/metrics`. Needs a Tokio runtime.
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
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
}
