//! The staleness rule of the election: a leader key that has not been rewritten for
//! longer than `leader_ttl + margin`, judged by the **server's** clock, belongs to no live
//! leader and may be removed by a standby.
//!
//! A live leader rewrites its key every `leader_ttl / 3`, each write with a TTL of
//! `leader_ttl`, so a key it wrote never lives longer than `leader_ttl` (+ the ~250 ms the
//! server takes to turn an expiry into a marker). A key that is older was written by
//! something else: a forged value without a TTL, a value with a much longer TTL, a
//! writer that crashed between two versions of the protocol. Without this rule such a
//! key would keep every instance standby forever.
//!
//! Both times come from the server: the age is the server's current time (the `ts` field
//! of a stream-info answer, which nats-server stamps on every JetStream API reply) minus
//! the entry's `created` time (stamped by the server when it stored the write). No local
//! wall clock is read, so a skewed instance can neither depose a live leader nor keep a
//! dead key alive.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::Deserialize;

/// The smallest margin beyond `leader_ttl`: covers the server's expiry delay (measured
/// up to ~250 ms) with room to spare.
const MIN_MARGIN: Duration = Duration::from_millis(500);

/// How far beyond `leader_ttl` a key may age before it counts as dead: half the TTL, at
/// least [`MIN_MARGIN`]. A key written with the TTL has expired long before (its last
/// leader's local lease ended even earlier, `leader_ttl / 4` before the expiry), so
/// removing an older one never deposes a leader that still serves.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 2).max(MIN_MARGIN)
}

/// The age beyond which a leader key is dead.
pub(crate) fn stale_after(ttl: Duration) -> Duration {
    ttl + margin(ttl)
}

/// Why the server's view of a key's age could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgeError {
    /// The stream-info request failed (no responders, timeout, no permission to send it).
    #[error(
        "cannot ask the server for the time (`$JS.API.STREAM.INFO.{stream}`; a service user needs the right to send it)"
    )]
    Request {
        /// The stream asked about.
        stream: String,
        /// What failed.
        #[source]
        source: jetstream::context::RequestError,
    },
    /// The server answered with an error.
    #[error("the server refused `$JS.API.STREAM.INFO.{stream}`: {description} (code {code})")]
    Refused {
        /// The stream asked about.
        stream: String,
        /// The server's description.
        description: String,
        /// The server's error code.
        code: u64,
    },
    /// The answer had no usable `ts` (a server older than 2.10).
    #[error(
        "the server's answer carries no timestamp (`ts`); nats-server 2.10 or newer is needed to judge stale leader keys"
    )]
    NoTimestamp,
}

/// A JetStream API reply reduced to what is read here.
#[derive(Debug, Deserialize)]
struct Stamped {
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// The instance a leader key's `value` names, for logs.
pub(crate) fn holder_of(value: &[u8]) -> String {
    crate::codec::decode::<super::LeaderRecord>(value)
        .map(|record| record.instance_id)
        .unwrap_or_else(|_| "an undecodable value".to_owned())
}

/// Removes the leader key `key` of a dead holder of `service`'s group at `revision`
/// (revision-checked: a renewal that lands first wins), and counts the removal.
pub(crate) async fn remove_dead(
    store: &kv::Store,
    key: &str,
    revision: u64,
    service: &crate::subject::ServiceName,
) -> Result<(), kv::DeleteError> {
    store.delete_expect_revision(key, Some(revision)).await?;
    metrics::counter!(crate::metrics::STALE_LEADER_KEYS, "service" => service.to_string())
        .increment(1);
    Ok(())
}

/// How long ago, by the server's clock, `entry` was written to `bucket`.
pub(crate) async fn age(
    js: &jetstream::Context,
    bucket: &str,
    entry: &kv::Entry,
) -> Result<Duration, AgeError> {
    let stream = format!("KV_{bucket}");
    let stamped: Stamped = js
        .request(format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
        .await
        .map_err(|source| AgeError::Request {
            stream: stream.clone(),
            source,
        })?;
    if let Some(error) = stamped.error {
        return Err(AgeError::Refused {
            stream,
            description: error.description,
            code: error.err_code,
        });
    }
    let now = stamped
        .ts
        .as_deref()
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .and_then(|ts| ts.timestamp_nanos_opt())
        .ok_or(AgeError::NoTimestamp)?;
    Ok(between(
        entry.created.unix_timestamp_nanos(),
        i128::from(now),
    ))
}

/// `now − created`, in nanoseconds since the epoch; zero when `created` is later (the
/// server that stamped the entry runs ahead of the one that answered).
fn between(created: i128, now: i128) -> Duration {
    u64::try_from(now.saturating_sub(created))
        .map(Duration::from_nanos)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_covers_the_expiry_delay_and_grows_with_the_ttl() {
        assert_eq!(margin(Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(stale_after(Duration::from_secs(2)), Duration::from_secs(3));
        assert_eq!(
            stale_after(Duration::from_secs(10)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn an_entry_from_the_future_has_no_age() {
        assert_eq!(between(2_000, 1_000), Duration::ZERO);
        assert_eq!(between(1_000, 3_500), Duration::from_nanos(2_500));
    }

    #[test]
    fn the_server_timestamp_is_read_with_nanoseconds() {
        let stamped: Stamped =
            serde_json::from_str(r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","ts":"2026-12-02T16:20:00.123456789Z","config":{}}"#)
                .expect("decodes");
        let ts = chrono::DateTime::parse_from_rfc3339(stamped.ts.as_deref().expect("ts"))
            .expect("rfc 3339");
        assert_eq!(ts.timestamp_subsec_nanos(), 123_456_789);
        let refused: Stamped = serde_json::from_str(
            r#"{"error":{"code":404,"err_code":10059,"description":"stream not found"}}"#,
        )
        .expect("decodes");
        assert_eq!(refused.error.map(|e| e.err_code), Some(10059));
    }
}
