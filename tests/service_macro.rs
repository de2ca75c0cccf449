//! A `#[service]` with all four attributes, served by real instances on a real nats-server
//! and called through its generated client.

mod support;

use std::time::Duration;

use aegis_examples::orders::{
    Health, OrderCreated, OrderProcessor, OrderProcessorClient, OrderRequest, QuoteRequest, Reindex,
};
use aegis_runtime::codec::{self, CommandCallback, CommandProgress, CommandStatus, Event};
use aegis_runtime::service::{CommandCall, EventCall, EventContext, WorkFailure};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{
    CallErrorKind, CommandOptions, RunningService, Service, ServiceRunner, linked_services,
};
use futures_util::StreamExt;
use support::hold_leader_key;

async fn start_instance(server: &NatsServer, id: &str) -> RunningService {
    let nats = server.connect().await.expect("connect");
    ServiceRunner::new(OrderProcessor::default())
        .nats(nats)
        .instance_id(id)
        .start()
        .await
        .expect("instance starts")
}

#[tokio::test]
async fn every_rpc_answers_through_the_generated_client() {
    let server = NatsServer::start().await.expect("nats-server");
    let a = start_instance(&server, "orders-a").await;
    let b = start_instance(&server, "orders-b").await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    assert_eq!(OrderProcessorClient::SERVICE, "order-processor");

    let health: Health = client.health_check().await.expect("health_check");
    assert_eq!(
        health,
        Health {
            status: "healthy".into(),
            processed: 0
        }
    );
    assert_eq!(
        client
            .quote(QuoteRequest { items: 2 })
            .await
            .expect("quote"),
        19.0
    );
    let who = client.whoami().await.expect("whoami");
    assert!(who == "orders-a" || who == "orders-b", "{who}");

    // An exclusive method runs only on the instance the election made active.
    let leader = wait_for_leader(&[&a, &b]).await;
    let term = leader.leadership().term().expect("a term");
    let order = OrderRequest {
        order_id: "ORD-1".into(),
        amount: 12.5,
    };
    for _ in 0..10 {
        let result = client
            .process_order(order.clone())
            .await
            .expect("process_order");
        assert_eq!(
            result.instance_id,
            leader.instance_id().as_str(),
            "only the active instance runs it"
        );
        assert_eq!(result.term, term);
        assert_eq!(result.order_id, "ORD-1");
    }
    a.stop().await;
    b.stop().await;
}

/// Waits (up to 10 s) until exactly one of `instances` is active, and returns it.
async fn wait_for_leader<'a>(instances: &[&'a RunningService]) -> &'a RunningService {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let active: Vec<_> = instances
            .iter()
            .filter(|i| i.leadership().is_active())
            .collect();
        match active.as_slice() {
            [one] => return one,
            [] if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("expected one leader, found {}", other.len()),
        }
    }
}

#[tokio::test]
async fn handler_errors_arrive_as_typed_errors_without_retries() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start_instance(&server, "orders-a").await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));

    let err = client
        .quote(QuoteRequest { items: 0 })
        .await
        .expect_err("no items");
    assert!(matches!(err.kind(), CallErrorKind::Handler(_)), "{err:?}");
    assert_eq!(
        err.handler_message(),
        Some("an order needs at least one item")
    );
    assert_eq!(err.attempts(), 1, "a handler error is never retried");
    assert_eq!(
        (err.service(), err.method()),
        ("order-processor", "get_quote")
    );

    // The lone instance wins the election; the first exclusive call may retry until it
    // has subscribed the group's subject.
    wait_for_leader(&[&instance]).await;
    client
        .process_order(OrderRequest {
            order_id: "ORD-1".into(),
            amount: 1.0,
        })
        .await
        .expect("valid order");
    let err = client
        .process_order(OrderRequest {
            order_id: "ORD-2".into(),
            amount: -1.0,
        })
        .await
        .expect_err("negative amount");
    assert_eq!(
        err.handler_message(),
        Some("order ORD-2: amount -1 must be positive")
    );
    assert_eq!(err.attempts(), 1);
    instance.stop().await;
}

