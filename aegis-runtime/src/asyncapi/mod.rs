//! [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) documents
//! of services, made from their [`ServiceDescriptor`]s.
//!
//! [`ServiceDescriptor::asyncapi`] describes one service, offline (no servers);
//! [`AsyncApi`] describes one or more, with the servers they run on. The `aegis asyncapi`
//! command prints the document of a running service. What the document holds, per service
//! `{service}`:
//!
//! | Aegis | channel (address) | operation |
//! | --- | --- | --- |
//! | RPC method `{m}` (`#[rpc]`, `#[exclusive_rpc]`) | `rpc.{service}.{m}` (queue group `rpc.{service}`), and `rpc.{service}.{instance}.{m}` for one chosen instance | `receive`, with a `reply` on the caller's inbox (address `null`); once with the Aegis envelopes (MessagePack), once with bare JSON |
//! | built-in `aegis_status`, `aegis_health`, `aegis_describe` | as a method | as a method |
//! | `#[subscribe("events.…")]` | the pattern, with its NATS wildcards | `receive` |
//! | `#[command]` `{c}` | `commands.{service}.{c}` (JetStream work queue `COMMANDS`) | `receive`; `send` of progress on `commands.progress.{command_id}` and of the outcome on `commands.callback.{command_id}` |
//!
//! Events a service publishes are not in its descriptor, so they are not in the document.
//!
//! Schemas: the request envelope carries the method's parameters as `params`, the response
//! envelope its result as `result` (for an exclusive method, inside the exclusive reply);
//! a bare JSON call sends the parameters themselves and gets the result itself, or the
//! ADR-32 headers `Nats-Service-Error` and `Nats-Service-Error-Code`. The JSON Schemas of
//! the descriptor (2020-12, from schemars) are moved into `components.schemas`, their
//! `$defs` hoisted beside them, references rewritten, clashing names made distinct, and
//! `prefixItems` given in draft 07's words, the base of the AsyncAPI Schema Object.
//! Messages name their NATS headers too (trace context, the instance and term of an
//! exclusive reply). Operations carry the extensions `x-aegis-exclusive`, `x-aegis-builtin` (RPC),
//! `x-aegis-mode` and `x-aegis-durable` (subscriptions).
//!
//! ```
//! use aegis_runtime::service;
//! use aegis_runtime::asyncapi::AsyncApi;
//!
//! struct Echo;
//!
//! #[service(name = "echo-asyncapi", version = "1.2.0")]
//! impl Echo {
//!     #[rpc]
//!     async fn ping(&self) -> String { "pong".into() }
//! }
//!
//! let descriptor = aegis_runtime::linked_services()?
//!     .into_iter()
//!     .find(|s| s.name == "echo-asyncapi")
//!     .expect("linked");
//! let document = AsyncApi::new()
//!     .service(&descriptor)
//!     .server("production", "nats://nats.example.com:4222")
//!     .build();
//! assert_eq!(document["asyncapi"], "3.0.0");
//! assert_eq!(document["info"]["version"], "1.2.0");
//! assert_eq!(document["channels"]["echo-asyncapi.rpc.ping"]["address"], "rpc.echo-asyncapi.ping");
//! assert_eq!(document["servers"]["production"]["host"], "nats.example.com:4222");
//! # Ok::<(), aegis_runtime::DuplicateService>(())
//! ```

mod envelopes;
mod schemas;

use serde_json::{Map, Value, json};

use crate::runner::{DESCRIBE_METHOD, HEALTH_METHOD, HealthReport, STATUS_METHOD, StatusReport};
use crate::service::{MethodDescriptor, NoParams, ServiceDescriptor, SubscribeMode};
use schemas::Schemas;

/// The AsyncAPI version of the documents.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// Content type of the Aegis envelopes.
const MSGPACK: &str = "application/msgpack";
/// Content type of bare JSON calls.
const JSON: &str = "application/json";

/// Version of the NATS operation binding.
const NATS_BINDING_VERSION: &str = "0.1.0";

/// A builder of an AsyncAPI 3.0 document: the services it describes and the servers they
/// run on.
///
/// ```
/// use aegis_runtime::asyncapi::AsyncApi;
///
/// let document = AsyncApi::new()
///     .title("Shop")
///     .version("2026.12")
///     .server("local", "nats://127.0.0.1:4222")
///     .build();
/// assert_eq!(document["info"]["title"], "Shop");
/// assert_eq!(document["servers"]["local"]["protocol"], "nats");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AsyncApi {
    services: Vec<ServiceDescriptor>,
    servers: Vec<(String, String)>,
    title: Option<String>,
    version: Option<String>,
}

