//! The streams Aegis shares among instances (`EVENTS`, `COMMANDS`, and the KV buckets'
//! streams), made ready for use on a cluster, where a deploy starts many instances at once
//! against streams that were created a moment ago.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::JetStreamError;
use crate::backoff::{Backoff, Exponential};

/// Gets the stream `config` names, creating it with `config` when missing (an existing
/// one is used as it is); on a cluster, waits until it is led (see [`until_led`]).
/// A request JetStream did not answer in time is made again (it is idempotent).
pub(crate) async fn get_or_create(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, JetStreamError> {
    let name = config.name.clone();
    let stream = crate::jetstream_error::patiently(
        || format!("get or create the stream {name}"),
        || js.get_or_create_stream(config.clone()),
    )
    .await?;
    if js.client().server_info().cluster.is_some() {
        until_led(&stream).await;
    }
    Ok(stream)
}

/// How long a new replicated stream may take to elect its leader and catch its replicas up.
const LEADER_ELECTED_WITHIN: Duration = Duration::from_secs(10);

/// Waits until `stream` has a leader and every replica is current. On a cluster a stream
/// that was just created exists at once, but answers reads and writes only once its
/// replicas elected a leader (a few hundred milliseconds), and a direct read (what KV
/// `get` is) only from a replica that caught up: before that they get "no responders",
/// and many instances starting together on a fresh cluster (a deploy) would fail, all but
/// the one that created the bucket. Gives up after [`LEADER_ELECTED_WITHIN`]: the
/// operations that follow then fail with their own errors.
pub(crate) async fn until_led(stream: &jetstream::stream::Stream) {
    let mut stream = stream.clone();
    let mut wait = Backoff::new(Exponential::doubling(
        Duration::from_millis(20),
        Duration::from_millis(500),
    ));
    let deadline = tokio::time::Instant::now() + LEADER_ELECTED_WITHIN;
    loop {
        match stream.info().await {
            Ok(info) => {
                let ready = info.cluster.as_ref().is_none_or(|cluster| {
                    cluster.leader.is_some() && cluster.replicas.iter().all(|r| r.current)
                });
                if ready {
                    return;
                }
                tracing::debug!(stream = %info.config.name, "the stream has no leader or lagging replicas yet");
            }
            Err(err) => tracing::debug!(%err, "cannot ask for the stream's state"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "a stream elected no leader or did not catch its replicas up within {LEADER_ELECTED_WITHIN:?}"
            );
            return;
        }
        tokio::time::sleep(wait.next()).await;
    }
}
