//! The streams Aegis shares among instances (`EVENTS`, `COMMANDS`, and the KV buckets'
//! streams), made ready for use on a cluster, where a deploy starts many instances at once
//! against streams that were created a moment ago.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::JetStreamError;
use crate::backoff::{Backoff, Exponential};

/// The consumers a stream Aegis creates takes. nats-server 2.15 gives a stream that sets
/// no limit 1,000, and Aegis uses one consumer per member of a sticky-active group (its
/// watch of the leader key), per watching process and service (discovery), and per
/// instance for broadcast events: 1,000 would cap a deployment at 1,000 grouped
/// instances.
pub(crate) const MAX_CONSUMERS: i32 = 100_000;

/// Gets the stream `config` names, creating it with `config` when missing (an existing
/// one is used as it is); on a cluster, waits until it is led (see [`until_led`]).
/// A request JetStream did not answer in time is made again (it is idempotent).
pub(crate) async fn get_or_create(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, JetStreamError> {
    let config = stream::Config {
        max_consumers: MAX_CONSUMERS,
        ..config
    };
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

/// Raises the consumer limit of a bucket's stream Aegis just created to
/// [`MAX_CONSUMERS`] (the KV API cannot set it at creation). A failure is logged, not
/// returned: the bucket works, with the server's default limit.
pub(crate) async fn allow_many_consumers(js: &jetstream::Context, stream: &stream::Stream) {
    let mut config = stream.cached_info().config.clone();
    if config.max_consumers >= MAX_CONSUMERS {
        return;
    }
    config.max_consumers = MAX_CONSUMERS;
    if let Err(err) = js.update_stream(&config).await {
        tracing::warn!(stream = %config.name, %err, "cannot raise the stream's consumer limit; it keeps the server's default (1,000 on nats-server 2.15), which limits sticky-active members and watchers");
    }
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