impl AsyncApi {
    /// An empty document: no service, no server.
    ///
    /// ```
    /// let document = aegis_runtime::asyncapi::AsyncApi::new().build();
    /// assert_eq!(document["channels"], serde_json::json!({}));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service: its methods, subscriptions and commands, and the built-in methods
    /// every instance answers.
    ///
    /// ```
    /// use aegis_runtime::asyncapi::AsyncApi;
    /// use aegis_runtime::{linked_services, service};
    ///
    /// struct Quiet;
    ///
    /// #[service(name = "quiet", version = "0.1.0")]
    /// impl Quiet {
    ///     #[rpc]
    ///     async fn ping(&self) {}
    /// }
    ///
    /// let descriptor = linked_services()?.into_iter().find(|s| s.name == "quiet").expect("linked");
    /// let document = AsyncApi::new().service(&descriptor).build();
    /// assert_eq!(document["info"]["title"], "quiet");
    /// assert!(document["operations"]["quiet.rpc.aegis_status"].is_object());
    /// # Ok::<(), aegis_runtime::DuplicateService>(())
    /// ```
    pub fn service(mut self, descriptor: &ServiceDescriptor) -> Self {
        self.services.push(descriptor.clone());
        self
    }

    /// Adds a server the services run on, by name and NATS URL (`nats://host:port`,
    /// `tls://host:port`, `ws://…`, `wss://…`, or `host:port`). Credentials in the URL are
    /// left out of the document. The names of the document's servers are its keys: a
    /// second server of one name replaces the first.
    ///
    /// ```
    /// use aegis_runtime::asyncapi::AsyncApi;
    ///
    /// let document = AsyncApi::new()
    ///     .server("secure", "tls://user:secret@nats.example.com:4443")
    ///     .build();
    /// let server = &document["servers"]["secure"];
    /// assert_eq!(server["host"], "nats.example.com:4443");
    /// assert_eq!(server["protocol"], "nats");
    /// assert!(!document.to_string().contains("secret"));
    ///
    /// let websocket = AsyncApi::new().server("browser", "wss://nats.example.com/ws").build();
    /// assert_eq!(websocket["servers"]["browser"]["pathname"], "/ws");
    /// assert_eq!(websocket["servers"]["browser"]["protocol"], "wss");
    /// ```
    pub fn server(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        let name = name.into();
        self.servers.retain(|(existing, _)| *existing != name);
        self.servers.push((name, url.into()));
        self
    }

    /// Sets `info.title` (default: the names of the services).
    ///
    /// ```
    /// let document = aegis_runtime::asyncapi::AsyncApi::new().title("Shop").build();
    /// assert_eq!(document["info"]["title"], "Shop");
    /// ```
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets `info.version` (default: the version of the service, or of each service).
    ///
    /// ```
    /// let document = aegis_runtime::asyncapi::AsyncApi::new().version("3.1.0").build();
    /// assert_eq!(document["info"]["version"], "3.1.0");
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The document, as JSON.
    ///
    /// ```
    /// let document = aegis_runtime::asyncapi::AsyncApi::new().build();
    /// assert_eq!(document["asyncapi"], "3.0.0");
    /// assert_eq!(document["defaultContentType"], "application/msgpack");
    /// ```
    #[must_use]
    pub fn build(&self) -> Value {
        let mut document = Document::default();
        for service in &self.services {
            document.service(service);
        }
        let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        let title = self
            .title
            .clone()
            .unwrap_or_else(|| match names.as_slice() {
                [] => "Aegis services".to_owned(),
                names => names.join(", "),
            });
        let version = self
            .version
            .clone()
            .unwrap_or_else(|| match self.services.as_slice() {
                [] => "0.0.0".to_owned(),
                [one] => one.version.clone(),
                many => many
                    .iter()
                    .map(|s| format!("{} {}", s.name, s.version))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        let mut servers = Map::new();
        for (name, url) in &self.servers {
            servers.insert(schemas::sanitize(name), server(url));
        }
        let mut components = Map::new();
        components.insert("schemas".into(), document.schemas.into_value());
        components.insert("messages".into(), Value::Object(document.messages));
        let mut document = json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": title,
                "version": version,
                "description": "Made by Aegis from the service descriptor. RPC envelopes are \
                    MessagePack maps (JSON is accepted too: a receiver looks at the first \
                    byte); bare JSON calls send the parameters as plain JSON. See \
                    https://github.com/aegis-rs/aegis/blob/main/docs/asyncapi.md.",
            },
            "defaultContentType": MSGPACK,
            "channels": document.channels,
            "operations": document.operations,
            "components": components,
        });
        if !servers.is_empty() {
            document["servers"] = Value::Object(servers);
        }
        document
    }
}

