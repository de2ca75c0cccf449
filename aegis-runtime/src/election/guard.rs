//! The leader's watch on its own key: another writer's delete, purge or value makes it
//! stop serving at once, instead of at its next renewal (up to `leader_ttl / 3` later,
//! while a standby that saw the same change may already serve).

use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;

use crate::codec;
use crate::subject::InstanceId;

use super::LeaderRecord;

/// How long a broken watch waits before it is opened again (renewals still guard the
/// leadership meanwhile, at their own pace).
const REOPEN_DELAY: Duration = Duration::from_millis(100);

/// What another writer did to the leader key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The key was deleted.
    Deleted,
    /// The key was purged, or expired.
    Purged,
    /// The key now names another instance (or holds something that is not a leader
    /// record).
    Foreign(String),
}

impl Lost {
    /// The reason, as the `LeaderLost` event and the step-down metric name it.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Lost::Deleted => "key_deleted",
            Lost::Purged => "key_purged",
            Lost::Foreign(_) => "foreign_value",
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Deleted => f.write_str("the leader key was deleted"),
            Lost::Purged => f.write_str("the leader key was purged or expired"),
            Lost::Foreign(holder) => write!(f, "the leader key now names {holder:?}"),
        }
    }
}

/// Whether a version of the leader key (`operation`, `value`) takes the leadership from
/// `instance`. A value naming `instance` is its own renewal (or a copy of it, which the
/// next compare-and-set renewal detects) and changes nothing.
fn judge(operation: kv::Operation, value: &[u8], instance: &InstanceId) -> Option<Lost> {
    match operation {
        kv::Operation::Delete => Some(Lost::Deleted),
        kv::Operation::Purge => Some(Lost::Purged),
        kv::Operation::Put => match codec::decode::<LeaderRecord>(value) {
            Ok(record) if record.instance_id == instance.as_str() => None,
            Ok(record) => Some(Lost::Foreign(record.instance_id)),
            Err(_) => Some(Lost::Foreign("an undecodable value".to_owned())),
        },
    }
}

/// Watches the key from its current version on; returns at the first change that takes
/// the leadership from `instance`. Never returns otherwise: a watch that breaks is opened
/// again.
pub(crate) async fn lost(store: &kv::Store, key: &str, instance: &InstanceId) -> Lost {
    loop {
        // With history: the current version first, so a change made between winning the
        // key and opening this watch is seen too.
        match store.watch_with_history(key).await {
            Ok(mut watch) => {
                while let Some(change) = watch.next().await {
                    match change {
                        Ok(entry) => {
                            if let Some(lost) = judge(entry.operation, &entry.value, instance) {
                                return lost;
                            }
                        }
                        Err(err) => {
                            tracing::debug!(%key, %err, "the watch on the leader key broke; reopening");
                            break;
                        }
                    }
                }
            }
            Err(err) => {
                tracing::debug!(%key, %err, "cannot watch the leader key; renewals still guard it");
            }
        }
        tokio::time::sleep(REOPEN_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instance: &str) -> Vec<u8> {
        format!(r#"{{"instance_id":"{instance}","elected_at":1.0,"last_heartbeat":2.0,"metadata":{{}}}}"#)
            .into_bytes()
    }

    #[test]
    fn only_the_leaders_own_value_keeps_the_leadership() {
        let me = InstanceId::new("orders-1").expect("id");
        assert_eq!(judge(kv::Operation::Put, &record("orders-1"), &me), None);
        assert_eq!(
            judge(kv::Operation::Put, &record("orders-2"), &me),
            Some(Lost::Foreign("orders-2".to_owned()))
        );
        assert_eq!(
            judge(kv::Operation::Put, b"not json", &me).map(|l| l.reason()),
            Some("foreign_value")
        );
        assert_eq!(judge(kv::Operation::Delete, b"", &me), Some(Lost::Deleted));
        assert_eq!(judge(kv::Operation::Purge, b"", &me), Some(Lost::Purged));
    }
}
