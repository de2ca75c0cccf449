//! `aegis call` and `aegis schema`: talking to a running service.
//!
//! What a service offers is read from its own `$SRV.INFO` answer: its methods, which of them
//! are exclusive, their schemas. So a call needs no `--exclusive`, and a method the service
//! does not have is reported as such, with the ones it has.

use std::time::Duration;

use aegis_runtime::client::{CallOptions, decode_reply};
use aegis_runtime::codec::{self, RpcRequest, headers};
use aegis_runtime::runner::{HEALTH_METHOD, MicroEndpointInfo, MicroInfo, STATUS_METHOD};
use aegis_runtime::service::PublishedEventDescriptor;
use aegis_runtime::subject::{self, InstanceId, MethodName, ServiceName};
use aegis_runtime::{CallErrorKind, ServiceClient, TransportError};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::output::{self, Format};

/// How long a service may take to answer `$SRV.INFO`.
const INFO_TIMEOUT: Duration = Duration::from_secs(3);

/// The endpoint metadata key that marks an exclusive method (set by the runtime's micro
/// INFO answer).
const EXCLUSIVE_METADATA: &str = "exclusive";

/// `aegis call <service> <method> '<json>'`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service.
    service: String,
    /// The method.
    method: String,
    /// The parameters, a JSON object.
    #[arg(default_value = "{}")]
    params: String,
    /// Call this instance only (its own subject), not any instance.
    #[arg(long)]
    instance: Option<String>,
    /// Treat the method as exclusive: only needed for a service that does not answer
    /// `$SRV.INFO` (Aegis services tell there which methods are exclusive, and that wins).
    #[arg(long)]
    exclusive: bool,
    /// The call's deadline, in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[command(flatten)]
    format: Format,
}

impl Args {
    pub(crate) fn format(&self) -> Format {
        self.format
    }
}

/// What a call returned, and who ran it when that is known.
struct Served {
    result: Value,
    /// The instance that ran it (exclusive calls, and calls addressed to one instance).
    by: Option<String>,
    /// The fencing term it ran under (calls addressed to one instance, exclusive methods).
    term: Option<u64>,
}

pub(crate) async fn run(nats: &async_nats::Client, args: Args) -> Result<(), CliError> {
    let params: Value =
        codec::decode_value(args.params.as_bytes()).map_err(|source| CliError::ParamsNotJson {
            params: args.params.clone(),
            source,
        })?;
    if !params.is_object() {
        return Err(CliError::ParamsNotObject {
            params: params.to_string(),
        });
    }
    let timeout = Duration::try_from_secs_f64(args.timeout).map_err(|_| CliError::BadSeconds {
        flag: "--timeout",
        value: args.timeout,
    })?;
    let service = ServiceName::new(args.service.as_str())?;
    let method = MethodName::new(args.method.as_str())?;
    let info = info(nats, &service).await?;
    let exclusive = match &info {
        // The service knows best: a plain method called with --exclusive would otherwise
        // have its reply read as an exclusive one, and fail.
        Some(info) => endpoint(info, &method)?.is_some_and(is_exclusive),
        // A service that does not answer $SRV.INFO (an SDK without it): the flag decides.
        None => args.exclusive,
    };
    let options = if exclusive {
        CallOptions::exclusive()
    } else {
        CallOptions::rpc()
    };
    let served = match &args.instance {
        Some(instance) => {
            let instance = InstanceId::new(instance.as_str())?;
            call_instance(
                nats, &service, &method, &instance, &params, timeout, options,
            )
            .await?
        }
        None => {
            let client =
                ServiceClient::for_service(nats.clone(), service.clone()).with_timeout(timeout);
            let result = client
                .call_with_options::<_, Value>(method.as_str(), &params, options)
                .await
                .map_err(|err| match err.kind() {
                    // Nobody answered the service's subjects, and nobody answered its
                    // INFO either: there is no such service running.
                    CallErrorKind::NoResponders if info.is_none() => CliError::NotRunning {
                        service: service.to_string(),
                        subject: subject::rpc(&service, &method),
                    },
                    _ => CliError::Call(err),
                })?;
            Served {
                result,
                by: exclusive
                    .then(|| client.active_instance())
                    .flatten()
                    .map(|id| id.to_string()),
                term: None,
            }
        }
    };
    if args.format.json {
        return output::json(&json!({
            "service": service.as_str(),
            "method": method.as_str(),
            "exclusive": exclusive,
            "result": served.result,
            "served_by": served.by,
            "term": served.term,
        }));
    }
    output::json(&served.result)?;
    match (served.by, served.term, args.instance.is_some()) {
        (Some(by), Some(term), true) => eprintln!("served by {by} under term {term}"),
        (Some(by), None, true) => eprintln!("served by {by}"),
        (Some(by), _, false) => eprintln!("served by the active instance {by}"),
        (None, ..) => {}
    }
    Ok(())
}

