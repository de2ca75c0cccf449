//! AsyncAPI 3.0 documents of services, checked against the official AsyncAPI 3.0.0 JSON
//! Schema (vendored in `tests/fixtures/asyncapi/`, see its README), offline and through
//! `aegis asyncapi` against a running service.

use std::sync::OnceLock;
use std::time::Duration;

use aegis_examples::echo::Echo;
use aegis_examples::orders::{
    CancelOrder, OrderCancelled, OrderProcessor, OrderProcessorClient, OrderRequest, Reindex,
};
use aegis_runtime::asyncapi::AsyncApi;
use aegis_runtime::codec::{
    self, Command, CommandCallback, CommandProgress, Event, ExclusiveReply,
};
use aegis_runtime::codec::{RpcRequest, RpcResponse};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{EventContext, Service, ServiceDescriptor, ServiceRunner, linked_services};
use futures_util::StreamExt;
use jsonschema::Validator;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The official schema, compiled once (format checks on: `uri`, `uri-reference`, …).
fn official() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/asyncapi/3.0.0.json");
        let text = std::fs::read_to_string(path).expect("the vendored AsyncAPI 3.0.0 schema");
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        assert_eq!(
            schema["$id"], "http://asyncapi.com/definitions/3.0.0/asyncapi.json",
            "the vendored file is the bundled AsyncAPI 3.0.0 schema"
        );
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the AsyncAPI schema compiles")
    })
}

/// What the official schema finds wrong with `document` (empty when it is valid).
fn problems(document: &Value) -> Vec<String> {
    official()
        .iter_errors(document)
        .take(20)
        .map(|error| format!("at {}: {error}", error.instance_path()))
        .collect()
}

/// Asserts that `document` is a valid AsyncAPI 3.0.0 document whose every local reference
/// resolves (the JSON Schema cannot check that).
fn assert_valid(document: &Value) {
    let problems = problems(document);
    assert!(
        problems.is_empty(),
        "the document is not valid AsyncAPI 3.0.0:\n{}\n\ndocument: {document:#}",
        problems.join("\n")
    );
    let mut dangling = Vec::new();
    references(document, &mut |target| {
        let pointer = target.strip_prefix('#').unwrap_or(target);
        if document.pointer(pointer).is_none() {
            dangling.push(target.to_owned());
        }
    });
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
}

/// Calls `found` with every `$ref` in `value`.
fn references(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("$ref") {
                found(target);
            }
            object.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

/// A validator of messages against the payload (or headers) schema at `pointer` of
/// `document`, with references resolving inside the document (draft 07: the AsyncAPI
/// Schema Object's base).
fn message_schema(document: &Value, pointer: &str) -> Validator {
    let mut root = document.clone();
    root["$ref"] = json!(format!("#{pointer}"));
    jsonschema::draft7::new(&root).expect("the message schema compiles")
}

fn assert_matches(document: &Value, pointer: &str, message: &Value) {
    let validator = message_schema(document, pointer);
    let errors: Vec<String> = validator
        .iter_errors(message)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{message} does not match {pointer}: {errors:?}"
    );
}

fn assert_rejects(document: &Value, pointer: &str, message: &Value) {
    assert!(
        !message_schema(document, pointer).is_valid(message),
        "{message} should not match {pointer}"
    );
}

/// The message as a receiver reads it: a MessagePack envelope decoded to JSON.
fn wire<T: Serialize>(message: &T) -> Value {
    let bytes = codec::encode(message).expect("encode");
    codec::decode_value(&bytes).expect("decode")
}

fn describe<S: Service>() -> ServiceDescriptor {
    (S::definition().describe)()
}

// A service with what the example services lack: a tuple, a recursive type, two types of
// one name in different modules, a broadcast subscription with a durable consumer.
mod left {
    use super::*;

    /// One `Item` …
    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    pub(crate) struct Item {
        /// A name.
        pub(crate) name: String,
    }
}

mod right {
    use super::*;

    /// … and another `Item`.
    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    pub(crate) struct Item {
        /// A count.
        pub(crate) count: u32,
    }
}

