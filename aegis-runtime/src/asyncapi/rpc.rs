//! RPC methods (and the built-ins) in a document: channels, envelope and bare JSON messages,
//! operations.

use serde_json::json;

use super::{Document, JSON, MSGPACK, NATS_BINDING_VERSION, nullable, reference, refine};
use crate::service::MethodDescriptor;

/// What kind of RPC method a channel is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    Exclusive,
    Builtin,
}

impl Document {
    /// An RPC method: its channels (any instance, one instance, the reply), messages
    /// (envelopes and bare JSON) and operations.
    pub(super) fn rpc(&mut self, service: &str, method: &MethodDescriptor, kind: Kind) {
        let name = method.name.as_str();
        let key = format!("{service}.rpc.{name}");
        let envelopes = self.envelopes();
        let (request_base, response_base, exclusive_base, error_headers) = (
            envelopes.request.clone(),
            envelopes.response.clone(),
            envelopes.exclusive.clone(),
            envelopes.service_error.clone(),
        );
        let (request_headers, reply_headers) = (
            envelopes.request_headers.clone(),
            envelopes.reply_headers.clone(),
        );
        let params = self.schemas.root(&format!("{key}.params"), &method.request);
        let result = self
            .schemas
            .root(&format!("{key}.result"), &method.response);
        let enveloped_result = if kind == Kind::Exclusive {
            refine(
                &exclusive_base,
                json!({ "result": nullable(result.clone()) }),
            )
        } else {
            result.clone()
        };
        let what = match kind {
            Kind::Plain => format!("Calls `{name}` of {service}."),
            Kind::Exclusive => format!(
                "Calls `{name}` of {service}, an exclusive method: only the active instance \
                 of the service's group runs it, and its result comes inside an \
                 `AegisExclusiveReply`; `NOT_ACTIVE` there means it did not run."
            ),
            Kind::Builtin => {
                format!("Calls the built-in `{name}` that every instance of {service} answers.")
            }
        };
        let messages = [
            (
                "request",
                json!({
                    "name": "request",
                    "headers": request_headers,
                    "title": format!("{name} request"),
                    "summary": "The request envelope, `params` holding the method's parameters.",
                    "description": "MessagePack by default; the same envelope in JSON is accepted too (a receiver looks at the first byte). The reply is MessagePack either way.",
                    "contentType": MSGPACK,
                    "payload": refine(&request_base, json!({
                        "method": {"const": name},
                        "params": params,
                    })),
                }),
            ),
            (
                "reply",
                json!({
                    "name": "reply",
                    "headers": reply_headers,
                    "title": format!("{name} reply"),
                    "summary": "The response envelope, `result` holding what the method returned.",
                    "contentType": MSGPACK,
                    "payload": refine(&response_base, json!({
                        "result": nullable(enveloped_result),
                    })),
                }),
            ),
            (
                "bareRequest",
                json!({
                    "name": "bareRequest",
                    "headers": request_headers,
                    "title": format!("{name} bare JSON request"),
                    "summary": "The parameters themselves, as plain JSON (no envelope); an empty body stands for no parameters.",
                    "description": "A JSON body that is not envelope-shaped (an object with `message_id` and `params`) is a bare JSON call, as `nats req` sends it. Its reply is plain JSON too.",
                    "contentType": JSON,
                    "payload": params,
                }),
            ),
            (
                "bareReply",
                json!({
                    "name": "bareReply",
                    "headers": reply_headers,
                    "title": format!("{name} bare JSON reply"),
                    "summary": "What the method returned, as plain JSON (no envelope).",
                    "contentType": JSON,
                    "payload": result,
                }),
            ),
            (
                "bareError",
                json!({
                    "name": "bareError",
                    "title": format!("{name} bare JSON error"),
                    "summary": "A failed bare JSON call: the ADR-32 error headers, and an empty body.",
                    "contentType": JSON,
                    "headers": error_headers,
                }),
            ),
        ];
        for (id, message) in messages {
            self.messages.insert(format!("{key}.{id}"), message);
        }
        let message_ref = |id: &str| reference(&["components", "messages", &format!("{key}.{id}")]);
        let request_messages = json!({
            "request": message_ref("request"),
            "bareRequest": message_ref("bareRequest"),
        });
        let reply_key = format!("{key}.reply");
        let instance_key = format!("{key}.instance");
        self.channels.insert(
            key.clone(),
            json!({
                "address": format!("rpc.{service}.{name}"),
                "title": format!("{service}.{name}"),
                "description": format!("{what} Any instance answers (queue group `rpc.{service}`)."),
                "messages": request_messages,
            }),
        );
        self.channels.insert(
            instance_key.clone(),
            json!({
                "address": format!("rpc.{service}.{{instance}}.{name}"),
                "title": format!("{service}.{name} on one instance"),
                "description": format!("{what} The instance named in the subject answers; for an exclusive method, a standby forwards the call once to the leader and relays its answer, or answers `NOT_ACTIVE` (the method did not run)."),
                "parameters": {"instance": {"description": format!("The instance id, e.g. `{service}-1a2b3c4d`.")}},
                "messages": request_messages,
            }),
        );
        self.channels.insert(
            reply_key.clone(),
            json!({
                "address": null,
                "title": format!("Reply to {service}.{name}"),
                "description": "The caller's inbox: the reply subject of the request.",
                "messages": {
                    "reply": message_ref("reply"),
                    "bareReply": message_ref("bareReply"),
                    "bareError": message_ref("bareError"),
                },
            }),
        );
        let tags = match kind {
            Kind::Plain => json!([{"name": "rpc"}]),
            Kind::Exclusive => json!([{"name": "rpc"}, {"name": "exclusive"}]),
            Kind::Builtin => json!([{"name": "rpc"}, {"name": "builtin"}]),
        };
        for (channel, suffix, queue) in [(&key, "", true), (&instance_key, ".instance", false)] {
            for (mode, request, replies) in [
                ("", "request", vec!["reply"]),
                (".bare", "bareRequest", vec!["bareReply", "bareError"]),
            ] {
                let mut operation = json!({
                    "action": "receive",
                    "channel": reference(&["channels", channel]),
                    "title": format!("{service}.{name}{}", if mode.is_empty() { "" } else { " (bare JSON)" }),
                    "summary": what,
                    "tags": tags,
                    "messages": [reference(&["channels", channel, "messages", request])],
                    "reply": {
                        "channel": reference(&["channels", &reply_key]),
                        "messages": replies
                            .iter()
                            .map(|id| reference(&["channels", &reply_key, "messages", id]))
                            .collect::<Vec<_>>(),
                    },
                    "x-aegis-exclusive": kind == Kind::Exclusive,
                    "x-aegis-builtin": kind == Kind::Builtin,
                });
                if queue {
                    operation["bindings"] = json!({"nats": {
                        "queue": format!("rpc.{service}"),
                        "bindingVersion": NATS_BINDING_VERSION,
                    }});
                }
                self.operations
                    .insert(format!("{key}{suffix}{mode}"), operation);
            }
        }
    }
}
