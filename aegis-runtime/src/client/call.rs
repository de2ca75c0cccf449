//! The call path: route → request with a deadline → classify the reply → retry what did
//! not run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::method::{KnownMethod, Target};
use super::{CallError, CallErrorKind, CallOptions, RetryPolicy, ServiceClient};
use crate::codec::{self, ExclusiveReply, RpcRequest, RpcResponse, Timestamp, headers};
use crate::discovery::DiscoveryError;
use crate::instance::EntryOrigin;
use crate::leader::{LeaderState, LeaderView};
use crate::subject::InstanceId;
use crate::telemetry;

/// At most this many instances are avoided by the retries of one call.
const MAX_EXCLUDED: usize = 3;

/// Where an attempt goes, and what the choice was based on.
struct Route {
    target: Arc<Target>,
    /// Routed by the leader watch: the revision of the key it saw.
    leader_revision: Option<u64>,
    /// A plain call to an instance: the heartbeat its registry entry showed.
    heartbeat: Option<Timestamp>,
}

impl Route {
    fn to(target: Arc<Target>) -> Self {
        Self {
            target,
            leader_revision: None,
            heartbeat: None,
        }
    }
}

/// A successful attempt: the result and who answered.
struct Answer<R> {
    value: R,
    responder: Option<InstanceId>,
}

/// Calls `method` of the client's service with `params`.
pub(super) async fn run<P: Serialize, R: DeserializeOwned>(
    client: &ServiceClient,
    known: &KnownMethod,
    params: &P,
    options: CallOptions,
) -> Result<R, CallError> {
    let method = &known.name;
    let deadline = options.deadline_override().unwrap_or(client.inner.timeout);
    let span = tracing::info_span!(
        "aegis.call",
        service = %client.inner.service,
        method = %method,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_span = tracing::field::Empty,
        attempts = tracing::field::Empty,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    // Trace context only matters when a subscriber records the call's span: nothing is
    // computed, and no header sent, otherwise. (The deadline needs no header: it is the
    // envelope's timestamp + timeout.)
    let trace = telemetry::start(&span, None);
    let mut request = RpcRequest::new(method.as_str(), params)
        .with_source(client.inner.source.as_ref())
        .with_target(client.inner.service.as_str())
        .with_timeout(deadline.as_secs_f64());
    if let Some(trace) = &trace {
        // One trace id format on both sides: the envelope's is the W3C one too.
        request.trace_id = trace.trace_id.to_string();
    }
    let payload: Bytes = match codec::encode(&request) {
        Ok(bytes) => bytes.into(),
        Err(err) => {
            let kind = CallErrorKind::Encode(err);
            return Err(CallError::new(
                &client.inner.service,
                method.as_str(),
                0,
                kind,
            ));
        }
    };
    let trace_headers = trace.map(|trace| {
        let mut map = HeaderMap::new();
        trace.inject(&mut map);
        map
    });
    let call = Call {
        known,
        client,
        options,
        deadline,
        payload,
        trace_headers,
    };
    async move {
        let started = Instant::now();
        let (attempts, outcome) = call.attempts(started).await;
        let span = tracing::Span::current();
        span.record("attempts", attempts);
        if let Err(kind) = &outcome {
            telemetry::record_error(&span, kind);
        }
        call.known.metrics.finished(
            attempts,
            started.elapsed(),
            outcome.as_ref().err().map(CallErrorKind::name),
        );
        if outcome.is_err() {
            // A call can fail without any I/O (discovery knows every instance is
            // unusable): a caller that retries at once would then never yield, and starve
            // the very tasks that end the failure (the discovery's watch, the connection).
            // Spend cooperative budget, so that such a loop yields every so often.
            tokio::task::consume_budget().await;
        }
        outcome
            .map_err(|kind| CallError::new(&client.inner.service, method.as_str(), attempts, kind))
    }
    .instrument(span)
    .await
}

/// One call, encoded, with what its attempts share.
struct Call<'a> {
    known: &'a KnownMethod,
    client: &'a ServiceClient,
    options: CallOptions,
    deadline: Duration,
    payload: Bytes,
    /// The call's trace context headers, sent when a subscriber records the call.
    trace_headers: Option<HeaderMap>,
}

