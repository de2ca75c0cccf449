//! The codec against messages captured from the Python AegisSDK
//! (`tests/vectors/python-sdk-wire-examples.json`, a copy of the shared protocol file).
//!
//! Every vector with bytes decodes into its envelope type; every MessagePack vector, and the
//! JSON request, re-encodes to exactly the bytes the SDK sent.

use aegis_runtime::codec::{
    self, Command, CommandCallback, CommandProgress, CommandStatus, Event, ExclusiveReply, Format,
    Priority, RpcRequest, RpcResponse, WireMessage,
};
use aegis_runtime::instance::{InstanceStatus, ServiceInstance};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/python-sdk-wire-examples.json");

fn vectors() -> serde_json::Map<String, Value> {
    match serde_json::from_str(VECTORS).expect("the vector file is JSON") {
        Value::Object(map) => map,
        other => panic!("expected an object of vectors, got {other}"),
    }
}

fn bytes_of(vector: &Value) -> Vec<u8> {
    let hex = vector["hex"].as_str().expect("vector has hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

/// Decodes a vector as `T`, checks the decoded message equals the captured structure, and
/// checks it re-encodes to the same bytes.
fn round_trip<T: WireMessage + serde::Serialize + std::fmt::Debug>(name: &str) -> T {
    let all = vectors();
    let vector = &all[name];
    let bytes = bytes_of(vector);
    assert_eq!(
        bytes.len() as u64,
        vector["len"].as_u64().expect("len"),
        "{name}: length"
    );
    let message: T = codec::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));

    let (format, captured) = match &vector["payload"] {
        Value::Object(p) if p.contains_key("msgpack") => (Format::MessagePack, &p["msgpack"]),
        Value::Object(p) => (Format::Json, &p["json"]),
        other => panic!("{name}: unexpected payload {other}"),
    };
    assert_eq!(Format::detect(&bytes), format, "{name}: format detection");
    let as_value = serde_json::to_value(&message).expect("to value");
    assert_eq!(&as_value, captured, "{name}: decoded fields");

    let encoded = match format {
        Format::MessagePack => codec::encode(&message),
        Format::Json => codec::encode_json(&message),
    }
    .expect("encode");
    assert_eq!(
        encoded, bytes,
        "{name}: re-encoding differs from the SDK's bytes"
    );
    message
}

#[test]
fn rpc_requests_round_trip_byte_for_byte() {
    let request: RpcRequest = round_trip("rpc_request_process_order");
    assert_eq!(request.method, "process_order");
    assert_eq!(request.params["amount"], 12.5);
    assert_eq!(request.timeout, 5.0);
    assert_eq!(request.correlation_id, None);
    for name in [
        "rpc_request_process_order_fail",
        "rpc_request_health_check",
        "rpc_request_health_check_fail",
        "rpc_request_process_order_to_standby",
    ] {
        round_trip::<RpcRequest>(name);
    }
}

#[test]
fn json_rpc_request_round_trips_byte_for_byte() {
    let request: RpcRequest = round_trip("rpc_request_health_check_json_wire");
    assert_eq!(request.method, "health_check");
    assert_eq!(request.source.as_deref(), Some("py-client-5544"));
}

#[test]
fn typed_params_decode_from_python_bytes() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        order_id: String,
        amount: f64,
        seq: u32,
    }
    let all = vectors();
    let bytes = bytes_of(&all["rpc_request_process_order"]);
    let request: RpcRequest<Order> = codec::decode(&bytes).expect("typed decode");
    assert_eq!(
        request.params,
        Order {
            order_id: "ORD-1".into(),
            amount: 12.5,
            seq: 0
        }
    );
    assert_eq!(codec::encode(&request).expect("encode"), bytes);
}

#[test]
fn rpc_responses_round_trip_byte_for_byte() {
    let ok: RpcResponse = round_trip("rpc_response_health_check");
    assert!(ok.success);
    assert_eq!(
        ok.result.as_ref().expect("result")["instance_id"],
        "order-svc-b"
    );
    round_trip::<RpcResponse>("rpc_response_to_json_request");

    let failed: RpcResponse = round_trip("rpc_response_handler_exception");
    assert_eq!(
        failed.into_result(),
        Err("health_check failure requested".to_owned())
    );
}

