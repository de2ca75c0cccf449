//! Whether a Python AegisSDK instance leads a group that has no Aegis leader: then its
//! exclusive methods are served on the shared subject (SDK instances serve no
//! per-instance subject), and an exclusive call goes there instead of waiting for an
//! Aegis leader that may never come (docs/python-interop.md).
//!
//! Looked at only while the Aegis key names no leader, and at most once a
//! [`RECHECK`]: a deployment without SDK members pays one failed read per second per
//! client, and only while its own group has no leader.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::election::LeaderRecord;
use crate::subject::{self, GroupId, ServiceName, python_sdk};

/// How long an answer is reused.
const RECHECK: Duration = Duration::from_secs(1);

/// The last look at the SDK's leader key of one (service, group).
#[derive(Debug, Default)]
pub(super) struct PythonLeaderProbe {
    last: Mutex<Option<(Instant, bool)>>,
}

impl PythonLeaderProbe {
    /// Whether the SDK's leader key of (`service`, `group`) names a leader that is not an
    /// Aegis instance (an Aegis leader of a mixed group holds that key too, with its
    /// fencing term in the record: it is followed by the Aegis key).
    pub(super) async fn python_leads(
        &self,
        nats: &async_nats::Client,
        service: &ServiceName,
        group: &GroupId,
    ) -> bool {
        if let Ok(last) = self.last.lock()
            && let Some((at, leads)) = *last
            && at.elapsed() < RECHECK
        {
            return leads;
        }
        let leads = look(nats, service, group).await;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), leads));
        }
        leads
    }
}

/// How long the read may take. The server drops a request the client's user may not send
/// (a permission set without `$JS.API.DIRECT.GET.KV_election_{service}`) without an answer:
/// such a client then goes on waiting for an Aegis leader after this short wait, not after
/// the JetStream request timeout.
const LOOK_WITHIN: Duration = Duration::from_millis(250);

/// One direct read of the SDK's leader key: no JetStream API call (no `STREAM.INFO`), so a
/// client needs only the right to that one subject.
async fn look(nats: &async_nats::Client, service: &ServiceName, group: &GroupId) -> bool {
    let bucket = python_sdk::election_bucket(service);
    let request = serde_json::json!({
        "last_by_subj": subject::kv_key(&bucket, &python_sdk::leader_key(service, group)),
    });
    let asked = tokio::time::timeout(
        LOOK_WITHIN,
        nats.request(
            subject::direct_get(&format!("KV_{bucket}")),
            request.to_string().into(),
        ),
    )
    .await;
    // No bucket (no responders: no SDK member has ever run), no right, no answer in time.
    let Ok(Ok(reply)) = asked else {
        return false;
    };
    // A status: no such key (404) or another refusal.
    if reply.status.is_some() {
        return false;
    }
    let removed = reply
        .headers
        .as_ref()
        .and_then(|headers| headers.get("KV-Operation"))
        .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"));
    !removed
        && crate::codec::decode::<LeaderRecord>(&reply.payload)
            .is_ok_and(|record| !record.metadata.contains_key(LeaderRecord::TERM))
}