impl Call<'_> {
    fn policy(&self) -> RetryPolicy {
        match &self.client.inner.retry {
            Some(policy) => policy.clone(),
            None if self.options.is_exclusive() => RetryPolicy::until_deadline(),
            None => RetryPolicy::default(),
        }
    }

    /// Makes attempts from `started` until one succeeds or a failure may not be retried;
    /// returns how many were made and the outcome.
    async fn attempts<R: DeserializeOwned>(
        &self,
        started: Instant,
    ) -> (u32, Result<R, CallErrorKind>) {
        let client = self.client;
        let policy = self.policy();
        let deadline = started + self.deadline;
        let mut excluded: Vec<InstanceId> = Vec::new();
        client.inner.budget.deposit();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let route = match self.route(&excluded, deadline).await {
                Ok(route) => route,
                Err(kind) => return (attempt, Err(kind)),
            };
            let target = &route.target;
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Only an idempotent call may be retried after a timeout, so only its attempts
            // stop waiting before the deadline.
            let wait = if self.options.is_idempotent() {
                policy
                    .attempt_timeout
                    .unwrap_or(self.deadline / 3)
                    .min(remaining)
            } else {
                remaining
            };
            let outcome = self
                .attempt::<R>(target, wait)
                .instrument(
                    tracing::debug_span!("aegis.attempt", attempt, subject = %target.subject),
                )
                .await;
            let (kind, silent) = match outcome {
                Ok(answer) => {
                    if self.options.is_exclusive() {
                        self.pin(answer.responder);
                    }
                    return (attempt, Ok(answer.value));
                }
                Err(CallErrorKind::Timeout(_)) if wait >= remaining => (
                    CallErrorKind::DeadlineExceeded(format!(
                        "no reply within the call's deadline of {:?}; the method may have run",
                        self.deadline
                    )),
                    true,
                ),
                Err(kind @ CallErrorKind::Timeout(_)) => (kind, true),
                Err(kind) => (kind, false),
            };
            self.learn_from(&kind, silent, &route);
            let retryable = kind.did_not_run()
                || (self.options.is_idempotent() && matches!(kind, CallErrorKind::Timeout(_)));
            if !retryable || attempt >= policy.max_attempts {
                return (attempt, Err(kind));
            }
            if let Some(revision) = route.leader_revision {
                // Routed by the leader watch: retry when the key has changed since this
                // attempt was routed (a new leader, a renewal that proves the old one
                // alive, a release), not after a backoff.
                if !client.inner.budget.try_withdraw() {
                    return (attempt, Err(CallErrorKind::BudgetExhausted(Box::new(kind))));
                }
                if !self.leader_changed_since(revision, deadline).await {
                    return (attempt, Err(kind));
                }
                tracing::debug!(attempt, error = %kind, "retrying a call that did not run, on the leader's move");
                continue;
            }
            let delay = policy.delay_before_retry(attempt);
            if Instant::now() + delay >= deadline {
                return (attempt, Err(kind));
            }
            if !client.inner.budget.try_withdraw() {
                return (attempt, Err(CallErrorKind::BudgetExhausted(Box::new(kind))));
            }
            if let Some(instance) = &target.instance
                && !self.options.is_exclusive()
            {
                excluded.push(instance.clone());
                if excluded.len() > MAX_EXCLUDED {
                    excluded.remove(0);
                }
            }
            tracing::debug!(attempt, ?delay, error = %kind, "retrying a call that did not run");
            tokio::time::sleep(delay).await;
        }
    }

    /// Whether the leader key changed after `revision` before `deadline` (waiting for it
    /// if it has not yet).
    async fn leader_changed_since(&self, revision: u64, deadline: Instant) -> bool {
        let Some(watch) = self.client.leader_watch() else {
            return false;
        };
        let seen = watch.changed_since(revision, deadline).await;
        seen.revision > revision || !seen.is_followed()
    }

    /// What a failed attempt tells about the service: a standby is not the leader, an
    /// instance that does not answer its own subject (`silent`: it timed out) is gone or
    /// frozen, and plain calls skip it until it shows a fresh heartbeat.
    fn learn_from(&self, kind: &CallErrorKind, silent: bool, route: &Route) {
        let exclusive = self.options.is_exclusive();
        if matches!(kind, CallErrorKind::NotActive(_)) {
            self.known.metrics.not_active();
            if exclusive {
                self.pin(None);
            }
        }
        let Some(instance) = &route.target.instance else {
            return;
        };
        let gone = matches!(kind, CallErrorKind::NoResponders);
        if !(gone || silent) {
            return;
        }
        if exclusive {
            self.pin(None);
        } else if let Some(heartbeat) = route.heartbeat {
            self.client
                .inner
                .ejections
                .eject(&self.client.inner.service, instance, heartbeat);
        }
        if gone && let Some(discovery) = &self.client.inner.discovery {
            // Nobody serves the instance's own subject: it is gone, whatever the registry
            // says until its entry expires.
            discovery.invalidate(&self.client.inner.service);
        }
    }

    fn pin(&self, instance: Option<InstanceId>) {
        if let Ok(mut pin) = self.client.inner.active_pin.lock() {
            *pin = instance;
        }
    }

    /// Where the next attempt goes.
    ///
    /// Exclusive methods go to the leader the election key names; with no leader, the
    /// call waits for the next leader event, until its deadline. While the key cannot be
    /// watched: the instance that last answered as active (while discovery still lists
    /// it), else the shared subject only the active instance serves.
    ///
    /// Plain methods go to the instance selection picks, avoiding those that failed this
    /// call and those ejected; the shared subject when discovery has nothing to offer.
    ///
    /// A discovery that has not answered by the call's deadline (a user without the
    /// JetStream rights to read the registry waits out its timeouts) fails the call as not
    /// run: no request was sent.
    async fn route(
        &self,
        excluded: &[InstanceId],
        deadline: Instant,
    ) -> Result<Route, CallErrorKind> {
        let client = self.client;
        if self.options.is_exclusive()
            && let Some(route) = self.route_to_leader(deadline).await?
        {
            return Ok(route);
        }
        let shared = || Route::to(self.known.shared());
        let Some(discovery) = &client.inner.discovery else {
            return Ok(shared());
        };
        let service = &client.inner.service;
        let lookup = match discovery.instances_now(service) {
            Some(known) => known,
            None => {
                match tokio::time::timeout_at(deadline.into(), discovery.instances(service)).await {
                    Ok(lookup) => lookup,
                    Err(_) => {
                        return Err(CallErrorKind::Unavailable(DiscoveryError::TimedOut {
                            service: service.to_string(),
                            waited: self.deadline,
                        }));
                    }
                }
            }
        };
        let instances = match lookup {
            Ok(instances) => instances,
            Err(
                unavailable
                @ (DiscoveryError::Unavailable { .. } | DiscoveryError::TimedOut { .. }),
            ) => {
                return Err(CallErrorKind::Unavailable(unavailable));
            }
            Err(DiscoveryError::Registry(err)) => {
                tracing::debug!(%err, "no discovery: calling the shared subject");
                return Ok(shared());
            }
        };
        let to = |instance: &InstanceId| Route::to(self.known.on_instance(instance));
        if self.options.is_exclusive() {
            let pinned = client.active_instance();
            return Ok(match pinned {
                Some(id) if instances.iter().any(|i| i.instance_id == id) => to(&id),
                Some(_) => {
                    self.pin(None); // the watch says it left
                    shared()
                }
                None => shared(),
            });
        }
        let selector = &client.inner.selector;
        let ejections = &client.inner.ejections;
        let picked = if ejections.is_empty() {
            selector.pick(&instances, excluded)
        } else {
            let mut avoid = excluded.to_vec();
            ejections.still_ejected(&instances, &mut avoid);
            // Never skip a whole service: with every instance ejected, none is.
            selector
                .pick(&instances, &avoid)
                .or_else(|| selector.pick(&instances, excluded))
        };
        Ok(match picked {
            // A Python SDK instance serves only the shared subject (its queue group holds
            // every instance of the service, Aegis's too).
            Some(instance) if instance.origin != EntryOrigin::Aegis => shared(),
            Some(instance) => Route {
                heartbeat: Some(instance.last_heartbeat),
                ..to(&instance.instance_id)
            },
            None => shared(),
        })
    }

    /// The route of an exclusive call to the leader the watch shows, waiting (until the
    /// deadline) while there is none; `None` when the key cannot be watched.
    async fn route_to_leader(&self, deadline: Instant) -> Result<Option<Route>, CallErrorKind> {
        let Some(watch) = self.client.leader_watch() else {
            return Ok(None);
        };
        // Looked at in place: the common case (a known leader) copies nothing.
        let look = |view: &LeaderView| match &view.state {
            LeaderState::Leader(leader) => Ok(Some(Route {
                leader_revision: Some(view.revision),
                ..Route::to(self.known.on_instance(&leader.instance_id))
            })),
            LeaderState::Unknown => Ok(None),
            LeaderState::NoLeader => Err(view.revision),
        };
        let mut waited_from = match watch.inspect(look) {
            Ok(route) => return Ok(route),
            Err(revision) => revision,
        };
        // No Aegis leader: a Python SDK instance may lead the group, on the shared subject.
        let inner = &self.client.inner;
        if inner
            .python_leader
            .python_leads(&inner.nats, &inner.service, &inner.group)
            .await
        {
            return Ok(Some(Route::to(self.known.shared())));
        }
        loop {
            let seen = watch.changed_since(waited_from, deadline).await;
            if seen.revision == waited_from && seen.is_followed() {
                return Err(CallErrorKind::NotActive(format!(
                    "no instance of {} became the leader of group {} within the call's \
                     deadline of {:?}; the method did not run",
                    self.client.inner.service, self.client.inner.group, self.deadline
                )));
            }
            match look(&seen) {
                Ok(route) => return Ok(route),
                Err(revision) => waited_from = revision,
            }
        }
    }

    /// Sends the request once and classifies the reply.
    async fn attempt<R: DeserializeOwned>(
        &self,
        target: &Target,
        wait: Duration,
    ) -> Result<Answer<R>, CallErrorKind> {
        let mut request = async_nats::Request::new()
            .payload(self.payload.clone())
            .timeout(Some(wait));
        if let Some(map) = &self.trace_headers {
            request = request.headers(map.clone());
        }
        let reply = self
            .client
            .inner
            .nats
            .send_request(target.subject.clone(), request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => CallErrorKind::NoResponders,
                async_nats::RequestErrorKind::TimedOut => CallErrorKind::Timeout(wait),
                _ => CallErrorKind::Transport(super::error::TransportError::new(e)),
            })?;
        // Who answered matters only to pin exclusive calls to the active instance.
        let responder = if self.options.is_exclusive() {
            reply
                .headers
                .as_ref()
                .and_then(|headers| headers.get(headers::name::INSTANCE_ID))
                .and_then(|id| InstanceId::new(id.as_str()).ok())
        } else {
            None
        };
        let value = decode_reply(&reply.payload, &self.options)?;
        Ok(Answer { value, responder })
    }
}

