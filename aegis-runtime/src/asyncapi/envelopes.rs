//! JSON Schemas (draft 07, as the AsyncAPI Schema Object reads them) of the Aegis wire
//! messages: the envelopes of [`crate::codec`], the exclusive reply, command progress and
//! outcome, the ADR-32 error headers of bare JSON calls, and the `ServiceDescriptor` that
//! `aegis_describe` answers. `tests/asyncapi.rs` checks real encoded messages against them.

use serde_json::{Value, json};

use crate::codec::headers;

/// The six fields every envelope starts with, in order.
fn common() -> serde_json::Map<String, Value> {
    let properties = json!({
        "message_id": {"type": "string", "description": "Unique id of this message, a UUID v4."},
        "trace_id": {"type": "string", "description": "Shared by the messages of one operation; a reply keeps its request's."},
        "correlation_id": {"type": ["string", "null"], "description": "On a reply: the `message_id` of the request."},
        "timestamp": {"type": "string", "description": "When the message was made: RFC 3339, e.g. `2026-11-22T19:18:57.531619+00:00` (receivers accept `Z`, any offset and naive timestamps, taken as UTC)."},
        "source": {"type": ["string", "null"], "description": "Who sent it (a client or instance id)."},
        "target": {"type": ["string", "null"], "description": "Who it is for (a service name)."}
    });
    match properties {
        Value::Object(properties) => properties,
        _ => serde_json::Map::new(),
    }
}

/// An envelope: the common fields, then `own` (an object literal of properties), every
/// field required, no other key allowed.
fn envelope(title: &str, description: &str, own: Value, extra: Value) -> Value {
    let mut properties = common();
    if let Value::Object(own) = own {
        properties.extend(own);
    }
    let required: Vec<String> = properties.keys().cloned().collect();
    let mut schema = json!({
        "title": title,
        "description": description,
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    });
    if let (Value::Object(schema), Value::Object(extra)) = (&mut schema, extra) {
        schema.extend(extra);
    }
    schema
}

/// `AegisRpcRequest`: the request envelope; `params` any map.
pub(super) fn rpc_request() -> Value {
    envelope(
        "AegisRpcRequest",
        "An RPC request envelope (the Python AegisSDK's). Its deadline is `timestamp` plus \
         `timeout`: a request whose deadline passed is answered `DEADLINE_EXCEEDED` and does \
         not run.",
        json!({
            "method": {"type": "string", "description": "The method called."},
            "params": {"type": "object", "description": "The method's parameters: a map."},
            "timeout": {"type": "number", "minimum": 0, "description": "How long the caller waits, in seconds from `timestamp`."}
        }),
        json!({}),
    )
}

/// `AegisRpcResponse`: the response envelope; `success` exactly when `error` is null.
pub(super) fn rpc_response() -> Value {
    envelope(
        "AegisRpcResponse",
        "An RPC response envelope: successful exactly when `error` is null. \
         `correlation_id` is the request's `message_id`.",
        json!({
            "success": {"type": "boolean", "description": "Whether the method ran and returned normally."},
            "result": {"description": "What the method returned; null on failure."},
            "error": {"type": ["string", "null"], "description": "Why the call failed (e.g. `NOT_ACTIVE: …`, `DEADLINE_EXCEEDED: …`, the handler's error); null on success."}
        }),
        json!({"oneOf": [
            {"properties": {"success": {"const": true}, "error": {"type": "null"}}},
            {"properties": {"success": {"const": false}, "error": {"type": "string"}, "result": {"type": "null"}}}
        ]}),
    )
}

/// `AegisExclusiveReply`: the `result` of a successful response of an exclusive method.
pub(super) fn exclusive_reply() -> Value {
    json!({
        "title": "AegisExclusiveReply",
        "description": "The reply of an exclusive (single-active) method, nested as the `result` of a successful response envelope. `NOT_ACTIVE` means the method did not run (the instance is a standby): a client may retry it elsewhere. `EXECUTION_ERROR` means it ran and failed.",
        "type": "object",
        "required": ["success", "error", "message", "result"],
        "additionalProperties": false,
        "properties": {
            "success": {"type": "boolean"},
            "error": {"enum": [null, "NOT_ACTIVE", "EXECUTION_ERROR"]},
            "message": {"type": ["string", "null"], "description": "What went wrong; null on success."},
            "result": {"description": "What the method returned; null on failure."}
        },
        "oneOf": [
            {"properties": {"success": {"const": true}, "error": {"type": "null"}}},
            {"properties": {"success": {"const": false}, "error": {"type": "string"}, "result": {"type": "null"}}}
        ]
    })
}

