//! Commands in a document: the work-queue channel, and the progress and outcome channels.

use serde_json::json;

use super::{Document, MSGPACK, nullable, reference, refine};
use crate::service::MethodDescriptor;

impl Document {
    /// A command: its channel and `receive` operation, and the `send` operations of its
    /// progress and outcome.
    pub(super) fn command(&mut self, service: &str, command: &MethodDescriptor) {
        let name = command.name.as_str();
        let key = format!("{service}.command.{name}");
        let envelopes = self.envelopes();
        let (base, progress, callback) = (
            envelopes.command.clone(),
            envelopes.progress.clone(),
            envelopes.callback.clone(),
        );
        let params = self
            .schemas
            .root(&format!("{key}.params"), &command.request);
        let result = self
            .schemas
            .root(&format!("{key}.result"), &command.response);
        self.messages.insert(
            format!("{key}.command"),
            json!({
                "name": "command",
                "title": format!("{name} command"),
                "summary": "The command envelope, `payload` holding the command's parameters.",
                "contentType": MSGPACK,
                "payload": refine(&base, json!({"command": {"const": name}, "payload": params})),
            }),
        );
        self.messages.insert(
            format!("{key}.callback"),
            json!({
                "name": name,
                "title": format!("{name} outcome"),
                "summary": "How the command ended, `result` holding what it returned.",
                "contentType": MSGPACK,
                "payload": refine(&callback, json!({"result": nullable(result)})),
            }),
        );
        let progress_message = format!("{service}.command.progress");
        self.messages.insert(
            progress_message.clone(),
            json!({
                "name": "progress",
                "title": "Command progress",
                "contentType": MSGPACK,
                "payload": progress,
            }),
        );
        let command_id = json!({"command_id": {
            "description": "The `message_id` of the command envelope.",
            "location": "$message.payload#/command_id",
        }});
        self.channels.insert(
            key.clone(),
            json!({
                "address": format!("commands.{service}.{name}"),
                "title": format!("{service} command {name}"),
                "description": format!(
                    "Commands `{name}` for {service}, kept by the JetStream work-queue stream \
                     `COMMANDS` (on `commands.>`): one instance runs each, by priority, \
                     redelivered up to `max_retries` times, cancelled after `timeout`."
                ),
                "messages": {"command": reference(&["components", "messages", &format!("{key}.command")])},
            }),
        );
        let progress_key = format!("{service}.command.progress");
        self.channels.insert(
            progress_key.clone(),
            json!({
                "address": "commands.progress.{command_id}",
                "title": format!("{service} command progress"),
                "description": "Progress reports of a running command.",
                "parameters": command_id,
                "messages": {"progress": reference(&["components", "messages", &progress_message])},
            }),
        );
        let callback_key = format!("{service}.command.callback");
        let channel = self.channels.entry(callback_key.clone()).or_insert_with(|| {
            json!({
                "address": "commands.callback.{command_id}",
                "title": format!("{service} command outcomes"),
                "description": "How a command ended: completed, failed, timed out or cancelled.",
                "parameters": command_id,
                "messages": {},
            })
        });
        channel["messages"][name] =
            reference(&["components", "messages", &format!("{key}.callback")]);
        let tags = json!([{"name": "command"}]);
        self.operations.insert(
            key.clone(),
            json!({
                "action": "receive",
                "channel": reference(&["channels", &key]),
                "title": format!("{service}.{name}"),
                "summary": format!("{service} runs the command `{name}`."),
                "tags": tags,
                "messages": [reference(&["channels", &key, "messages", "command"])],
            }),
        );
        self.operations.insert(
            format!("{key}.progress"),
            json!({
                "action": "send",
                "channel": reference(&["channels", &progress_key]),
                "title": format!("{service}.{name} progress"),
                "summary": format!("While `{name}` runs, {service} reports its progress."),
                "tags": tags,
                "messages": [reference(&["channels", &progress_key, "messages", "progress"])],
            }),
        );
        self.operations.insert(
            format!("{key}.callback"),
            json!({
                "action": "send",
                "channel": reference(&["channels", &callback_key]),
                "title": format!("{service}.{name} outcome"),
                "summary": format!("When `{name}` ends, {service} reports how."),
                "tags": tags,
                "messages": [reference(&["channels", &callback_key, "messages", name])],
            }),
        );
    }
}