#[test]
fn exclusive_replies_nest_inside_successful_responses() {
    let leader: RpcResponse<ExclusiveReply> = round_trip("rpc_response_process_order_success");
    let reply = leader.result.expect("nested reply");
    assert!(reply.success && !reply.is_not_active());
    assert_eq!(reply.result.expect("value")["instance_id"], "order-svc-a");

    let standby: RpcResponse<ExclusiveReply> = round_trip("rpc_response_NOT_ACTIVE");
    assert!(
        standby.success,
        "NOT_ACTIVE travels in a successful envelope"
    );
    let reply = standby.result.expect("nested reply");
    assert!(reply.is_not_active());
    assert!(
        reply
            .message
            .as_deref()
            .expect("message")
            .contains("STANDBY")
    );

    let failed: RpcResponse<ExclusiveReply> = round_trip("rpc_response_EXECUTION_ERROR");
    let reply = failed.result.expect("nested reply");
    assert_eq!(
        reply.error.as_deref(),
        Some(ExclusiveReply::<Value>::EXECUTION_ERROR)
    );
    assert_eq!(
        reply.into_result(),
        Err("requested failure (seq=0)".to_owned())
    );
}

#[test]
fn events_round_trip_byte_for_byte() {
    let event: Event = round_trip("event_publish_compete");
    assert_eq!(
        (event.domain.as_str(), event.event_type.as_str()),
        ("order", "created")
    );
    assert_eq!(event.version, "1.0");
}

#[test]
fn commands_round_trip_byte_for_byte() {
    let command: Command = round_trip("command_publish");
    assert_eq!(command.command, "reindex");
    assert_eq!(command.priority, Priority::High);
    assert_eq!(command.max_retries, 3);
    assert_eq!(command.timeout, 10.0);

    let progress: CommandProgress = round_trip("command_progress");
    assert_eq!(progress.progress, 50.0);
    assert_eq!(progress.command_id, command.message_id);

    let callback: CommandCallback = round_trip("command_callback");
    assert_eq!(callback.status, CommandStatus::Completed);
    assert_eq!(callback.result.expect("result")["reindexed"], 3);
}

#[test]
fn every_vector_with_bytes_is_covered() {
    let covered = [
        "rpc_request_process_order",
        "rpc_response_process_order_success",
        "rpc_request_process_order_fail",
        "rpc_response_EXECUTION_ERROR",
        "rpc_request_health_check",
        "rpc_response_health_check",
        "rpc_request_health_check_fail",
        "rpc_response_handler_exception",
        "rpc_request_health_check_json_wire",
        "rpc_response_to_json_request",
        "rpc_request_process_order_to_standby",
        "rpc_response_NOT_ACTIVE",
        "event_publish_compete",
        "command_publish",
        "command_progress",
        "command_callback",
    ];
    let with_bytes: Vec<String> = vectors()
        .into_iter()
        .filter(|(_, v)| v.get("hex").is_some())
        .map(|(k, _)| k)
        .collect();
    for name in &with_bytes {
        assert!(
            covered.contains(&name.as_str()),
            "vector {name} has bytes but no test"
        );
    }
}

#[test]
fn python_event_payloads_decode_as_events() {
    // Leader election events are published by the SDK in event envelopes; they carry no hex
    // in the capture, so rebuild their bytes from the captured structure.
    let all = vectors();
    for name in ["event_leader_elected", "event_election_failed"] {
        let captured = &all[name]["payload"]["msgpack"];
        let bytes = codec::encode(captured).expect("encode captured structure");
        let event: Event = codec::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.domain, "sticky_active");
        assert_eq!(event.payload["service_name"], "order-svc");
        assert_eq!(
            bytes.len() as u64,
            all[name]["len"].as_u64().expect("len"),
            "{name}"
        );
    }
}

#[test]
fn python_registry_entries_decode_as_service_instances() {
    let all = vectors();
    for name in [
        "registry_kv_put_initial",
        "registry_kv_put_with_sticky_group",
        "f30dbd3_registry_put_with_Nats_TTL",
    ] {
        let captured = &all[name]["payload"]["json"];
        let json = serde_json::to_vec(captured).expect("json");
        let instance = ServiceInstance::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(instance.status, InstanceStatus::Active, "{name}");
        assert_eq!(instance.version, "1.0.0", "{name}");
        assert_eq!(
            instance.last_heartbeat.to_string(),
            captured["lastHeartbeat"].as_str().expect("string"),
            "{name}"
        );
    }
    let grouped = &all["registry_kv_put_with_sticky_group"]["payload"]["json"];
    let instance =
        ServiceInstance::from_json(&serde_json::to_vec(grouped).expect("json")).expect("valid");
    assert_eq!(instance.sticky_active_group.as_deref(), Some("default"));
}
