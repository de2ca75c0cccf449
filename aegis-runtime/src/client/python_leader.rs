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

use async_nats::jetstream;

use crate::election::LeaderRecord;
use crate::subject::{GroupId, ServiceName, python_sdk};

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

async fn look(nats: &async_nats::Client, service: &ServiceName, group: &GroupId) -> bool {
    let js = jetstream::new(nats.clone());
    let Ok(store) = js.get_key_value(python_sdk::election_bucket(service)).await else {
        return false; // no SDK bucket: no SDK member has ever run
    };
    let Ok(Some(value)) = store.get(python_sdk::leader_key(service, group)).await else {
        return false;
    };
    crate::codec::decode::<LeaderRecord>(&value)
        .is_ok_and(|record| !record.metadata.contains_key(LeaderRecord::TERM))
}