/// The value of a reply to a call made as `options` say, or why there is none: the
/// handler's error, NOT_ACTIVE (an exclusive method that only the active instance runs),
/// a deadline that had passed on arrival, a reply that does not decode.
///
/// This is how [`ServiceClient`] reads every reply; it is public for callers that send a
/// request themselves (to one instance's own subject, say) and want it read the same way.
///
/// ```
/// use aegis_runtime::client::{CallOptions, decode_reply};
/// use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
/// use aegis_runtime::CallErrorKind;
///
/// let request = RpcRequest::new("reserve", serde_json::json!({"sku": "A-1"}));
/// let payload = codec::encode(&RpcResponse::<()>::err(&request, "out of stock"))?;
/// let err = decode_reply::<serde_json::Value>(&payload, &CallOptions::rpc()).unwrap_err();
/// assert!(matches!(err, CallErrorKind::Handler(message) if message == "out of stock"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`CallErrorKind::Handler`], [`CallErrorKind::NotActive`],
/// [`CallErrorKind::DeadlineExceeded`], [`CallErrorKind::Decode`] or
/// [`CallErrorKind::MissingResult`].
pub fn decode_reply<R: DeserializeOwned>(
    payload: &[u8],
    options: &CallOptions,
) -> Result<R, CallErrorKind> {
    if options.is_exclusive() {
        decode_exclusive(payload)
    } else {
        let response: RpcResponse<R> = codec::decode(payload).map_err(CallErrorKind::Decode)?;
        value_or_unit(unwrap_response(response)?)
    }
}

