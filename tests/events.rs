//! Events: `#[subscribe]` in compete and broadcast mode, wildcards, durable consumers,
//! retries of failing handlers and poison events, and the Python SDK's envelope. Real
//! nats-server, real instances.

#![allow(clippy::print_stdout)] // the compete spread is printed

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_runtime::events::{EventPublisher, MAX_DELIVER};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Event, EventContext, RpcContext, RunningService, ServiceRunner, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Order {
    order_id: String,
}

/// What every instance handled: (handler, instance) → event ids, in order.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<(&'static str, String), Vec<String>>>);

impl Tally {
    fn record(&self, handler: &'static str, ctx: &EventContext, id: &str) {
        if let Ok(mut tally) = self.0.lock() {
            tally
                .entry((handler, ctx.instance_id().to_owned()))
                .or_default()
                .push(id.to_owned());
        }
    }

    /// The ids `handler` handled, over all instances.
    fn ids(&self, handler: &str) -> Vec<String> {
        let tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tally
            .iter()
            .filter(|((h, _), _)| *h == handler)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    }

    /// How many events each instance's `handler` handled.
    fn per_instance(&self, handler: &str) -> BTreeMap<String, usize> {
        let tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tally
            .iter()
            .filter(|((h, _), _)| *h == handler)
            .map(|((_, instance), ids)| (instance.clone(), ids.len()))
            .collect()
    }
}

#[derive(Clone, Default)]
struct Listener {
    tally: Arc<Tally>,
}

#[service(name = "listener", version = "1.0.0")]
impl Listener {
    #[subscribe("events.orders.*")]
    async fn on_order(&self, ctx: &EventContext, event: Event<Order>) {
        self.tally.record("orders", ctx, &event.payload.order_id);
    }

    #[subscribe("events.payments.>", mode = "compete")]
    async fn on_payment(&self, ctx: &EventContext, event: Event<Order>) {
        self.tally.record("payments", ctx, &event.payload.order_id);
    }

    #[subscribe("events.alerts.*", mode = "broadcast")]
    async fn on_alert(&self, ctx: &EventContext, event: Event<Order>) {
        self.tally.record("alerts", ctx, &event.payload.order_id);
    }

    #[subscribe("events.audit.*", durable = "listener-audit")]
    async fn on_audit(&self, ctx: &EventContext, event: Event<Order>) {
        self.tally.record("audit", ctx, &event.payload.order_id);
    }

    /// Fails the first two deliveries of every event.
    #[subscribe("events.flaky.*")]
    async fn on_flaky(&self, ctx: &EventContext, event: Event<Order>) -> Result<(), String> {
        self.tally
            .record("flaky-attempts", ctx, &event.payload.order_id);
        if ctx.delivery() < 3 {
            return Err(format!("delivery {} fails", ctx.delivery()));
        }
        self.tally.record("flaky", ctx, &event.payload.order_id);
        Ok(())
    }

    /// Always fails.
    #[subscribe("events.broken.*")]
    async fn on_broken(&self, ctx: &EventContext, event: Event<Order>) -> Result<(), String> {
        self.tally.record("broken", ctx, &event.payload.order_id);
        Err("always".into())
    }

