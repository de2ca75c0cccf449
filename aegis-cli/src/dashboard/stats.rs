//! Per-endpoint counters of each instance, from its own `$SRV.STATS` answer (ADR-32).

use std::time::Duration;

use aegis_runtime::runner::MicroStats;
use aegis_runtime::subject::{self, InstanceId, MicroVerb, ServiceName};
use serde::Serialize;

/// How long an instance has to answer: a frozen one must not hold the page up.
const ANSWER_WITHIN: Duration = Duration::from_millis(750);

/// The counters of one instance, or why there are none.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceStats {
    pub(crate) instance_id: String,
    /// `None` when the instance did not answer (see `error`).
    pub(crate) endpoints: Option<Vec<EndpointStats>>,
    pub(crate) error: Option<String>,
}

/// One endpoint's counters.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointStats {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// The last failure; empty when none.
    pub(crate) last_error: String,
    /// Mean handler time, in milliseconds.
    pub(crate) average_ms: f64,
}

/// Asks each of `instances` of `service` for its counters, all at once.
pub(crate) async fn gather(
    nats: &async_nats::Client,
    service: &ServiceName,
    instances: impl IntoIterator<Item = String>,
) -> Vec<InstanceStats> {
    let asks = instances.into_iter().map(|id| async move {
        let (endpoints, error) = match ask(nats, service, &id).await {
            Ok(stats) => (Some(stats), None),
            Err(why) => (None, Some(why)),
        };
        InstanceStats {
            instance_id: id,
            endpoints,
            error,
        }
    });
    futures_util::future::join_all(asks).await
}

async fn ask(
    nats: &async_nats::Client,
    service: &ServiceName,
    id: &str,
) -> Result<Vec<EndpointStats>, String> {
    let instance = InstanceId::new(id).map_err(|err| err.to_string())?;
    let [.., own] = subject::micro(MicroVerb::Stats, service, &instance);
    let answer = tokio::time::timeout(ANSWER_WITHIN, nats.request(own, "".into()))
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?
        .map_err(|err| match err.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                "not running: nothing answers its $SRV.STATS subject".to_owned()
            }
            _ => err.to_string(),
        })?;
    let stats: MicroStats =
        serde_json::from_slice(&answer.payload).map_err(|err| format!("bad answer: {err}"))?;
    Ok(stats
        .endpoints
        .into_iter()
        .map(|e| EndpointStats {
            average_ms: e.average_processing_time as f64 / 1e6,
            name: e.name,
            subject: e.subject,
            requests: e.num_requests,
            errors: e.num_errors,
            last_error: e.last_error,
        })
        .collect())
}
