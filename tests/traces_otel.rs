//! Trace context that joins, with the `opentelemetry` feature (issue 17): the handler span's
//! OpenTelemetry trace id and parent are the client span's, for an RPC, an event and a
//! command, as the OpenTelemetry SDK exports them. Real nats-server. Run with
//! `cargo test -p aegis-tests --features opentelemetry --test traces_otel`.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aegis_runtime::events::EventPublisher;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Event, RunningService, ServiceRunner, service};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Every span the SDK exported in this test binary.
#[derive(Debug, Clone, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
        std::future::ready(Ok(()))
    }
}

impl Exported {
    /// The exported spans of `trace`.
    fn of(&self, trace: TraceId) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .cloned()
            .collect()
    }

    /// The one exported span named `name` whose parent is `parent`, once it is exported
    /// (a span is exported when it closes: a handler's, after its reply or ack).
    async fn child(&self, name: &str, parent: SpanId) -> SpanData {
        let find = || {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|s| s.name == name && s.parent_span_id == parent)
                .cloned()
        };
        let found = support::until(Duration::from_secs(10), || async { find().is_some() }).await;
        assert!(found, "no {name} span under {parent}");
        find().expect("found")
    }

    /// The one exported span named `name`, in a trace of its own, with no parent.
    fn root(&self, name: &str) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.name == name && s.parent_span_id == SpanId::INVALID)
            .cloned()
            .collect()
    }
}

/// The exporter of this binary, behind a tracing-opentelemetry layer installed once as the
/// global subscriber (handlers run on the runtime's worker threads).
fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let exported = Exported::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("traces-otel"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        exported
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Ping {
    tag: String,
}

#[derive(Clone, Default)]
struct Joined;

#[service(name = "joined", version = "1.0.0")]
impl Joined {
    #[rpc]
    async fn echo(&self, ping: Ping) -> Ping {
        ping
    }

    #[subscribe("events.joined.*")]
    async fn on_joined(&self, _event: Event<Ping>) {}

    #[command]
    async fn rebuild(&self, ping: Ping) -> Result<Ping, String> {
        Ok(ping)
    }
}

async fn start(server: &NatsServer) -> RunningService {
    ServiceRunner::new(Joined)
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start")
}

/// Asserts the chain test span → `client` span → `handler` span in one trace, as exported.
async fn assert_joined(outer: &str, client: &str, handler: &str) {
    let exported = exported();
    let roots = exported.root(outer);
    assert_eq!(roots.len(), 1, "one {outer} span");
    let root = &roots[0];
    let client = exported.child(client, root.span_context.span_id()).await;
    let handler = exported.child(handler, client.span_context.span_id()).await;
    assert_eq!(client.span_context.trace_id(), root.span_context.trace_id());
    assert_eq!(
        handler.span_context.trace_id(),
        client.span_context.trace_id(),
        "the handler span is in the client span's trace"
    );
    assert!(handler.parent_span_is_remote, "its parent came over NATS");
    let names: Vec<String> = exported
        .of(root.span_context.trace_id())
        .iter()
        .map(|s| s.name.to_string())
        // A call's attempts have their own (debug) spans beside the handler's: the
        // trace context is the call's, sent the same with every attempt.
        .filter(|name| name != "aegis.attempt")
        .collect();
    assert_eq!(names.len(), 3, "nothing else in the trace: {names:?}");
}

#[tokio::test]
async fn an_rpc_handler_span_is_the_otel_child_of_the_client_span() {
    exported();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client = JoinedClient::new(server.connect().await.expect("connect"));
    client
        .echo(Ping { tag: "rpc".into() })
        .instrument(tracing::info_span!("otel.test.rpc"))
        .await
        .expect("echo");
    assert_joined("otel.test.rpc", "aegis.call", "rpc").await;
    instance.stop().await;
}

#[tokio::test]
async fn an_event_handler_span_is_the_otel_child_of_the_publisher_span() {
    exported();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let events = EventPublisher::new(server.connect().await.expect("connect"));
    events
        .publish(
            "joined",
            "happened",
            &Ping {
                tag: "event".into(),
            },
        )
        .instrument(tracing::info_span!("otel.test.event"))
        .await
        .expect("published");
    assert_joined("otel.test.event", "aegis.publish", "event").await;
    instance.stop().await;
}

#[tokio::test]
async fn a_command_handler_span_is_the_otel_child_of_the_command_span() {
    exported();
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start(&server).await;
    let client =
        aegis_runtime::ServiceClient::new(server.connect().await.expect("connect"), "joined")
            .expect("client");
    let done: Ping = client
        .command(
            "rebuild",
            &Ping {
                tag: "command".into(),
            },
        )
        .instrument(tracing::info_span!("otel.test.command"))
        .await
        .expect("completed");
    assert_eq!(done.tag, "command");
    assert_joined("otel.test.command", "aegis.command", "command").await;
    instance.stop().await;
}
