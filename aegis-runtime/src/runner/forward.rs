//! Forwarding: an exclusive call that reaches an instance that is not the leader (its
//! caller's view of the leader is a moment old, as in every handover) goes on to the
//! leader the election key names, once, with the caller's reply subject, instead of coming
//! back as NOT_ACTIVE. The caller sees one answer, from the leader, and no retry.
//!
//! While no leader is known (between a release and the successor's election) the call
//! waits for one, at most [`FORWARD_WAIT`]; then, or when the call was forwarded already,
//! it takes the normal path (it runs if this instance has become the leader, else it is
//! answered NOT_ACTIVE and the caller retries).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;

use super::Core;
use crate::codec::headers;
use crate::leader::{LeaderState, LeaderWatch};
use crate::subject::{self, MethodName};

/// The longest a call waits at a non-leader for a leader to forward it to: a graceful
/// handover takes milliseconds; a crashed leader's key expires after its TTL, and callers
/// wait for that themselves.
pub(super) const FORWARD_WAIT: Duration = Duration::from_millis(500);

/// Whether `message` (an exclusive call) should be forwarded: this instance is not the
/// leader, and the call was not forwarded already.
pub(super) fn wanted(core: &Core, message: &async_nats::Message) -> bool {
    core.leader_watch.is_some()
        && core.leadership.term().is_none()
        && message
            .headers
            .as_ref()
            .is_none_or(|h| h.get(headers::name::FORWARDED_BY).is_none())
}

/// Forwards `message` to the leader once one other than this instance is known (waiting
/// up to [`FORWARD_WAIT`]); gives it back when it should be served here after all.
pub(super) async fn forward(
    core: &Core,
    method: &MethodName,
    message: async_nats::Message,
) -> Option<async_nats::Message> {
    let watch: &LeaderWatch = core.leader_watch.as_deref()?;
    let reply = message.reply.clone()?;
    let until = Instant::now() + FORWARD_WAIT;
    let mut revision = 0;
    let leader = loop {
        if core.leadership.term().is_some() {
            return Some(message); // became the leader meanwhile: serve it here
        }
        let view = watch.current();
        match &view.state {
            LeaderState::Leader(leader) if leader.instance_id != core.instance_id => {
                break leader.instance_id.clone();
            }
            LeaderState::Unknown => return Some(message),
            // No leader yet, or the key still names this instance (stepping up or down).
            _ => {}
        }
        if Instant::now() >= until {
            return Some(message);
        }
        revision = revision.max(view.revision);
        tokio::select! {
            _ = watch.changed_since(revision, until) => {}
            _ = core.leadership.wait_until(true) => {}
        }
    };
    let mut forwarded = message.headers.clone().unwrap_or_else(HeaderMap::new);
    forwarded.insert(headers::name::FORWARDED_BY, core.instance_id.as_str());
    let to = subject::rpc_instance(&core.service_name, &leader, method);
    match core
        .nats
        .publish_with_reply_and_headers(to, reply, forwarded, message.payload.clone())
        .await
    {
        Ok(()) => {
            tracing::debug!(%leader, %method, "forwarded an exclusive call to the leader");
            metrics::counter!(
                crate::metrics::FORWARDED_CALLS,
                "service" => core.service_name.to_string(),
                "method" => method.to_string()
            )
            .increment(1);
            None
        }
        Err(err) => {
            tracing::debug!(%leader, %err, "cannot forward an exclusive call; answering it here");
            Some(message)
        }
    }
}