/// A tree of parts.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Part {
    label: String,
    children: Vec<Part>,
    position: (f64, f64),
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Pair {
    left: left::Item,
    right: right::Item,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Moved {
    to: (i32, i32),
}

struct Workshop;

#[aegis_runtime::service(name = "workshop", version = "0.3.0")]
impl Workshop {
    #[rpc]
    async fn build(&self, part: Part) -> Pair {
        Pair {
            left: left::Item { name: part.label },
            right: right::Item { count: 1 },
        }
    }

    #[rpc]
    async fn items(&self, pair: Pair) -> Vec<right::Item> {
        vec![pair.right]
    }

    #[subscribe("events.parts.>", mode = "broadcast", durable = "workshop-audit")]
    async fn on_part(&self, _ctx: &EventContext, _event: aegis_runtime::Event<Moved>) {}
}

#[test]
fn the_document_of_every_example_service_is_valid_asyncapi_3() {
    let mut services = vec![describe::<OrderProcessor>(), describe::<Echo>()];
    services.extend(linked_services().expect("no duplicates"));
    for service in &services {
        // Offline, without servers …
        assert_valid(&service.asyncapi());
        // … and with them.
        let document = AsyncApi::new()
            .service(service)
            .server("production", "nats://nats.example.com:4222")
            .server("secure", "tls://user:secret@nats.example.com:4443")
            .server("browser", "wss://nats.example.com/ws")
            .build();
        assert_valid(&document);
        assert!(
            !document.to_string().contains("secret"),
            "no credentials in the document"
        );
    }
    // All of them in one document: schemas of one name from different services stay apart.
    let all = services
        .iter()
        .fold(AsyncApi::new(), |api, service| api.service(service))
        .build();
    assert_valid(&all);
}

#[test]
fn the_order_processor_document_holds_rpcs_events_and_commands() {
    let document = describe::<OrderProcessor>().asyncapi();
    assert_valid(&document);
    let channels = &document["channels"];
    let operations = &document["operations"];

    let process = &operations["order-processor.rpc.process_order"];
    assert_eq!(
        channels["order-processor.rpc.process_order"]["address"],
        "rpc.order-processor.process_order"
    );
    assert_eq!(
        channels["order-processor.rpc.process_order.instance"]["address"],
        "rpc.order-processor.{instance}.process_order"
    );
    assert_eq!(process["action"], "receive");
    assert_eq!(process["x-aegis-exclusive"], true);
    assert_eq!(process["bindings"]["nats"]["queue"], "rpc.order-processor");
    assert_eq!(
        channels["order-processor.rpc.process_order.reply"]["address"],
        Value::Null,
        "the reply goes to the caller's inbox"
    );
    assert_eq!(
        process["reply"]["channel"]["$ref"],
        "#/channels/order-processor.rpc.process_order.reply"
    );
    assert_eq!(
        operations["order-processor.rpc.health_check"]["x-aegis-exclusive"],
        false
    );
    for builtin in ["aegis_status", "aegis_health", "aegis_describe"] {
        let key = format!("order-processor.rpc.{builtin}");
        assert_eq!(operations[&key]["x-aegis-builtin"], true, "{key}");
    }

    let event = &channels["order-processor.event.on_order_created"];
    assert_eq!(event["address"], "events.orders.created");
    assert_eq!(
        operations["order-processor.event.on_order_created"]["x-aegis-mode"],
        "compete"
    );

    // The domain event it declares it publishes: a channel it sends on.
    let published = &channels["order-processor.publish.orders.cancelled"];
    assert_eq!(published["address"], "events.orders.cancelled");
    let publish = &operations["order-processor.publish.orders.cancelled"];
    assert_eq!(publish["action"], "send");
    assert_eq!(
        publish["channel"]["$ref"],
        "#/channels/order-processor.publish.orders.cancelled"
    );

    assert_eq!(
        channels["order-processor.command.reindex"]["address"],
        "commands.order-processor.reindex"
    );
    assert_eq!(
        operations["order-processor.command.reindex"]["action"],
        "receive"
    );
    for (suffix, address) in [
        ("progress", "commands.progress.{command_id}"),
        ("callback", "commands.callback.{command_id}"),
    ] {
        let operation = &operations[&format!("order-processor.command.reindex.{suffix}")];
        assert_eq!(operation["action"], "send");
        let channel = operation["channel"]["$ref"]
            .as_str()
            .and_then(|r| document.pointer(r.trim_start_matches('#')))
            .expect("channel");
        assert_eq!(channel["address"], address);
        assert!(channel["parameters"]["command_id"].is_object());
    }

    // The schemas of the descriptor are components, referred to from the messages.
    let schemas = &document["components"]["schemas"];
    for name in [
        "OrderRequest",
        "OrderResult",
        "OrderCreated",
        "OrderCancelled",
        "Reindex",
        "Reindexed",
    ] {
        assert!(schemas[name].is_object(), "{name} in components.schemas");
        assert!(
            schemas[name].get("$schema").is_none(),
            "{name} has no $schema"
        );
    }
    for name in [
        "AegisRpcRequest",
        "AegisRpcResponse",
        "AegisExclusiveReply",
        "AegisEvent",
    ] {
        assert!(schemas[name].is_object(), "{name} in components.schemas");
    }
}

#[test]
fn real_messages_match_the_schemas_of_the_document_and_wrong_ones_do_not() {
    let document = describe::<OrderProcessor>().asyncapi();
    let message = |key: &str| format!("/components/messages/order-processor.{key}/payload");
    let order = OrderRequest {
        order_id: "ORD-1".into(),
        amount: 12.5,
    };

    // An exclusive method: the request envelope, the reply with an exclusive reply inside.
    let request = RpcRequest::new("process_order", &order)
        .with_target("order-processor")
        .with_source("client-1");
    let request = wire(&request);
    assert_matches(&document, &message("rpc.process_order.request"), &request);
    let raw = RpcRequest::new("process_order", json!({}));
    let leader = RpcResponse::ok(
        &raw,
        ExclusiveReply::ok(json!({
            "order_id": "ORD-1", "instance_id": "a", "term": 3, "sequence": 1
        })),
    );
    let reply = message("rpc.process_order.reply");
    assert_matches(&document, &reply, &wire(&leader));
    // Its headers: the instance that answered and the term it ran under.
    let reply_headers = "/components/messages/order-processor.rpc.process_order.reply/headers";
    assert_matches(
        &document,
        reply_headers,
        &json!({"Aegis-Instance": "order-processor-1a2b3c4d", "Aegis-Term": "3"}),
    );
    assert_rejects(&document, reply_headers, &json!({"Aegis-Term": "three"}));
    let standby: RpcResponse<ExclusiveReply> =
        RpcResponse::ok(&raw, ExclusiveReply::not_active("standby"));
    assert_matches(&document, &reply, &wire(&standby));
    let failed: RpcResponse<Value> = RpcResponse::err(&raw, "DEADLINE_EXCEEDED: it did not run");
    assert_matches(&document, &reply, &wire(&failed));
    // A plain result where an exclusive reply belongs, parameters of the wrong type, a
    // successful response with an error: rejected.
    let plain = RpcResponse::ok(&raw, json!({"order_id": "ORD-1"}));
    assert_rejects(&document, &reply, &wire(&plain));
    let mut wrong = request.clone();
    wrong["params"]["amount"] = json!("twelve");
    assert_rejects(&document, &message("rpc.process_order.request"), &wrong);
    let mut inconsistent = wire(&leader);
    inconsistent["error"] = json!("boom");
    assert_rejects(&document, &reply, &inconsistent);

    // Bare JSON: the parameters and the result themselves.
    assert_matches(
        &document,
        &message("rpc.process_order.bareRequest"),
        &serde_json::to_value(&order).expect("json"),
    );
    assert_matches(&document, &message("rpc.get_quote.bareReply"), &json!(28.5));
    assert_matches(
        &document,
        "/components/messages/order-processor.rpc.get_quote.bareError/headers",
        &json!({"Nats-Service-Error": "an order needs at least one item", "Nats-Service-Error-Code": "500"}),
    );

    // A plain method's reply, and a built-in one's.
    let quote = RpcResponse::ok(&raw, 28.5);
    assert_matches(&document, &message("rpc.get_quote.reply"), &wire(&quote));
    assert_rejects(
        &document,
        &message("rpc.get_quote.reply"),
        &wire(&RpcResponse::ok(&raw, "cheap")),
    );
    assert_matches(
        &document,
        &message("rpc.aegis_describe.reply"),
        &wire(&RpcResponse::ok(&raw, describe::<OrderProcessor>())),
    );

    // An event, a command, its progress and its outcome.
    let event = Event::new("orders", "created", json!({"order_id": "ORD-1"}));
    assert_matches(
        &document,
        &message("event.on_order_created.event"),
        &wire(&event),
    );
    let command = Command::new("reindex", Reindex { orders: 10 });
    assert_matches(
        &document,
        &message("command.reindex.command"),
        &wire(&command),
    );
    let progress = CommandProgress::new("c-1", 50.0, "5 of 10 orders");
    assert_matches(&document, &message("command.progress"), &wire(&progress));
    let done = CommandCallback::completed("c-1", json!({"reindexed": 10}));
    assert_matches(
        &document,
        &message("command.reindex.callback"),
        &wire(&done),
    );
    let failed: CommandCallback = CommandCallback::failed("c-1", "nothing to reindex");
    assert_matches(
        &document,
        &message("command.reindex.callback"),
        &wire(&failed),
    );
}

#[test]
fn schemas_with_tuples_recursion_and_clashing_names_stay_valid_and_distinct() {
    let document = describe::<Workshop>().asyncapi();
    assert_valid(&document);
    let schemas = &document["components"]["schemas"];
    // Two types named Item: both kept, under distinct names.
    let items: Vec<&Value> = ["Item", "Item_2"].iter().map(|n| &schemas[*n]).collect();
    assert!(items.iter().all(|s| s.is_object()), "{schemas:#}");
    assert_ne!(items[0], items[1]);
    // A recursive type refers to its own component; a tuple is draft 07's array `items`.
    assert_eq!(
        schemas["Part"]["properties"]["children"]["items"]["$ref"],
        "#/components/schemas/Part"
    );
    assert!(schemas["Part"]["properties"]["position"]["items"].is_array());
    let message = |key: &str| format!("/components/messages/workshop.{key}/payload");
    let part = json!({"label": "root", "position": [0.0, 1.0], "children": [
        {"label": "leaf", "position": [2.0, 3.0], "children": []}
    ]});
    assert_matches(&document, &message("rpc.build.bareRequest"), &part);
    let mut bad = part.clone();
    bad["children"][0]["position"] = json!(["x", 3.0]);
    assert_rejects(&document, &message("rpc.build.bareRequest"), &bad);
    assert_matches(
        &document,
        &message("rpc.items.bareRequest"),
        &json!({"left": {"name": "a"}, "right": {"count": 2}}),
    );
    assert_rejects(
        &document,
        &message("rpc.items.bareRequest"),
        &json!({"left": {"count": 2}, "right": {"name": "a"}}),
    );
    let operation = &document["operations"]["workshop.event.on_part"];
    assert_eq!(operation["x-aegis-mode"], "broadcast");
    assert_eq!(operation["x-aegis-durable"], "workshop-audit");
    assert_eq!(
        document["channels"]["workshop.event.on_part"]["address"],
        "events.parts.>"
    );
}

#[test]
fn the_official_schema_rejects_broken_documents() {
    let good = describe::<Echo>().asyncapi();
    assert_valid(&good);
    let mut broken = Vec::new();
    let mut no_info = good.clone();
    no_info.as_object_mut().expect("object").remove("info");
    broken.push(("no info", no_info));
    let mut wrong_version = good.clone();
    wrong_version["asyncapi"] = json!("2.6.0");
    broken.push(("AsyncAPI 2", wrong_version));
    let mut publish = good.clone();
    publish["operations"]["echo.rpc.say"]["action"] = json!("publish");
    broken.push(("an AsyncAPI 2 verb", publish));
    let mut address = good.clone();
    address["channels"]["echo.rpc.say"]["address"] = json!(42);
    broken.push(("a numeric address", address));
    let mut server = good.clone();
    server["servers"] = json!({"production": {"host": "nats.example.com:4222"}});
    broken.push(("a server without protocol", server));
    let mut schema = good.clone();
    schema["components"]["schemas"]["AegisRpcRequest"]["type"] = json!("text");
    broken.push(("a schema of an unknown type", schema));
    for (what, document) in broken {
        assert!(
            !problems(&document).is_empty(),
            "the official schema accepted a document with {what}"
        );
    }
}

/// `aegis asyncapi` against a running echo service: the printed document is valid and
/// equals the offline one with the servers asked for.
#[tokio::test]
async fn an_event_a_running_service_emits_matches_its_declaration_in_the_document() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let mut cancelled = nats
        .subscribe("events.orders.cancelled")
        .await
        .expect("subscribe");
    let orders = ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id("orders-a")
        .start()
        .await
        .expect("start");
    OrderProcessorClient::new(nats.clone())
        .cancel_order(CancelOrder {
            order_id: "ORD-7".into(),
            reason: "customer asked".into(),
        })
        .await
        .expect("cancel_order");
    let message = tokio::time::timeout(Duration::from_secs(10), cancelled.next())
        .await
        .expect("the event arrives")
        .expect("subscription open");
    let event: Event<OrderCancelled> = codec::decode(&message.payload).expect("an event envelope");
    assert_eq!(
        (event.domain.as_str(), event.event_type.as_str()),
        ("orders", "cancelled")
    );
    assert_eq!(
        event.payload,
        OrderCancelled {
            order_id: "ORD-7".into(),
            reason: "customer asked".into(),
            instance_id: "orders-a".into(),
        }
    );
    assert_eq!(event.source.as_deref(), Some("order-processor"));

    // The service's own document (from its running descriptor) declares what it sent.
    let document = describe::<OrderProcessor>().asyncapi();
    assert_matches(
        &document,
        "/components/messages/order-processor.publish.orders.cancelled.event/payload",
        &codec::decode_value(&message.payload).expect("decode"),
    );
    // An event of another type does not match the declaration.
    let other = Event::new("orders", "created", json!({"order_id": "ORD-7"}));
    assert_rejects(
        &document,
        "/components/messages/order-processor.publish.orders.cancelled.event/payload",
        &wire(&other),
    );
    orders.stop().await;
}