impl ServiceDescriptor {
    /// The [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
    /// document of this service, without servers (add them with [`AsyncApi::server`]).
    ///
    /// ```
    /// use aegis_runtime::service;
    ///
    /// struct Orders;
    ///
    /// #[service(name = "orders-asyncapi")]
    /// impl Orders {
    ///     #[exclusive_rpc]
    ///     async fn place(&self) -> u32 { 7 }
    /// }
    ///
    /// let descriptor = aegis_runtime::linked_services()?
    ///     .into_iter()
    ///     .find(|s| s.name == "orders-asyncapi")
    ///     .expect("linked");
    /// let document = descriptor.asyncapi();
    /// let operation = &document["operations"]["orders-asyncapi.rpc.place"];
    /// assert_eq!(operation["action"], "receive");
    /// assert_eq!(operation["x-aegis-exclusive"], true);
    /// assert!(document.get("servers").is_none());
    /// # Ok::<(), aegis_runtime::DuplicateService>(())
    /// ```
    #[must_use]
    pub fn asyncapi(&self) -> Value {
        AsyncApi::new().service(self).build()
    }
}

/// A server object from a URL.
fn server(url: &str) -> Value {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    // No credentials.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (host, pathname) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (protocol, description) = match scheme {
        "tls" => ("nats", "NATS over TLS."),
        "ws" => ("ws", "NATS over WebSocket."),
        "wss" => ("wss", "NATS over WebSocket with TLS."),
        _ => ("nats", "NATS."),
    };
    let mut server = json!({ "host": host, "protocol": protocol, "description": description });
    if !matches!(pathname, "" | "/") {
        server["pathname"] = json!(pathname);
    }
    server
}

/// A reference to `#/{path…}`, each part escaped as a JSON pointer token.
fn reference(path: &[&str]) -> Value {
    let escaped: Vec<String> = path
        .iter()
        .map(|part| part.replace('~', "~0").replace('/', "~1"))
        .collect();
    json!({ "$ref": format!("#/{}", escaped.join("/")) })
}

/// A schema that is `schema` or null.
fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, {"type": "null"}] })
}

/// `base` with `properties` laid over it.
fn refine(base: &Value, properties: Value) -> Value {
    json!({ "allOf": [base, {"properties": properties}] })
}

/// The root schema of `T`, as the descriptors hold them.
fn schema_of<T: schemars::JsonSchema>() -> Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The parts of a document under construction.
#[derive(Default)]
struct Document {
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
    schemas: Schemas,
    /// References to the envelope schemas, once added.
    envelopes: Option<Envelopes>,
}

/// References to the envelope schemas in `components.schemas`.
struct Envelopes {
    request: Value,
    response: Value,
    exclusive: Value,
    event: Value,
    command: Value,
    progress: Value,
    callback: Value,
    service_error: Value,
    request_headers: Value,
    reply_headers: Value,
}

/// What kind of RPC method a channel is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Exclusive,
    Builtin,
}

impl Document {
    fn envelopes(&mut self) -> &Envelopes {
        let schemas = &mut self.schemas;
        self.envelopes.get_or_insert_with(|| Envelopes {
            request: schemas.named("AegisRpcRequest", envelopes::rpc_request()),
            response: schemas.named("AegisRpcResponse", envelopes::rpc_response()),
            exclusive: schemas.named("AegisExclusiveReply", envelopes::exclusive_reply()),
            event: schemas.named("AegisEvent", envelopes::event()),
            command: schemas.named("AegisCommand", envelopes::command()),
            progress: schemas.named("AegisCommandProgress", envelopes::command_progress()),
            callback: schemas.named("AegisCommandCallback", envelopes::command_callback()),
            service_error: schemas.named("AegisServiceError", envelopes::service_error_headers()),
            request_headers: schemas.named("AegisRequestHeaders", envelopes::request_headers()),
            reply_headers: schemas.named("AegisReplyHeaders", envelopes::reply_headers()),
        })
    }

    fn service(&mut self, service: &ServiceDescriptor) {
        for method in &service.rpcs {
            let kind = if method.exclusive {
                Kind::Exclusive
            } else {
                Kind::Plain
            };
            self.rpc(&service.name, method, kind);
        }
        let no_params = schema_of::<NoParams>();
        let builtins = [
            (STATUS_METHOD, schema_of::<StatusReport>()),
            (HEALTH_METHOD, schema_of::<HealthReport>()),
            (DESCRIBE_METHOD, schema_of::<ServiceDescriptor>()),
        ];
        for (name, response) in builtins {
            let method = MethodDescriptor {
                name: name.to_owned(),
                exclusive: false,
                request: no_params.clone(),
                response,
            };
            self.rpc(&service.name, &method, Kind::Builtin);
        }
        for subscription in &service.subscriptions {
            self.subscription(&service.name, subscription);
        }
        for event in &service.publishes {
            self.published(&service.name, event);
        }
        for command in &service.commands {
            self.command(&service.name, command);
        }
    }