/// The value of an exclusive method's reply, which nests the outcome in the result.
fn decode_exclusive<R: DeserializeOwned>(payload: &[u8]) -> Result<R, CallErrorKind> {
    let response: RpcResponse<ExclusiveReply<R>> =
        codec::decode(payload).map_err(CallErrorKind::Decode)?;
    let nested = unwrap_response(response)?.ok_or_else(|| {
        CallErrorKind::MissingResult(
            "the reply of an exclusive method has no exclusive reply in it".into(),
        )
    })?;
    if nested.is_not_active() {
        return Err(CallErrorKind::NotActive(nested.message.unwrap_or_default()));
    }
    match nested.into_result() {
        Ok(result) => value_or_unit(result),
        Err(message) => Err(CallErrorKind::Handler(message)),
    }
}

/// The result of a response, or why there is none: the handler's error, a top-level
/// NOT_ACTIVE, a deadline that had passed on arrival.
fn unwrap_response<R>(response: RpcResponse<R>) -> Result<Option<R>, CallErrorKind> {
    match response.into_result() {
        Ok(result) => Ok(result),
        Err(message) if message.starts_with(ExclusiveReply::<()>::NOT_ACTIVE) => {
            Err(CallErrorKind::NotActive(message))
        }
        Err(message) if message.starts_with(codec::DEADLINE_EXCEEDED) => {
            Err(CallErrorKind::DeadlineExceeded(message))
        }
        Err(message) => Err(CallErrorKind::Handler(message)),
    }
}

/// A nil result is the value of methods returning `()` or `Option`; for any other type it
/// is an error.
fn value_or_unit<R: DeserializeOwned>(result: Option<R>) -> Result<R, CallErrorKind> {
    match result {
        Some(value) => Ok(value),
        None => serde_json::from_value(serde_json::Value::Null).map_err(|e| {
            CallErrorKind::MissingResult(format!(
                "the reply has no result, but one was expected ({e})"
            ))
        }),
    }
}
