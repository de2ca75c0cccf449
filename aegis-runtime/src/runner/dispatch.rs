//! Request/reply deliveries: subscribing the RPC subjects (shared, instance, exclusive)
//! and handing each call to the serving core ([`super::invoke`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, StreamExt};
use tokio::task::JoinSet;

use super::invoke::{self, Delivery, HandlerKind, Invoked};
use super::{Core, StartError};
use crate::codec::{Format, headers};
use crate::service::{
    NoParams, Outcome, Reply, RpcCall, RpcContext, RpcDefinition, Service, ServiceDefinition,
};
use crate::subject::{self, MethodName};
use crate::telemetry::{self, TraceContext};

/// What the handlers of one instance share.
pub(super) struct Shared<S: 'static> {
    pub(super) core: Arc<Core>,
    pub(super) service: Arc<S>,
    pub(super) definition: &'static ServiceDefinition<S>,
}

/// Subscribes every RPC of the service: the group's subject (in the queue group) and this
/// instance's own subject.
///
/// The listeners of the shared exclusive subjects go to `exclusive`: a stop waits for them
/// apart, before it releases the leadership (see [`serve_while_active`]).
pub(super) async fn subscribe_all<S: Service>(
    shared: &Arc<Shared<S>>,
    listeners: &mut JoinSet<()>,
    exclusive: &mut JoinSet<()>,
    workers: &mut JoinSet<()>,
) -> Result<(), StartError> {
    let core = &shared.core;
    core.leadership.set_exclusive_subjects(
        shared
            .definition
            .rpcs
            .iter()
            .filter(|rpc| rpc.exclusive)
            .count(),
    );
    for (index, rpc) in shared.definition.rpcs.iter().enumerate() {
        let method = MethodName::new(rpc.name)?;
        let queue = subject::rpc_queue_group(&core.service_name);
        let any = subject::rpc(&core.service_name, &method);
        let one = subject::rpc_instance(&core.service_name, &core.instance_id, &method);
        // Addressed to this instance: always served (a standby answers NOT_ACTIVE).
        let own = subscribe_subject(&core.nats, one, None).await?;
        listeners.spawn(listen(shared.clone(), index, own));
        if rpc.exclusive {
            // Shared by the group: only the active instance subscribes, so calls are never
            // spread over standbys.
            exclusive.spawn(serve_while_active(shared.clone(), index, any, queue));
        } else {
            let group = subscribe_subject(&core.nats, any, Some(queue)).await?;
            listeners.spawn(listen(shared.clone(), index, group));
        }
    }
    for definition in shared.definition.subscriptions {
        // Created before the instance counts as serving, so no event published after
        // `start()` returns is missed.
        let subscription = super::events::Subscription::open(
            &core.nats,
            &core.service_name,
            &core.instance_id,
            definition,
            core.share_events_with_sdk,
        )
        .await
        .map_err(StartError::Events)?;
        workers.spawn(subscription.serve(
            shared.service.clone(),
            core.instance_key.clone(),
            core.events.clone(),
            definition,
            core.permits.clone(),
        ));
    }
    for command in shared.definition.commands {
        if core.leave_commands_to_sdk {
            tracing::info!(
                command = command.name,
                "left to the service's Python SDK instances (PythonSdk::leave_commands)"
            );
            continue;
        }
        let Some(commands) = super::commands::open(&core.nats, &core.service_name, command).await?
        else {
            continue;
        };
        workers.spawn(super::commands::serve(
            commands,
            core.nats.clone(),
            shared.service.clone(),
            command,
            core.permits.clone(),
        ));
    }
    Ok(())
}

pub(super) async fn subscribe_subject(
    nats: &async_nats::Client,
    subject: String,
    queue: Option<String>,
) -> Result<async_nats::Subscriber, StartError> {
    let result = match queue {
        Some(queue) => nats.queue_subscribe(subject.clone(), queue).await,
        None => nats.subscribe(subject.clone()).await,
    };
    result.map_err(|source| StartError::Subscribe { subject, source })
}