    /// An RPC method: its channels (any instance, one instance, the reply), messages
    /// (envelopes and bare JSON) and operations.
    fn rpc(&mut self, service: &str, method: &MethodDescriptor, kind: Kind) {
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

    /// An event subscription: a channel on its pattern and a `receive` operation.
    /// A domain event the service publishes (`#[service(publishes = [...])]`): its subject
    /// as a channel, with a `send` operation.
    fn published(&mut self, service: &str, event: &crate::service::PublishedEventDescriptor) {
        let (domain, event_type) = (event.domain.as_str(), event.event_type.as_str());
        let key = format!("{service}.publish.{domain}.{event_type}");
        let base = self.envelopes().event.clone();
        let payload = self.schemas.root(&format!("{key}.payload"), &event.payload);
        self.messages.insert(
            format!("{key}.event"),
            json!({
                "name": "event",
                "title": format!("{domain} {event_type}"),
                "summary": "The event envelope, `payload` holding the event data.",
                "description": "MessagePack by default; JSON is accepted too.",
                "contentType": MSGPACK,
                "payload": refine(&base, json!({
                    "domain": {"const": domain},
                    "event_type": {"const": event_type},
                    "payload": payload,
                })),
            }),
        );
        let subject = event.subject();
        self.channels.insert(
            key.clone(),
            json!({
                "address": subject,
                "title": format!("{domain} {event_type} events"),
                "description": format!(
                    "Events `{event_type}` of the domain `{domain}`, kept by the JetStream \
                     stream `EVENTS`."
                ),
                "messages": {"event": reference(&["components", "messages", &format!("{key}.event")])},
            }),
        );
        self.operations.insert(
            key.clone(),
            json!({
                "action": "send",
                "channel": reference(&["channels", &key]),
                "title": format!("{service} publishes {domain}.{event_type}"),
                "summary": format!("{service} publishes events on `{subject}`."),
                "tags": [{"name": "event"}],
                "messages": [reference(&["channels", &key, "messages", "event"])],
            }),
        );
    }

    fn subscription(
        &mut self,
        service: &str,
        subscription: &crate::service::SubscriptionDescriptor,
    ) {
        let method = subscription.method.as_str();
        let key = format!("{service}.event.{method}");
        let base = self.envelopes().event.clone();
        let payload = self
            .schemas
            .root(&format!("{key}.payload"), &subscription.payload);
        self.messages.insert(
            format!("{key}.event"),
            json!({
                "name": "event",
                "title": format!("Event for {method}"),
                "summary": "The event envelope, `payload` holding the event data.",
                "description": "MessagePack by default; JSON is accepted too.",
                "contentType": MSGPACK,
                "payload": refine(&base, json!({ "payload": payload })),
            }),
        );
        let (mode, who) = match subscription.mode {
            SubscribeMode::Compete => ("compete", "one instance of the service handles each event"),
            SubscribeMode::Broadcast => ("broadcast", "every instance handles every event"),
        };
        let durable = match &subscription.durable {
            Some(name) => format!(
                " Durable consumer `{name}`: events published while no instance runs are delivered when one starts."
            ),
            None => String::new(),
        };
        self.channels.insert(
            key.clone(),
            json!({
                "address": subscription.pattern,
                "title": format!("{service} subscription {method}"),
                "description": format!(
                    "Events on the NATS subject pattern `{}` (`*` stands for one token, a final \
                     `>` for one or more), delivered from the JetStream stream `EVENTS`; {mode}: \
                     {who}.{durable}",
                    subscription.pattern
                ),
                "messages": {"event": reference(&["components", "messages", &format!("{key}.event")])},
            }),
        );
        self.operations.insert(
            key.clone(),
            json!({
                "action": "receive",
                "channel": reference(&["channels", &key]),
                "title": format!("{service}.{method}"),
                "summary": format!("{service} handles events on `{}` with `{method}`.", subscription.pattern),
                "tags": [{"name": "event"}],
                "messages": [reference(&["channels", &key, "messages", "event"])],
                "x-aegis-mode": mode,
                "x-aegis-durable": subscription.durable,
            }),
        );
    }

    /// A command: its channel and `receive` operation, and the `send` operations of its
    /// progress and outcome.
    fn command(&mut self, service: &str, command: &MethodDescriptor) {
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