/// `AegisEvent`: the event envelope.
pub(super) fn event() -> Value {
    envelope(
        "AegisEvent",
        "An event envelope, published on `events.{domain}.{event_type}` and kept by the \
         JetStream stream `EVENTS` (on `events.>`).",
        json!({
            "domain": {"type": "string", "description": "The first token after `events.`."},
            "event_type": {"type": "string", "description": "The second token after `events.`."},
            "payload": {"description": "The event data."},
            "version": {"type": "string", "description": "Version of the event schema, `1.0` by default."}
        }),
        json!({}),
    )
}

/// `AegisCommand`: the command envelope.
pub(super) fn command() -> Value {
    envelope(
        "AegisCommand",
        "A command envelope, published on `commands.{service}.{command}` into the JetStream \
         work-queue stream `COMMANDS`: one instance of the service runs it. Its \
         `message_id` is the `command_id` of its progress and outcome.",
        json!({
            "command": {"type": "string", "description": "The command name."},
            "payload": {"description": "The command's parameters."},
            "priority": {"enum": ["low", "normal", "high", "critical"], "description": "Scheduling priority inside an instance."},
            "max_retries": {"type": "integer", "minimum": 0, "description": "How often a failed command may be redelivered."},
            "timeout": {"type": "number", "minimum": 0, "description": "How long the handler may run, in seconds."}
        }),
        json!({}),
    )
}

/// `AegisCommandProgress`: progress of a running command.
pub(super) fn command_progress() -> Value {
    json!({
        "title": "AegisCommandProgress",
        "description": "Progress of a running command, on `commands.progress.{command_id}`.",
        "type": "object",
        "required": ["command_id", "progress", "status", "timestamp"],
        "additionalProperties": false,
        "properties": {
            "command_id": {"type": "string", "description": "The `message_id` of the command."},
            "progress": {"type": "number", "minimum": 0, "maximum": 100, "description": "Percent done."},
            "status": {"type": "string", "description": "The current step."},
            "timestamp": {"type": "number", "description": "Seconds since the Unix epoch (as the Python SDK writes it)."}
        }
    })
}

/// `AegisCommandCallback`: how a command ended.
pub(super) fn command_callback() -> Value {
    json!({
        "title": "AegisCommandCallback",
        "description": "The outcome of a command, on `commands.callback.{command_id}`. A completed command has the three keys the Python SDK writes; one that did not complete adds `error`.",
        "type": "object",
        "required": ["command_id", "status", "result"],
        "additionalProperties": false,
        "properties": {
            "command_id": {"type": "string", "description": "The `message_id` of the command."},
            "status": {"enum": ["completed", "failed", "timed_out", "cancelled"]},
            "result": {"description": "The handler's result when completed, else null."},
            "error": {"type": "string", "description": "Why it did not complete."}
        }
    })
}

/// `AegisRequestHeaders`: the NATS headers a request may carry (all optional).
pub(super) fn request_headers() -> Value {
    json!({
        "title": "AegisRequestHeaders",
        "description": "NATS headers of a request, all optional: Aegis's additions never go in the envelope.",
        "type": "object",
        "properties": {
            (headers::TRACEPARENT): {"type": "string", "description": "The W3C trace context of the calling span (`00-{trace id}-{span id}-01`)."},
            (headers::TRACESTATE): {"type": "string", "description": "The W3C vendor trace state, passed along unchanged."},
            (headers::FORWARDED_BY): {"type": "string", "description": "The instance that forwarded this request to the leader (it reached one that is not); a forwarded call is never forwarded again."}
        }
    })
}

/// `AegisReplyHeaders`: the NATS headers a reply may carry (all optional).
pub(super) fn reply_headers() -> Value {
    json!({
        "title": "AegisReplyHeaders",
        "description": "NATS headers of a reply: none on a plain method's reply; an exclusive method's names the instance that answered and the fencing term it ran under.",
        "type": "object",
        "properties": {
            (headers::INSTANCE_ID): {"type": "string", "description": "The instance that answered."},
            (headers::TERM): {"type": "string", "pattern": "^[0-9]+$", "description": "The fencing term the exclusive method ran under."}
        }
    })
}

/// `AegisServiceError`: the ADR-32 headers of a failed bare JSON call.
pub(super) fn service_error_headers() -> Value {
    json!({
        "title": "AegisServiceError",
        "description": "NATS headers of a failed bare JSON call, as NATS services report errors (ADR-32); the body is empty.",
        "type": "object",
        "required": ["Nats-Service-Error", "Nats-Service-Error-Code"],
        "properties": {
            "Nats-Service-Error": {"type": "string", "description": "What went wrong."},
            "Nats-Service-Error-Code": {"enum": ["400", "500", "503"], "description": "`400`: the parameters did not decode; `500`: the handler failed or panicked; `503`: not the active instance, the method did not run."}
        }
    })
}