/// Calls one instance through its own subject; the reply is read as the runtime's client
/// reads every reply.
async fn call_instance(
    nats: &async_nats::Client,
    service: &ServiceName,
    method: &MethodName,
    instance: &InstanceId,
    params: &Value,
    timeout: Duration,
    options: CallOptions,
) -> Result<Served, CliError> {
    let subject = subject::rpc_instance(service, instance, method);
    let failed = |kind| CliError::InstanceCall {
        service: service.to_string(),
        method: method.to_string(),
        instance: instance.to_string(),
        kind: Box::new(kind),
    };
    let request = RpcRequest::new(method.as_str(), params).with_timeout(timeout.as_secs_f64());
    let payload = codec::encode(&request).map_err(|e| failed(CallErrorKind::Encode(e)))?;
    let reply = nats
        .send_request(
            subject.clone(),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => CliError::InstanceNotRunning {
                service: service.to_string(),
                instance: instance.to_string(),
                subject: subject.clone(),
            },
            async_nats::RequestErrorKind::TimedOut => failed(CallErrorKind::Timeout(timeout)),
            _ => failed(CallErrorKind::Transport(TransportError::new(e))),
        })?;
    let term = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::TERM))
        .and_then(|t| t.as_str().parse().ok());
    let result = decode_reply::<Value>(&reply.payload, &options).map_err(failed)?;
    Ok(Served {
        result,
        by: Some(instance.to_string()),
        term,
    })
}

/// The service's `$SRV.INFO` answer (from any one instance); `None` when no instance
/// answers it in time.
async fn info(
    nats: &async_nats::Client,
    service: &ServiceName,
) -> Result<Option<MicroInfo>, CliError> {
    let request = async_nats::Request::new().timeout(Some(INFO_TIMEOUT));
    match nats
        .send_request(subject::micro_info(service), request)
        .await
    {
        Ok(reply) => serde_json::from_slice(&reply.payload)
            .map(Some)
            .map_err(|source| CliError::Decode {
                what: format!("$SRV.INFO answer of {service}"),
                source: Box::new(source),
            }),
        Err(err) => match err.kind() {
            async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut => {
                Ok(None)
            }
            _ => Err(CliError::Request {
                what: format!("ask {service} for its methods"),
                source: err,
            }),
        },
    }
}