/// How many more messages than it has received a leaving subscription may still get: the
/// fence that keeps messages in flight from being dropped (see [`consume`]).
const UNSUBSCRIBE_MARGIN: u64 = 64;
/// The least margin once a round trip through the server confirmed the first UNSUB: the
/// messages routed to the subscription since (in about one round trip) must fit in it. It
/// is twice what arrived during that round trip when more, and it is what a steady caller
/// still gets from a leaving subscription.
const FENCED_MARGIN: u64 = 8;
/// How long a leaving subscription waits for more messages before it closes regardless,
/// when no round trip through the server confirmed its UNSUB.
const UNSUBSCRIBE_QUIET: Duration = Duration::from_millis(200);
/// How long a leaving subscription waits for more messages once a round trip through the
/// server confirmed its UNSUB: every message routed before is then received, so the wait
/// covers messages routed since. Those include the next request of a caller whose previous
/// call this instance forwarded to its successor (a caller waiting for a reply sends
/// nothing): the wait must outlast a forwarded call, not just a local hop. Leaving is off
/// the handover's critical path (the leadership is released first), so it costs no caller
/// any time.
const FENCED_QUIET: Duration = Duration::from_millis(200);

/// Hands every message of `subscriber` to `accept` until `until` resolves; then leaves the
/// subscription without dropping a message that was already on its way (a caller waits
/// for each). Returns `true` when it stopped because of `until`, `false` when the
/// subscription ended by itself.
///
/// async-nats removes a subscription locally as soon as its UNSUB is written, without the
/// PING/PONG fence other NATS clients use (nats.rs issue 1325), so messages the server
/// sent just before it processed the UNSUB are discarded, and their callers time out.
/// Instead, this asks the server to stop after a fixed number of further messages:
/// server and client count the same messages, so the client closes the subscription
/// exactly after the last one the server sends. Those are answered like any other (an
/// exclusive method that lost its leadership answers NOT_ACTIVE, and callers retry). A
/// round trip through the server then confirms the UNSUB: every message routed before it
/// has arrived, and the limit is narrowed to [`FENCED_MARGIN`] more. When no message comes
/// for a while after that, nothing is in flight and a plain unsubscribe is safe.
pub(super) async fn consume<F, Fut>(
    nats: &async_nats::Client,
    mut subscriber: async_nats::Subscriber,
    until: impl std::future::Future<Output = ()>,
    mut accept: F,
) -> bool
where
    F: FnMut(async_nats::Message) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::pin!(until);
    let mut received: u64 = 0;
    loop {
        tokio::select! {
            message = subscriber.next() => match message {
                Some(message) => {
                    received += 1;
                    accept(message).await;
                }
                None => return false,
            },
            () = &mut until => break,
        }
    }
    let leaving = Instant::now();
    let limit = received + UNSUBSCRIBE_MARGIN;
    if let Err(err) = subscriber.unsubscribe_after(limit).await {
        tracing::debug!(%err, "cannot unsubscribe");
    }
    let fenced = tokio::time::timeout(UNSUBSCRIBE_QUIET, fence(nats)).await == Ok(true);
    if fenced {
        // Every message routed before the fence is in the channel: take them, then narrow
        // the limit to what can have been routed since (a round trip's worth), so a steady
        // caller does not keep this subscription for a whole margin more.
        let mut arrived: u64 = 0;
        loop {
            match subscriber.next().now_or_never() {
                Some(Some(message)) => {
                    arrived += 1;
                    accept(message).await;
                }
                Some(None) => return true,
                None => break,
            }
        }
        received += arrived;
        // What arrived during the round trip measures what can arrive during the next one.
        let narrowed = received + FENCED_MARGIN.max(2 * arrived);
        if narrowed < limit
            && let Err(err) = subscriber.unsubscribe_after(narrowed).await
        {
            tracing::debug!(%err, "cannot unsubscribe");
        }
    }
    let quiet = if fenced {
        FENCED_QUIET
    } else {
        UNSUBSCRIBE_QUIET
    };
    loop {
        match tokio::time::timeout(quiet, subscriber.next()).await {
            Ok(Some(message)) => {
                received += 1;
                accept(message).await;
            }
            Ok(None) => {
                tracing::debug!(received, took = ?leaving.elapsed(), "left a subscription: its limit reached");
                return true;
            }
            Err(_quiet) => {
                tracing::debug!(received, took = ?leaving.elapsed(), "left a subscription: quiet");
                let _ = subscriber.unsubscribe().await;
                while let Some(message) = subscriber.next().await {
                    accept(message).await;
                }
                return true;
            }
        }
    }
}