    /// Passes every relay event on to the audit trail.
    #[subscribe("events.relay.*")]
    async fn on_relay(&self, ctx: &EventContext, event: Event<Order>) -> Result<(), String> {
        ctx.publish("audit", "relayed", &event.payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// Publishes an order event from a handler.
    #[rpc]
    async fn announce(&self, ctx: &RpcContext, order: Order) -> Result<(), String> {
        ctx.publish("orders", "created", &order)
            .await
            .map_err(|e| e.to_string())
    }

    /// The Python SDK's captured event is published on `events.order.created`.
    #[subscribe("events.order.created")]
    async fn on_python_order(&self, ctx: &EventContext, event: Event<Order>) {
        self.tally.record("python", ctx, &event.payload.order_id);
    }
}

async fn start(server: &NatsServer, id: &str, listener: &Listener) -> RunningService {
    ServiceRunner::new(listener.clone())
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .start()
        .await
        .expect("start")
}

async fn publish(
    server: &NatsServer,
    domain: &str,
    kind: &str,
    ids: impl IntoIterator<Item = String>,
) {
    let events = EventPublisher::new(server.connect().await.expect("connect")).with_source("tests");
    for id in ids {
        events
            .publish(domain, kind, &Order { order_id: id })
            .await
            .expect("publish");
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Waits until `done` holds (up to 10 s), then a little longer so that extra deliveries
/// would show.
async fn settle(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not done within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn compete_hands_each_event_to_one_instance_and_broadcast_to_all() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let mut instances = Vec::new();
    for id in ["listener-1", "listener-2", "listener-3"] {
        instances.push(start(&server, id, &listener).await);
    }
    publish(&server, "orders", "created", ids("order", 100)).await;
    publish(&server, "alerts", "raised", ids("alert", 100)).await;
    let tally = &listener.tally;
    settle(|| tally.ids("orders").len() >= 100 && tally.ids("alerts").len() >= 300).await;

    assert_eq!(
        sorted(tally.ids("orders")),
        sorted(ids("order", 100)),
        "compete: each event handled exactly once in all"
    );
    let spread = tally.per_instance("orders");
    println!("compete spread: {spread:?}");
    assert_eq!(
        tally.per_instance("alerts"),
        ["listener-1", "listener-2", "listener-3"]
            .iter()
            .map(|id| (id.to_string(), 100))
            .collect(),
        "broadcast: every instance handles every event"
    );
    for instance in instances {
        instance.stop().await;
    }
}

#[tokio::test]
async fn two_compete_subscriptions_of_one_service_both_receive() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let instance = start(&server, "listener-1", &listener).await;
    publish(&server, "orders", "created", ids("order", 10)).await;
    // `events.payments.>`: any depth below the domain.
    let events = EventPublisher::new(server.connect().await.expect("connect"));
    for (i, kind) in ["settled", "refunded"].iter().enumerate() {
        events
            .publish(
                "payments",
                kind,
                &Order {
                    order_id: format!("payment-{i}"),
                },
            )
            .await
            .expect("publish");
    }
    let tally = &listener.tally;
    settle(|| tally.ids("orders").len() >= 10 && tally.ids("payments").len() >= 2).await;
    assert_eq!(sorted(tally.ids("orders")), sorted(ids("order", 10)));
    assert_eq!(sorted(tally.ids("payments")), ["payment-0", "payment-1"]);
    instance.stop().await;
}

#[tokio::test]
async fn a_durable_subscription_gets_the_events_published_while_it_was_down() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    start(&server, "listener-1", &listener).await.stop().await;
    publish(&server, "audit", "logged", ids("audit", 20)).await;
    let instance = start(&server, "listener-1", &listener).await;
    let tally = &listener.tally;
    settle(|| tally.ids("audit").len() >= 20).await;
    assert_eq!(sorted(tally.ids("audit")), sorted(ids("audit", 20)));
    instance.stop().await;
}

#[tokio::test]
async fn failing_handlers_are_retried_a_bounded_number_of_times_and_poison_is_dropped() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let instance = start(&server, "listener-1", &listener).await;
    let nats = server.connect().await.expect("connect");
    // A payload that is not an Order: terminated at once, never redelivered.
    let bad = aegis_runtime::codec::encode(&Event::new("orders", "created", 42)).expect("encode");
    async_nats::jetstream::new(nats.clone())
        .publish("events.orders.created", bad.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    publish(&server, "flaky", "thing", ids("flaky", 1)).await;
    publish(&server, "broken", "thing", ids("broken", 1)).await;
    publish(&server, "orders", "created", ids("order", 1)).await;

    let tally = &listener.tally;
    settle(|| {
        tally.ids("flaky").len() == 1
            && tally.ids("broken").len() >= MAX_DELIVER as usize
            && tally.ids("orders").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // longer than the last backoffs
    assert_eq!(
        tally.ids("flaky-attempts").len(),
        3,
        "two failures, then success"
    );
    assert_eq!(
        tally.ids("broken").len(),
        MAX_DELIVER as usize,
        "a handler that always fails gets {MAX_DELIVER} deliveries, no more"
    );
    assert_eq!(
        tally.ids("orders"),
        ["order-0"],
        "the poison event never reached the handler"
    );
    let js = async_nats::jetstream::new(nats);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("EVENTS")
        .await
        .expect("stream")
        .get_consumer("listener-events_orders_any")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(
        info.num_ack_pending, 0,
        "nothing left to redeliver: {info:?}"
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_python_sdk_event_is_handled() {
    let (subject, bytes, _) = support::python_vector("event_publish_compete");

    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let instance = start(&server, "listener-1", &listener).await;
    async_nats::jetstream::new(server.connect().await.expect("connect"))
        .publish(subject, bytes.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let tally = &listener.tally;
    settle(|| !tally.ids("python").is_empty()).await;
    assert_eq!(tally.ids("python"), ["O-1"]);
    instance.stop().await;
}

#[tokio::test]
async fn a_handler_publishes_events_through_its_context() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let instance = start(&server, "listener-1", &listener).await;
    let client = ListenerClient::new(server.connect().await.expect("connect"));
    client
        .announce(Order {
            order_id: "from-rpc".into(),
        })
        .await
        .expect("announce");
    let tally = &listener.tally;
    settle(|| !tally.ids("orders").is_empty()).await;
    assert_eq!(tally.ids("orders"), ["from-rpc"]);
    instance.stop().await;
}

#[tokio::test]
async fn an_event_handler_publishes_events_through_its_context() {
    let server = NatsServer::start().await.expect("nats-server");
    let listener = Listener::default();
    let instance = start(&server, "listener-1", &listener).await;
    publish(&server, "relay", "passed", ids("relayed", 3)).await;
    let tally = &listener.tally;
    settle(|| tally.ids("audit").len() >= 3).await;
    assert_eq!(sorted(tally.ids("audit")), sorted(ids("relayed", 3)));
    instance.stop().await;
}