/// The endpoint of `method` in `info`; `None` for a built-in method (every instance has
/// them, INFO does not list them).
///
/// # Errors
/// [`CliError::UnknownMethod`], naming the methods the service has.
fn endpoint<'a>(
    info: &'a MicroInfo,
    method: &MethodName,
) -> Result<Option<&'a MicroEndpointInfo>, CliError> {
    // INFO lists commands too (kind `command`): they are sent to a stream, not called.
    let callable = || info.endpoints.iter().filter(|e| !is_command(e));
    if let Some(endpoint) = callable().find(|e| e.name == method.as_str()) {
        return Ok(Some(endpoint));
    }
    if [STATUS_METHOD, HEALTH_METHOD].contains(&method.as_str()) {
        return Ok(None);
    }
    // Instances before `kind` did not list the built-ins: add them, once.
    let mut methods: std::collections::BTreeSet<String> =
        callable().map(|e| e.name.clone()).collect();
    methods.extend([STATUS_METHOD.to_owned(), HEALTH_METHOD.to_owned()]);
    Err(CliError::UnknownMethod {
        service: info.name.clone(),
        method: method.to_string(),
        methods: methods.into_iter().collect(),
    })
}

/// Whether INFO lists `endpoint` as a command (metadata `kind`).
fn is_command(endpoint: &MicroEndpointInfo) -> bool {
    endpoint
        .metadata
        .get("kind")
        .is_some_and(|kind| kind == "command")
}

fn is_exclusive(endpoint: &MicroEndpointInfo) -> bool {
    endpoint
        .metadata
        .get(EXCLUSIVE_METADATA)
        .is_some_and(|value| value == "true")
}

/// The domain events `service` declares it publishes, from its `aegis_describe`; none for
/// a service without it (a Python SDK service, an older instance).
async fn published_events(
    nats: &async_nats::Client,
    service: &ServiceName,
) -> Vec<PublishedEventDescriptor> {
    match crate::asyncapi::describe(nats, service).await {
        Ok(descriptor) => descriptor.publishes,
        Err(err) => {
            tracing::debug!(%err, "no descriptor: no published events shown");
            Vec::new()
        }
    }
}

/// `aegis schema <service>`: the methods and JSON Schemas from the service's `$SRV.INFO`,
/// and the domain events it declares it publishes.
pub(crate) async fn schema(
    nats: &async_nats::Client,
    service: &str,
    format: Format,
) -> Result<(), CliError> {
    let service = ServiceName::new(service)?;
    let Some(info) = info(nats, &service).await? else {
        return Err(CliError::NotRunning {
            subject: subject::micro_info(&service),
            service: service.to_string(),
        });
    };
    let parse = |endpoint: &MicroEndpointInfo, key: &str| {
        endpoint
            .metadata
            .get(key)
            .and_then(|s| codec::decode_value(s.as_bytes()).ok())
            .unwrap_or(Value::Null)
    };
    if format.json {
        let methods: Vec<Value> = info
            .endpoints
            .iter()
            .map(|endpoint| {
                json!({
                    "name": endpoint.name,
                    "kind": endpoint.metadata.get("kind"),
                    "subject": endpoint.subject,
                    "exclusive": is_exclusive(endpoint),
                    "request": parse(endpoint, "request_schema"),
                    "response": parse(endpoint, "response_schema"),
                })
            })
            .collect();
        return output::json(&json!({
            "service": info.name,
            "version": info.version,
            "methods": methods,
            "events": published_events(nats, &service).await.into_iter().map(|event| json!({
                "subject": event.subject(),
                "domain": event.domain,
                "event_type": event.event_type,
                "payload": event.payload,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut out = serde_json::Map::new();
    for endpoint in &info.endpoints {
        // A command and an RPC may share a name: the command is shown as `command:{name}`.
        let name = if is_command(endpoint) {
            format!("command:{}", endpoint.name)
        } else {
            endpoint.name.clone()
        };
        out.insert(
            name,
            json!({
                "subject": endpoint.subject,
                "exclusive": is_exclusive(endpoint),
                "request": parse(endpoint, "request_schema"),
                "response": parse(endpoint, "response_schema"),
            }),
        );
    }
    for event in published_events(nats, &service).await {
        out.insert(
            format!("event:{}.{}", event.domain, event.event_type),
            json!({ "subject": event.subject(), "payload": event.payload }),
        );
    }
    output::json(&Value::Object(out))
}