/// Resolves once the instance begins to stop.
pub(super) async fn stopping(core: &Core) {
    let mut stopping = core.stopping.subscribe();
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Hands one received call to the serving core, once the concurrency limit allows; an
/// exclusive call that reached this instance while it is not the leader goes on to the
/// leader instead ([`forward`](super::forward)).
async fn accept<S: Service>(shared: &Arc<Shared<S>>, index: usize, message: async_nats::Message) {
    if message.reply.is_none() {
        tracing::debug!(subject = %message.subject, "ignoring a request without a reply subject");
        return;
    }
    // The permit is held while forwarding too, so a stop drains forwarded calls as well.
    let Ok(permit) = shared.core.permits.clone().acquire_owned().await else {
        return;
    };
    let rpc = &shared.definition.rpcs[index];
    if rpc.exclusive
        && super::forward::wanted(&shared.core)
        && let Ok(method) = MethodName::new(rpc.name)
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(message) = super::forward::forward(&shared.core, &method, message).await {
                serve_call(&shared, index, message, permit);
            }
        });
        return;
    }
    serve_call(shared, index, message, permit);
}

/// Runs one call (with a reply subject) in the serving core.
fn serve_call<S: Service>(
    shared: &Arc<Shared<S>>,
    index: usize,
    message: async_nats::Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(reply_to) = message.reply else {
        return;
    };
    let trace = TraceContext::extract(message.headers.as_ref());
    invoke::serve(
        permit,
        RpcDelivery {
            shared: shared.clone(),
            index,
            payload: message.payload,
            json_payload: None,
            trace,
            reply_to,
            term: None,
            started: Instant::now(),
            running: Instant::now(),
        },
    );
}

/// Receives the calls of one subscription until the instance stops.
async fn listen<S: Service>(
    shared: Arc<Shared<S>>,
    index: usize,
    subscriber: async_nats::Subscriber,
) {
    consume(
        &shared.core.nats,
        subscriber,
        stopping(&shared.core),
        |message| accept(&shared, index, message),
    )
    .await;
}

/// Publishes a reply with Aegis's headers: the responder's instance id and, for exclusive
/// calls, the term they ran under. The failed reply to a bare-JSON call also carries the
/// ADR-32 error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`), as the NATS
/// tools and `async_nats::service` read them.
pub(super) async fn send_reply(
    core: &Core,
    reply_to: async_nats::Subject,
    reply: Reply,
    term: Option<u64>,
) {
    let service_error = reply.service_error();
    let payload = reply.payload.into();
    let sent = if term.is_none() && service_error.is_none() {
        core.nats.publish(reply_to, payload).await
    } else {
        // Headers cost the server and both clients a parse per message: only the replies
        // of exclusive calls carry Aegis's, where the caller pins the instance that ran it.
        let mut headers = HeaderMap::new();
        if let Some(term) = term {
            headers.insert(headers::name::INSTANCE_ID, core.instance_key.as_ref());
            headers.insert(headers::name::TERM, term.to_string());
        }
        if let Some((code, text)) = service_error {
            // `service_error` keeps the text on one line: a valid header value.
            headers.insert(headers::name::SERVICE_ERROR, text);
            headers.insert(headers::name::SERVICE_ERROR_CODE, code);
        }
        core.nats
            .publish_with_headers(reply_to, headers, payload)
            .await
    };
    if let Err(err) = sent {
        tracing::warn!(%err, "cannot send a reply");
    }
}