#[tokio::test]
async fn exclusive_calls_never_run_on_a_standby() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    // Someone else holds the leader key (no TTL: it never expires): the instance stays
    // standby and must not take over.
    hold_leader_key(&nats, "order-processor").await;
    let instance = start_instance(&server, "orders-a").await;
    let client = OrderProcessorClient::configured(nats.clone(), |client| {
        client.with_timeout(Duration::from_secs(1))
    });

    // A standby does not even subscribe the group's subject: nobody answers, the call
    // provably did not run, and it is retried until the deadline.
    let err = client
        .process_order(OrderRequest {
            order_id: "ORD-3".into(),
            amount: 1.0,
        })
        .await
        .expect_err("no active instance");
    assert!(matches!(err.kind(), CallErrorKind::NoResponders), "{err:?}");
    assert!(
        err.attempts() >= 3,
        "calls that did not run are retried until the deadline: {err}"
    );
    assert!(
        !instance.leadership().is_active(),
        "a key held by another is not taken over"
    );

    // Addressed to the standby itself, the call gets the Python SDK's NOT_ACTIVE reply.
    let request = codec::RpcRequest::new(
        "process_order",
        serde_json::json!({"order_id": "ORD-4", "amount": 1.0}),
    );
    let reply = nats
        .request(
            "rpc.order-processor.orders-a.process_order",
            codec::encode(&request).expect("encode").into(),
        )
        .await
        .expect("reply");
    let response: codec::RpcResponse<codec::ExclusiveReply> =
        codec::decode(&reply.payload).expect("decode");
    assert!(
        response.success,
        "NOT_ACTIVE travels in a successful envelope"
    );
    let nested = response.result.expect("nested reply");
    assert!(nested.is_not_active());
    assert_eq!(
        nested.message.as_deref(),
        Some(
            "This instance is not active. Instance orders-a is in STANDBY mode for group default."
        )
    );
    assert_eq!(
        client.health_check().await.expect("health").processed,
        0,
        "the exclusive method never ran"
    );
    instance.stop().await;
}

