//! Request/reply through a real nats-server with the codec, as a Python client would do it.

use std::time::Duration;

mod support;

use aegis_runtime::codec::{self, ExclusiveReply, RpcRequest, RpcResponse};
use aegis_runtime::subject::{self, MethodName, ServiceName};
use aegis_runtime::testing::NatsServer;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Serves `rpc.order-svc.process_order` in the service's queue group: answers with the
/// request's params plus who answered, wrapped in an exclusive reply as the SDK does.
async fn serve_orders(client: async_nats::Client) -> tokio::task::JoinHandle<()> {
    let service = ServiceName::new("order-svc").expect("valid");
    let method = MethodName::new("process_order").expect("valid");
    let mut requests = client
        .queue_subscribe(
            subject::rpc(&service, &method),
            subject::rpc_queue_group(&service),
        )
        .await
        .expect("subscribe");
    // Prove the subscription is registered on the server before any request is sent.
    client.flush().await.expect("flush");
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Some(reply_to) = message.reply else {
                continue;
            };
            let response = match codec::decode::<RpcRequest>(&message.payload) {
                Ok(request) => {
                    let mut result = request.params.clone();
                    result["instance_id"] = json!("rust-a");
                    codec::encode(&RpcResponse::ok(&request, ExclusiveReply::ok(result)))
                }
                Err(err) => {
                    let unknown = RpcRequest::new("unknown", Value::Null);
                    codec::encode(&RpcResponse::<Value>::err(&unknown, err.to_string()))
                }
            }
            .expect("encode");
            client
                .publish(reply_to, response.into())
                .await
                .expect("reply");
        }
    })
}

async fn call(client: &async_nats::Client, payload: Vec<u8>) -> RpcResponse<ExclusiveReply> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("rpc.order-svc.process_order", payload.into()),
    )
    .await
    .expect("reply within 5 s")
    .expect("request");
    codec::decode(&reply.payload).expect("decode response")
}

#[tokio::test]
async fn typed_request_gets_a_typed_reply_through_a_real_server() {
    let server = NatsServer::start().await.expect("nats-server");
    let service_client = server.connect().await.expect("connect");
    let _service = serve_orders(service_client).await;
    let client = server.connect().await.expect("connect");

    let request = RpcRequest::new("process_order", json!({"order_id": "ORD-7", "amount": 3.5}))
        .with_target("order-svc");
    let response = call(&client, codec::encode(&request).expect("encode")).await;

    assert_eq!(
        response.correlation_id.as_deref(),
        Some(request.message_id.as_str())
    );
    assert_eq!(response.trace_id, request.trace_id);
    let reply = response.result.expect("nested reply");
    assert!(reply.success);
    let result = reply.result.expect("value");
    assert_eq!(result["order_id"], "ORD-7");
    assert_eq!(result["amount"], 3.5);
    assert_eq!(result["instance_id"], "rust-a");
}

#[tokio::test]
async fn python_sdk_bytes_are_answered() {
    let server = NatsServer::start().await.expect("nats-server");
    let _service = serve_orders(server.connect().await.expect("connect")).await;
    let client = server.connect().await.expect("connect");
    for name in [
        "rpc_request_process_order",
        "rpc_request_health_check_json_wire",
    ] {
        let (_, bytes, decoded) = support::python_vector(name);
        let response = call(&client, bytes).await;
        let expected_id = decoded["message_id"].as_str().expect("message id");
        assert_eq!(
            response.correlation_id.as_deref(),
            Some(expected_id),
            "{name}"
        );
        assert!(response.result.expect("nested").success, "{name}");
    }
}

#[tokio::test]
async fn malformed_requests_get_an_error_reply_that_says_why() {
    let server = NatsServer::start().await.expect("nats-server");
    let _service = serve_orders(server.connect().await.expect("connect")).await;
    let client = server.connect().await.expect("connect");

    let reply = client
        .request("rpc.order-svc.process_order", vec![0x89, 0xaa].into())
        .await
        .expect("request");
    let response: RpcResponse = codec::decode(&reply.payload).expect("decode");
    assert!(!response.success);
    let error = response.error.expect("error");
    assert!(
        error.contains("malformed MessagePack: truncated"),
        "{error}"
    );
}