/// Resolves once the instance leaves its shared exclusive subjects: at the start of a
/// graceful stop, while it still leads (the stop releases the leadership only after), or
/// when it stops otherwise.
async fn leaving(core: &Core) {
    let mut leaving = core.leaving_exclusive.subscribe();
    tokio::select! {
        _ = leaving.wait_for(|leaving| *leaving) => {}
        () = stopping(core) => {}
    }
}

/// Holds the group's subscription to an exclusive method's subject while this instance is
/// active.
///
/// A new leader subscribes before it announces itself (the election waits for
/// [`Leadership::subscribed`](crate::leadership::Leadership) of every exclusive method).
/// A leader that stops gracefully leaves while it still leads: the messages already on
/// their way are answered as leader, and the stop releases the key only once every
/// exclusive subject is left, so no NOT_ACTIVE reaches a caller of the shared subject. A
/// leader that loses its leadership otherwise leaves after stepping down: what was already
/// delivered is refused with NOT_ACTIVE (the method did not run), and callers retry.
async fn serve_while_active<S: Service>(
    shared: Arc<Shared<S>>,
    index: usize,
    subject: String,
    queue: String,
) {
    let core = &shared.core;
    let leadership = core.leadership.clone();
    loop {
        tokio::select! {
            active = leadership.wait_until(true) => if !active { return },
            () = leaving(core) => return,
        }
        let subscriber = match core
            .nats
            .queue_subscribe(subject.clone(), queue.clone())
            .await
        {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!(%subject, %err, "cannot subscribe an exclusive method; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The SUB is written before anything the election sends after this: the server
        // has it before it sees the announcement.
        if let Some(term) = leadership.term() {
            leadership.subscribed(term);
        }
        tracing::debug!(%subject, "active: serving exclusive method");
        let until = async {
            tokio::select! {
                _ = leadership.wait_until(false) => {}
                () = leaving(core) => {}
            }
        };
        let accept = |message| accept(&shared, index, message);
        if !consume(&core.nats, subscriber, until, accept).await {
            return;
        }
        tracing::debug!(%subject, "no longer serving exclusive method");
    }
}

/// One request/reply delivery: a call on the shared, instance or exclusive subject of an
/// RPC method.
struct RpcDelivery<S: 'static> {
    shared: Arc<Shared<S>>,
    /// The method's index in the definition's `rpcs`.
    index: usize,
    payload: Bytes,
    /// The payload again when it is JSON (never for the MessagePack of Aegis clients), so a
    /// handler that panics still gets its reply in the form of its request: a bare-JSON
    /// call's in ADR-32 headers.
    json_payload: Option<Bytes>,
    /// The caller's trace context (`traceparent`, `tracestate`).
    trace: Option<TraceContext>,
    reply_to: async_nats::Subject,
    /// For exclusive calls: the term they run under, read when the call starts.
    term: Option<u64>,
    started: Instant,
    /// When the handler started (after the wait for a permit).
    running: Instant,
}

impl<S: Service> RpcDelivery<S> {
    fn rpc(&self) -> &'static RpcDefinition<S> {
        &self.shared.definition.rpcs[self.index]
    }

    /// The context of a call whose handler did not return (it panicked): it answers in the
    /// form of the request.
    fn failed_context(&self) -> RpcContext {
        let context = self.context();
        match &self.json_payload {
            Some(payload) => context.answering(payload),
            None => context,
        }
    }

    fn context(&self) -> RpcContext {
        let rpc = self.rpc();
        RpcContext::new(
            self.shared.definition.name,
            rpc.name,
            self.shared.core.instance_key.clone(),
            rpc.exclusive,
            self.term,
            self.started,
        )
    }
}

impl<S: Service> Delivery for RpcDelivery<S> {
    type Output = Reply;

    fn kind(&self) -> HandlerKind {
        if self.rpc().exclusive {
            HandlerKind::ExclusiveRpc
        } else {
            HandlerKind::Rpc
        }
    }

