//! The metrics Aegis records, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Nothing is recorded until the application installs a recorder (any `metrics`
//! exporter); with the `prometheus` feature, [`install_prometheus_exporter`] does it.
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
//! | `aegis_events_poison_total` | counter | method | events dropped because their payload does not decode |
//! | `aegis_commands_poison_total` | counter | command | commands failed at once because their payload does not decode |

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

/// Events dropped because their payload does not decode into the handler's type.
pub const POISON_EVENTS: &str = "aegis_events_poison_total";

/// Commands failed at once because their payload does not decode.
pub const POISON_COMMANDS: &str = "aegis_commands_poison_total";

/// Records the outcome of one call.
pub(crate) fn call_finished(
    service: &ServiceName,
    method: &str,
    attempts: u32,
    elapsed: Duration,
    error_kind: Option<&'static str>,
) {
    let labels = [
        ("service", service.to_string()),
        ("method", method.to_owned()),
    ];
    let outcome = if error_kind.is_some() { "error" } else { "ok" };
    let mut with_outcome = labels.to_vec();
    with_outcome.push(("outcome", outcome.to_owned()));
    metrics::counter!(CALLS, &with_outcome).increment(1);
    metrics::counter!(ATTEMPTS, &labels).increment(u64::from(attempts));
    if attempts > 1 {
        metrics::counter!(RETRIES, &labels).increment(u64::from(attempts - 1));
    }
    metrics::histogram!(CALL_SECONDS, &labels).record(elapsed.as_secs_f64());
    match error_kind {
        Some(kind) => {
            let mut with_kind = labels.to_vec();
            with_kind.push(("kind", kind.to_owned()));
            metrics::counter!(ERRORS, &with_kind).increment(1);
        }
        None if attempts > 1 => {
            metrics::histogram!(FAILOVER_SECONDS, &labels).record(elapsed.as_secs_f64());
        }
        None => {}
    }
}

/// Records a NOT_ACTIVE answer.
pub(crate) fn not_active(service: &ServiceName, method: &str) {
    metrics::counter!(NOT_ACTIVE, "service" => service.to_string(), "method" => method.to_owned())
        .increment(1);
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
