//! Forwarding: an exclusive call that reaches an instance that is not the leader (its
//! caller's view of the leader is a moment old, as in every handover) goes on to the
//! leader the election key names, once, and the leader's answer is relayed to the caller,
//! instead of NOT_ACTIVE. The caller sees one answer, from the leader, and no retry.
//!
//! While no leader is known (between a release and the successor's election) the call
//! waits for one, at most [`FORWARD_WAIT`]; then, or when the call was forwarded already,
//! it takes the normal path (it runs if this instance has become the leader, else it is
//! answered NOT_ACTIVE and the caller retries).

use std::time::{Duration, Instant, SystemTime};

use serde::de::IgnoredAny;

use super::Core;
use crate::codec::{self, RpcRequest, headers};
use crate::leader::{LeaderState, LeaderWatch};
use crate::subject::{self, MethodName};

/// The longest a call waits at a non-leader for a leader to forward it to: a graceful
/// handover takes milliseconds; a crashed leader's key expires after its TTL, and callers
/// wait for that themselves.
pub(super) const FORWARD_WAIT: Duration = Duration::from_millis(500);

/// The longest a forwarded call waits for the leader's reply when its envelope names no
/// deadline.
const MAX_RELAY_WAIT: Duration = Duration::from_secs(30);

/// Whether `message` (an exclusive call) has to wait or go elsewhere: this instance is not
/// the leader (now).
pub(super) fn wanted(core: &Core) -> bool {
    core.leader_watch.is_some() && core.leadership.term().is_none()
}

/// Forwards `message` to the leader once one other than this instance is known (waiting
/// up to [`FORWARD_WAIT`]); gives it back when it should be served here after all: this
/// instance became the leader meanwhile (a call forwarded to a successor can arrive before
/// the successor has read the answer to its own write of the key), the call was forwarded
/// already (it is then refused with NOT_ACTIVE), or no leader showed up in time.
pub(super) async fn forward(
    core: &Core,
    method: &MethodName,
    message: async_nats::Message,
) -> Option<async_nats::Message> {
    let watch: &LeaderWatch = core.leader_watch.as_deref()?;
    let reply = message.reply.clone()?;
    let forwarded_already = message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(headers::name::FORWARDED_BY).is_some());
    let until = Instant::now() + FORWARD_WAIT;
    let mut revision = 0;
    let leader = loop {
        if core.leadership.term().is_some() {
            return Some(message); // the leader now: serve it here
        }
        let view = watch.current();
        match &view.state {
            LeaderState::Leader(leader) if leader.instance_id != core.instance_id => {
                if forwarded_already {
                    return Some(message); // never twice: refused here
                }
                break leader.instance_id.clone();
            }
            LeaderState::Unknown => return Some(message),
            // No leader yet, or the key names this instance (stepping up or down).
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
    let Some(wait) = relay_wait(&message.payload) else {
        return Some(message); // not a request: answered here, as a bad request
    };
    let mut forwarded = message.headers.clone().unwrap_or_default();
    forwarded.insert(headers::name::FORWARDED_BY, core.instance_id.as_str());
    let to = subject::rpc_instance(&core.service_name, &leader, method);
    let request = async_nats::Request::new()
        .payload(message.payload.clone())
        .headers(forwarded)
        .timeout(Some(wait));
    // A request, not a publish with the caller's reply subject: a leader that is gone must
    // come back as "no responders" (the call did not run: answered NOT_ACTIVE here), not
    // as silence that the caller could only read as "it may have run".
    match core.nats.send_request(to, request).await {
        Ok(answer) => {
            let relayed = match answer.headers {
                Some(headers) => {
                    core.nats
                        .publish_with_headers(reply, headers, answer.payload)
                        .await
                }
                None => core.nats.publish(reply, answer.payload).await,
            };
            if let Err(err) = relayed {
                tracing::debug!(%err, "cannot relay the leader's reply");
            }
            tracing::debug!(%leader, %method, "forwarded an exclusive call to the leader");
            metrics::counter!(
                crate::metrics::FORWARDED_CALLS,
                "service" => core.service_name.to_string(),
                "method" => method.to_string()
            )
            .increment(1);
            None
        }
        Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
            tracing::debug!(%leader, "the leader to forward to is gone; answering here");
            Some(message)
        }
        Err(err) => {
            // No reply by the caller's deadline: the caller times out at the same moment,
            // as it would have calling the leader itself.
            tracing::debug!(%leader, %err, "no reply from the leader to a forwarded call");
            None
        }
    }
}

/// How long a forwarded call may wait for the leader's reply: until the caller's deadline
/// (at most [`MAX_RELAY_WAIT`]; a [bare-JSON call](codec::is_bare_call) names none);
/// `None` when the payload is neither a request envelope nor a bare call.
fn relay_wait(payload: &[u8]) -> Option<Duration> {
    let deadline = match codec::decode::<RpcRequest<IgnoredAny>>(payload) {
        Ok(request) => request.deadline(),
        // The leader answers it bare, in headers and body both relayed as they come.
        Err(_) if codec::is_bare_call(payload) => None,
        Err(_) => return None,
    };
    let left = deadline
        .and_then(|deadline| deadline.duration_since(SystemTime::now()).ok())
        .unwrap_or(MAX_RELAY_WAIT);
    Some(left.min(MAX_RELAY_WAIT).max(Duration::from_millis(1)))
}