    fn method(&self) -> &'static str {
        self.rpc().name
    }

    fn span(&self) -> tracing::Span {
        crate::telemetry::traced_span!(
            "rpc",
            kind = self.kind().as_str(),
            service = self.shared.definition.name,
            method = self.rpc().name,
            instance = %self.shared.core.instance_key,
            correlation_id = tracing::field::Empty,
            term = self.term,
        )
    }

    fn remote_trace(&self) -> Option<TraceContext> {
        self.trace.clone()
    }

    /// Runs the active check, then the handler (which decodes the request, and refuses
    /// one whose deadline has passed).
    fn start(&mut self) -> impl Future<Output = Reply> + Send + 'static {
        let core = &self.shared.core;
        let rpc = self.rpc();
        self.running = core.endpoints[self.index].stats.received(self.started);
        if rpc.exclusive {
            self.term = core.leadership.term();
        }
        let payload = std::mem::take(&mut self.payload);
        if Format::detect(&payload) == Format::Json {
            self.json_payload = Some(payload.clone());
        }
        if rpc.exclusive && self.term.is_none() {
            // The method does not run; read only the header, to answer with the request's ids.
            let context = self.context();
            let group = core.leadership.group().clone();
            return Either::Left(async move {
                match RpcCall::new(payload, context).decode::<NoParams>() {
                    Ok((context, _)) => Reply::not_active(&context, &group),
                    Err(bad_request) => bad_request,
                }
            });
        }
        let call = RpcCall::new(payload, self.context().with_publisher(core.events.clone()));
        Either::Right((rpc.handler)(self.shared.service.clone(), call))
    }

    /// Replies (with the panic named, when the handler panicked) and counts the call.
    async fn settle(self, invoked: Invoked<Reply>) {
        let (reply, failure) = match invoked {
            Invoked::Returned(reply) => (reply, None),
            Invoked::Panicked(message) => {
                let failure = invoke::panicked(&message);
                (
                    Reply::handler_error(&self.failed_context(), &failure),
                    Some(failure),
                )
            }
            // RPCs run without a limit: the caller's deadline is checked before they run.
            Invoked::TimedOut(limit) => {
                let failure = format!("the handler ran longer than {limit:?}");
                (
                    Reply::handler_error(&self.failed_context(), &failure),
                    Some(failure),
                )
            }
        };
        let error = match reply.outcome() {
            Outcome::Ok | Outcome::NotActive => None,
            // A panic or an overrun names itself (logged where it was caught).
            Outcome::HandlerError => Some(failure.unwrap_or_else(|| {
                let error = reply.error().unwrap_or("the handler failed").to_owned();
                // At `info`: an error the handler returns is an outcome of the call, which
                // the caller gets and handles (not found, refused); no fault of this service.
                tracing::info!(%error, "the handler returned an error");
                error
            })),
            Outcome::BadRequest => Some(reply.error().map_or_else(
                || "the request could not be decoded".to_owned(),
                str::to_owned,
            )),
            Outcome::DeadlineExceeded => Some("the caller's deadline had passed".to_owned()),
        };
        if let Some(error) = &error {
            telemetry::record_error(&tracing::Span::current(), error);
        }
        let core = &self.shared.core;
        core.endpoints[self.index].stats.finished(
            self.started,
            self.running,
            reply.outcome(),
            error,
        );
        send_reply(core, self.reply_to, reply, self.term).await;
    }
}

/// A round trip through the server that confirms what this connection sent before
/// (an UNSUB): `true` once it came back.
async fn fence(nats: &async_nats::Client) -> bool {
    let inbox = nats.new_inbox();
    let Ok(mut probe) = nats.subscribe(inbox.clone()).await else {
        return false;
    };
    if nats.publish(inbox, Bytes::new()).await.is_err() {
        return false;
    }
    probe.next().await.is_some()
}

/// Sends a message to this connection through the server and waits for it: the server
/// processes a connection's protocol in order, so every subscription made before is in
/// place once the message comes back.
pub(super) async fn round_trip(nats: &async_nats::Client) {
    if tokio::time::timeout(Duration::from_secs(5), fence(nats))
        .await
        .is_err()
    {
        tracing::warn!(
            "no round trip through the server within 5 s; subscriptions may not be ready yet"
        );
    }
}