#[tokio::test]
async fn aegis_asyncapi_prints_the_valid_document_of_a_running_service() {
    let server = NatsServer::start().await.expect("nats-server");
    let echo = ServiceRunner::new(Echo)
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    let url = server.url();
    let finished = tokio::task::spawn_blocking(move || {
        aegis_examples::process::run_to_exit(
            "aegis",
            &[
                "--server",
                &url,
                "asyncapi",
                "echo",
                "--doc-server",
                "production=nats://nats.example.com:4222",
                "--doc-server",
                "local=nats://127.0.0.1:4222",
            ],
            Duration::from_secs(30),
        )
    })
    .await
    .expect("aegis thread");
    assert!(finished.success, "aegis asyncapi failed: {finished:?}");
    let document: Value = serde_json::from_str(&finished.stdout).expect("stdout is JSON");
    assert_valid(&document);
    let expected = AsyncApi::new()
        .service(&describe::<Echo>())
        .server("production", "nats://nats.example.com:4222")
        .server("local", "nats://127.0.0.1:4222")
        .build();
    assert_eq!(document, expected);

    // What the running service sends matches the document: an envelope call, a bare JSON
    // call, and a failed bare JSON call (its ADR-32 headers).
    let nats = server.connect().await.expect("connect");
    let message = |id: &str, part: &str| format!("/components/messages/echo.rpc.say.{id}/{part}");
    let request = RpcRequest::new("say", json!({"text": "hi"})).with_target("echo");
    assert_matches(&document, &message("request", "payload"), &wire(&request));
    let reply = nats
        .request(
            "rpc.echo.say",
            codec::encode(&request).expect("encode").into(),
        )
        .await
        .expect("envelope call");
    let decoded = codec::decode_value(&reply.payload).expect("a MessagePack reply");
    assert_matches(&document, &message("reply", "payload"), &decoded);
    let bare = nats
        .request("rpc.echo.say", r#"{"text":"hi"}"#.into())
        .await
        .expect("bare call");
    let result: Value = serde_json::from_slice(&bare.payload).expect("a JSON reply");
    assert_eq!(result["text"], "hi", "{result}");
    assert_matches(&document, &message("bareReply", "payload"), &result);
    let failed = nats
        .request("rpc.echo.say", r#"{"text":""}"#.into())
        .await
        .expect("failed bare call");
    assert!(
        failed.payload.is_empty(),
        "the body of a failed bare call is empty"
    );
    let headers: serde_json::Map<String, Value> = failed
        .headers
        .iter()
        .flat_map(|headers| headers.iter())
        .map(|(name, values)| {
            let value = values
                .first()
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            (name.to_string(), json!(value))
        })
        .collect();
    assert_matches(
        &document,
        &message("bareError", "headers"),
        &Value::Object(headers.clone()),
    );
    assert_eq!(headers["Nats-Service-Error-Code"], "500", "{headers:?}");
    echo.stop().await;

    // No service of that name: a clear error, exit code 3.
    let url = server.url();
    let missing = tokio::task::spawn_blocking(move || {
        aegis_examples::process::run_to_exit(
            "aegis",
            &["--server", &url, "asyncapi", "nobody"],
            Duration::from_secs(30),
        )
    })
    .await
    .expect("aegis thread");
    assert_eq!(missing.code, Some(3), "{missing:?}");
    assert!(
        missing.stderr.contains("no instance of nobody"),
        "{missing:?}"
    );
}
