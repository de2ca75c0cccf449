//! Trace context that joins (issue 17): a client span → RPC, event or command → handler,
//! over a real nats-server, with a tracing layer in the test that records every span's
//! name, fields and parent. The handler span's trace id and parent must be the client
//! span's; a call made inside a handler joins the handler's trace; a handler's error is
//! recorded on its span.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aegis_runtime::events::EventPublisher;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Event, RunningService, ServiceRunner, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as the recording layer saw it.
#[derive(Debug, Clone, Default)]
struct Recorded {
    name: &'static str,
    fields: BTreeMap<String, String>,
    /// The index of the tracing parent's record.
    parent: Option<usize>,
}

impl Recorded {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Every span opened in this test binary, in the order they were opened.
#[derive(Default)]
struct Spans(Mutex<Vec<Recorded>>);

impl Spans {
    fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spans named `name` whose field `field` is `value`.
    fn find(&self, name: &str, field: &str, value: &str) -> Vec<Recorded> {
        self.all()
            .into_iter()
            .filter(|s| s.name == name && s.field(field) == Some(value))
            .collect()
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// The index of a span's record, kept in its extensions.
struct Index(usize);

struct Recorder(Arc<Spans>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut record = Recorded {
            name: attrs.metadata().name(),
            parent,
            ..Recorded::default()
        };
        attrs.record(&mut FieldVisitor(&mut record.fields));
        let mut spans = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        spans.push(record);
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<Index>().map(|i| i.0) else {
            return;
        };
        let mut spans = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = spans.get_mut(index) {
            values.record(&mut FieldVisitor(&mut record.fields));
        }
    }
}

/// The spans of this binary: a registry with the recording layer, installed once as the
/// global subscriber (handlers run on the runtime's worker threads).
fn spans() -> &'static Arc<Spans> {
    static SPANS: OnceLock<Arc<Spans>> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Arc::new(Spans::default());
        let subscriber = tracing_subscriber::registry().with(Recorder(spans.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        spans
    })
}

/// A trace id as Aegis writes it: 32 lowercase hex digits.
fn is_trace_id(value: Option<&str>) -> bool {
    value
        .is_some_and(|v| v.len() == 32 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Ping {
    tag: String,
}

#[derive(Clone)]
struct Traced {
    nats: async_nats::Client,
}

#[service(name = "traced", version = "1.0.0")]
impl Traced {
    #[rpc]
    async fn echo(&self, ping: Ping) -> Ping {
        ping
    }

    /// Calls `echo` from inside the handler: the inner call joins the handler's trace.
    #[rpc]
    async fn relay(&self, ping: Ping) -> Result<Ping, String> {
        TracedClient::new(self.nats.clone())
            .echo(Ping {
                tag: format!("{}-inner", ping.tag),
            })
            .await
            .map_err(|e| e.to_string())
    }

    #[rpc]
    async fn refuse(&self, _ping: Ping) -> Result<Ping, String> {
        Err("no such order".to_owned())
    }

    #[rpc]
    async fn explode(&self, _ping: Ping) -> Ping {
        panic!("boom")
    }

    #[subscribe("events.traced.*")]
    async fn on_traced(&self, _event: Event<Ping>) {}

    #[command]
    async fn rebuild(&self, ping: Ping) -> Result<Ping, String> {
        Ok(ping)
    }
}

async fn start(server: &NatsServer) -> RunningService {
    let nats = server.connect().await.expect("connect");
    ServiceRunner::new(Traced { nats: nats.clone() })
        .nats(nats)
        .start()
        .await
        .expect("start")
}

/// The one span named `name` with `field` = `value`, once it is there (a handler's span
/// may still be opening when the caller has its answer: an event has no answer).
async fn one(name: &str, field: &str, value: &str) -> Recorded {
    let found = support::until(Duration::from_secs(10), || async {
        !spans().find(name, field, value).is_empty()
    })
    .await;
    assert!(found, "no {name} span with {field} = {value}");
    let mut found = spans().find(name, field, value);
    assert_eq!(found.len(), 1, "one {name} span with {field} = {value}");
    found.remove(0)
}

/// The client span named `name` opened under the test's span `outer` tagged `tag`.
fn client_span(outer: &str, tag: &str, name: &str) -> Recorded {
    let all = spans().all();
    let outer = all
        .iter()
        .position(|s| s.name == outer && s.field("tag") == Some(tag))
        .expect("the test span");
    all.into_iter()
        .find(|s| s.name == name && s.parent == Some(outer))
        .expect("the client span under the test span")
}

/// Asserts that `client` (a client span: `aegis.call`, `aegis.publish`, `aegis.command`)
/// runs under the test's span `outer` and that `handler` is its child in the same trace.
fn assert_joined(outer: &str, client: &Recorded, handler: &Recorded) {
    let all = spans().all();
    let parent = client.parent.map(|i| all[i].name);
    assert_eq!(
        parent,
        Some(outer),
        "the client span is the test span's child"
    );
    assert!(is_trace_id(client.field("trace_id")), "{client:?}");
    assert_eq!(
        handler.field("trace_id"),
        client.field("trace_id"),
        "the handler span is in the client span's trace: {handler:?} {client:?}"
    );
    assert_eq!(
        handler.field("parent_span"),
        client.field("span_id"),
        "the handler span's parent is the client span"
    );
    assert_ne!(handler.field("span_id"), client.field("span_id"));
}

#[tokio::test]
async fn an_rpc_handler_span_is_the_child_of_the_client_span() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client = TracedClient::new(server.connect().await.expect("connect"));
    let tag = "rpc-joins";
    client
        .echo(Ping {
            tag: tag.to_owned(),
        })
        .instrument(tracing::info_span!("test.rpc", tag))
        .await
        .expect("echo");
    let call = client_span("test.rpc", tag, "aegis.call");
    let handler = one("rpc", "trace_id", call.field("trace_id").expect("trace id")).await;
    assert_eq!(handler.field("method"), Some("echo"));
    assert_joined("test.rpc", &call, &handler);
    instance.stop().await;
}

#[tokio::test]
async fn a_call_inside_a_handler_joins_the_handler_trace() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client = TracedClient::new(server.connect().await.expect("connect"));
    let tag = "relay-joins";
    client
        .relay(Ping {
            tag: tag.to_owned(),
        })
        .instrument(tracing::info_span!("test.relay", tag))
        .await
        .expect("relay");
    let call = client_span("test.relay", tag, "aegis.call");
    let trace = call.field("trace_id").expect("trace id");
    let in_trace = || -> Vec<Recorded> {
        spans()
            .all()
            .into_iter()
            .filter(|s| s.field("trace_id") == Some(trace))
            .collect()
    };
    // The relay's answer comes after the inner call's: every span is open by now.
    let in_trace = in_trace();
    let names: Vec<(&str, Option<&str>)> = in_trace
        .iter()
        .map(|s| (s.name, s.field("method")))
        .collect();
    assert_eq!(
        names,
        [
            ("aegis.call", Some("relay")),
            ("rpc", Some("relay")),
            ("aegis.call", Some("echo")),
            ("rpc", Some("echo")),
        ],
        "one trace from the test's call down to the inner handler"
    );
    let relay = &in_trace[1];
    assert_joined("test.relay", &call, relay);
    // The inner call is the relay handler's child; the echo handler the inner call's.
    assert_eq!(in_trace[2].field("parent_span"), relay.field("span_id"));
    assert_eq!(
        in_trace[3].field("parent_span"),
        in_trace[2].field("span_id")
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_handler_error_is_recorded_on_both_spans() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client = TracedClient::new(server.connect().await.expect("connect"));
    let tag = "refused";
    let err = client
        .refuse(Ping {
            tag: tag.to_owned(),
        })
        .instrument(tracing::info_span!("test.refuse", tag))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no such order"), "{err}");
    let call = client_span("test.refuse", tag, "aegis.call");
    let handler = one("rpc", "trace_id", call.field("trace_id").expect("trace id")).await;
    assert_eq!(handler.field("error"), Some("no such order"));
    assert_eq!(handler.field("otel.status_code"), Some("ERROR"));
    assert!(
        call.field("error")
            .is_some_and(|e| e.contains("no such order")),
        "{call:?}"
    );
    assert_eq!(call.field("otel.status_code"), Some("ERROR"));
    instance.stop().await;
}

#[tokio::test]
async fn a_handler_panic_is_recorded_on_its_span() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client = TracedClient::new(server.connect().await.expect("connect"));
    let tag = "exploded";
    client
        .explode(Ping {
            tag: tag.to_owned(),
        })
        .instrument(tracing::info_span!("test.explode", tag))
        .await
        .expect_err("panicked");
    let call = client_span("test.explode", tag, "aegis.call");
    let handler = one("rpc", "trace_id", call.field("trace_id").expect("trace id")).await;
    assert_eq!(handler.field("method"), Some("explode"));
    assert_eq!(
        handler.field("error"),
        Some("the handler panicked: boom"),
        "{handler:?}"
    );
    assert_eq!(handler.field("otel.status_code"), Some("ERROR"));
    instance.stop().await;
}

#[tokio::test]
async fn an_event_handler_span_is_the_child_of_the_publisher_span() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let events = EventPublisher::new(server.connect().await.expect("connect"));
    let tag = "event-joins";
    events
        .publish(
            "traced",
            "happened",
            &Ping {
                tag: tag.to_owned(),
            },
        )
        .instrument(tracing::info_span!("test.publish", tag))
        .await
        .expect("published");
    let publish = client_span("test.publish", tag, "aegis.publish");
    let handler = one(
        "event",
        "trace_id",
        publish.field("trace_id").expect("trace id"),
    )
    .await;
    assert_eq!(handler.field("method"), Some("on_traced"));
    assert_joined("test.publish", &publish, &handler);
    instance.stop().await;
}

#[tokio::test]
async fn a_command_handler_span_is_the_child_of_the_command_span() {
    spans();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client =
        aegis_runtime::ServiceClient::new(server.connect().await.expect("connect"), "traced")
            .expect("client");
    let tag = "command-joins";
    let done: Ping = client
        .command(
            "rebuild",
            &Ping {
                tag: tag.to_owned(),
            },
        )
        .instrument(tracing::info_span!("test.command", tag))
        .await
        .expect("completed");
    assert_eq!(done.tag, tag);
    let sent = client_span("test.command", tag, "aegis.command");
    let handler = one(
        "command",
        "trace_id",
        sent.field("trace_id").expect("trace id"),
    )
    .await;
    assert_eq!(handler.field("command"), Some("rebuild"));
    assert_eq!(handler.field("id"), sent.field("id"), "the same command");
    assert_joined("test.command", &sent, &handler);
    instance.stop().await;
}
