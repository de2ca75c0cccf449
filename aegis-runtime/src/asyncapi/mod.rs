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
//! | a domain event in `#[service(publishes = [...])]` | `events.{domain}.{event_type}` | `send` |
//! | `#[command]` `{c}` | `commands.{service}.{c}` (JetStream work queue `COMMANDS`) | `receive`; `send` of progress on `commands.progress.{command_id}` and of the outcome on `commands.callback.{command_id}` |
//!
//! Events a handler publishes ad hoc (`ctx.publish(domain, type, …)`) are not in its
//! descriptor, so they are not in the document; declared [domain events](crate::DomainEvent)
//! are.
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

mod commands;
mod envelopes;
mod events;
mod rpc;
mod schemas;

use serde_json::{Map, Value, json};

use crate::runner::{DESCRIBE_METHOD, HEALTH_METHOD, HealthReport, STATUS_METHOD, StatusReport};
use crate::service::{MethodDescriptor, NoParams, ServiceDescriptor};
use rpc::Kind;
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
}