#[tokio::test]
async fn the_instance_subject_reaches_that_instance() {
    let server = NatsServer::start().await.expect("nats-server");
    let a = start_instance(&server, "orders-a").await;
    let b = start_instance(&server, "orders-b").await;
    let nats = server.connect().await.expect("connect");

    for id in ["orders-a", "orders-b"] {
        let request = codec::RpcRequest::new("whoami", serde_json::json!({}));
        let reply = nats
            .request(
                format!("rpc.order-processor.{id}.whoami"),
                codec::encode(&request).expect("encode").into(),
            )
            .await
            .expect("reply");
        let response: codec::RpcResponse<String> = codec::decode(&reply.payload).expect("decode");
        assert_eq!(response.result.as_deref(), Some(id));
        assert_eq!(
            response.correlation_id.as_deref(),
            Some(request.message_id.as_str())
        );
        // Only replies of exclusive methods carry headers (the instance and its term).
        assert!(reply.headers.is_none(), "{:?}", reply.headers);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_malformed_request_gets_an_error_that_says_why() {
    let server = NatsServer::start().await.expect("nats-server");
    let instance = start_instance(&server, "orders-a").await;
    let nats = server.connect().await.expect("connect");

    let mut request = serde_json::to_value(codec::RpcRequest::new(
        "get_quote",
        serde_json::json!({"items": "two"}),
    ))
    .expect("value");
    request["params"]["items"] = serde_json::json!("two");
    let reply = nats
        .request(
            "rpc.order-processor.get_quote",
            codec::encode(&request).expect("encode").into(),
        )
        .await
        .expect("reply");
    let response: codec::RpcResponse = codec::decode(&reply.payload).expect("decode");
    assert!(!response.success);
    let error = response.error.expect("error");
    assert!(error.contains("field `params.items`"), "{error}");
    assert_eq!(
        response.correlation_id,
        request["message_id"].as_str().map(str::to_owned)
    );
    // Bytes without a readable header have no id to correlate with: nil, as the Python
    // SDK answers, not "".
    let reply = nats
        .request("rpc.order-processor.get_quote", vec![0x89, 0xaa].into())
        .await
        .expect("reply");
    let response: codec::RpcResponse = codec::decode(&reply.payload).expect("decode");
    assert!(!response.success);
    assert_eq!(response.correlation_id, None);
    instance.stop().await;
}

#[test]
fn the_definition_lists_every_method_and_the_descriptor_has_schemas() {
    let definition = OrderProcessor::definition();
    assert_eq!(
        (definition.name, definition.version),
        ("order-processor", "1.0.0")
    );
    let rpcs: Vec<(&str, bool)> = definition
        .rpcs
        .iter()
        .map(|r| (r.name, r.exclusive))
        .collect();
    assert_eq!(
        rpcs,
        [
            ("process_order", true),
            ("health_check", false),
            ("get_quote", false),
            ("cancel_order", false),
            ("whoami", false)
        ]
    );
    assert_eq!(definition.subscriptions[0].pattern, "events.orders.created");
    assert_eq!(definition.commands[0].name, "reindex");

    let descriptor = (definition.describe)();
    let process = &descriptor.rpcs[0];
    assert_eq!(process.request["properties"]["amount"]["type"], "number");
    assert_eq!(process.response["properties"]["term"]["type"], "integer");
    assert_eq!(
        descriptor.rpcs[1].request["maxProperties"], 0,
        "no params: an empty map"
    );
    assert_eq!(
        descriptor.subscriptions[0].payload["properties"]["order_id"]["type"],
        "string"
    );
    assert_eq!(
        descriptor.commands[0].response["properties"]["reindexed"]["type"],
        "integer"
    );
    let published = &descriptor.publishes[..];
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        (
            published[0].domain.as_str(),
            published[0].event_type.as_str()
        ),
        ("orders", "cancelled")
    );
    assert_eq!(published[0].subject(), "events.orders.cancelled");
    assert_eq!(
        published[0].payload["properties"]["reason"]["type"],
        "string"
    );

    let linked = linked_services().expect("no duplicates");
    assert!(
        linked
            .iter()
            .any(|s| s.name == "order-processor" && s.rpcs.len() == 5)
    );
}

#[tokio::test]
async fn event_handlers_decode_python_style_events() {
    let subscription = &OrderProcessor::definition().subscriptions[0];
    let service = std::sync::Arc::new(OrderProcessor::default());
    let context = || EventContext::new("events.orders.created", "orders-a".into(), 1);

    let event = Event::new(
        "orders",
        "created",
        OrderCreated {
            order_id: "O-1".into(),
        },
    )
    .with_source("ev-1");
    let call = EventCall::new(codec::encode(&event).expect("encode").into(), context());
    assert_eq!((subscription.handler)(service.clone(), call).await, Ok(()));

    let wrong = Event::new("orders", "created", serde_json::json!({"order_id": 5}));
    let call = EventCall::new(codec::encode(&wrong).expect("encode").into(), context());
    match (subscription.handler)(service, call).await {
        Err(WorkFailure::BadPayload(message)) => {
            assert!(message.contains("payload.order_id"), "{message}")
        }
        other => panic!("expected a bad payload, got {other:?}"),
    }
}

#[tokio::test]
async fn command_handlers_report_progress_and_outcome() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let command = codec::Command::new("reindex", Reindex { orders: 3 });
    let mut progress = nats
        .subscribe(format!("commands.progress.{}", command.message_id))
        .await
        .expect("sub");

    let handler = OrderProcessor::definition().commands[0].handler;
    let call = CommandCall::new(
        codec::encode(&command).expect("encode").into(),
        nats.clone(),
    );
    let outcome = handler(std::sync::Arc::new(OrderProcessor::default()), call).await;
    assert_eq!(outcome.failure, None);
    let (id, bytes) = outcome.callback.expect("a callback");
    assert_eq!(id, command.message_id);
    let callback: CommandCallback = codec::decode(&bytes).expect("decode callback");
    assert_eq!(callback.status, CommandStatus::Completed);
    assert_eq!(callback.result.expect("result")["reindexed"], 3);

    let mut percents = Vec::new();
    while percents.len() < 10 {
        let update = tokio::time::timeout(Duration::from_secs(5), progress.next())
            .await
            .expect("progress")
            .expect("message");
        let update: CommandProgress = codec::decode(&update.payload).expect("decode progress");
        percents.push(update.progress);
    }
    assert_eq!(
        percents,
        (1..=10).map(|t| f64::from(t * 10)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn commands_run_through_the_generated_client() {
    let server = NatsServer::start().await.expect("nats-server");
    let a = start_instance(&server, "orders-a").await;
    let b = start_instance(&server, "orders-b").await;
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));

    let done = client
        .reindex(Reindex { orders: 30 })
        .await
        .expect("reindex");
    assert_eq!(done.reindexed, 30);

    let mut handle = client
        .start_reindex(Reindex { orders: 50 }, CommandOptions::default())
        .await
        .expect("start");
    let mut statuses = Vec::new();
    while let Some(update) = handle.next_progress().await {
        statuses.push(update.status);
    }
    assert_eq!(statuses.first().map(String::as_str), Some("5 of 50 orders"));
    assert_eq!(statuses.last().map(String::as_str), Some("50 of 50 orders"));
    assert_eq!(statuses.len(), 10, "every update, in order");
    assert_eq!(handle.outcome().await.expect("outcome").reindexed, 50);

    let no_retries = CommandOptions {
        max_retries: 0,
        ..CommandOptions::default()
    };
    let handle = client
        .start_reindex(Reindex { orders: 0 }, no_retries)
        .await
        .expect("start");
    let err = handle.outcome().await.expect_err("fails");
    assert_eq!(err.handler_message(), Some("nothing to reindex"));

    let retried = CommandOptions {
        max_retries: 2,
        ..CommandOptions::default()
    };
    let started = std::time::Instant::now();
    let err = client
        .start_reindex(Reindex { orders: 0 }, retried)
        .await
        .expect("start")
        .outcome()
        .await
        .expect_err("fails");
    assert_eq!(err.handler_message(), Some("nothing to reindex"));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "two retries with backoff ran first"
    );

    let short = CommandOptions {
        timeout: Duration::from_millis(300),
        max_retries: 0,
        ..CommandOptions::default()
    };
    let err = client
        .start_reindex(Reindex { orders: 5000 }, short)
        .await
        .expect("start")
        .outcome()
        .await
        .expect_err("too slow");
    assert!(
        err.handler_message()
            .is_some_and(|m| m.starts_with("timed out")),
        "{err}"
    );

    a.stop().await;
    b.stop().await;
}
