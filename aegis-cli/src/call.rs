//! `aegis call` and `aegis schema`: talking to a running service.

use std::time::Duration;

use aegis_runtime::client::CallOptions;
use aegis_runtime::codec::{self, ExclusiveReply, RpcRequest, RpcResponse, headers};
use aegis_runtime::{CallErrorKind, ServiceClient};
use serde_json::Value;

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
    /// The method is exclusive: unwrap its reply, retry NOT_ACTIVE until the deadline.
    #[arg(long)]
    exclusive: bool,
    /// The call's deadline, in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

pub(crate) async fn run(nats: &async_nats::Client, args: Args) -> Result<(), String> {
    let params: Value = codec::decode_value(args.params.as_bytes())
        .map_err(|e| format!("the parameters are not JSON ({e}): {}", args.params))?;
    if !params.is_object() {
        return Err(format!(
            "the parameters must be a JSON object, like '{{\"order_id\": \"ORD-1\"}}'; got {params}"
        ));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|_| format!("--timeout {} is not a duration in seconds", args.timeout))?;
    if let Some(instance) = &args.instance {
        return call_instance(nats, &args, instance, &params, timeout).await;
    }
    let client = ServiceClient::new(nats.clone(), &args.service)
        .map_err(|e| e.to_string())?
        .with_timeout(timeout);
    let options = if args.exclusive {
        CallOptions::exclusive()
    } else {
        CallOptions::rpc()
    };
    match client
        .call_with_options::<_, Value>(&args.method, &params, options)
        .await
    {
        Ok(result) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            if args.exclusive
                && let Some(leader) = client.active_instance()
            {
                eprintln!("served by the active instance {leader}");
            }
            Ok(())
        }
        Err(err) => Err(match err.kind() {
            CallErrorKind::NoResponders => format!(
                "{err}; is {} running? (see `aegis services`; exclusive methods need --exclusive)",
                args.service
            ),
            _ => err.to_string(),
        }),
    }
}

/// Calls one instance through its own subject and prints who answered and under which term.
async fn call_instance(
    nats: &async_nats::Client,
    args: &Args,
    instance: &str,
    params: &Value,
    timeout: Duration,
) -> Result<(), String> {
    let subject = format!("rpc.{}.{instance}.{}", args.service, args.method);
    let request = RpcRequest::new(args.method.as_str(), params).with_timeout(timeout.as_secs_f64());
    let payload = codec::encode(&request).map_err(|e| e.to_string())?;
    let reply = nats
        .send_request(
            subject.clone(),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                format!("nobody serves {subject}: is instance {instance} running?")
            }
            _ => format!("calling {subject}: {e}"),
        })?;
    let term = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::TERM))
        .map(|t| t.as_str().to_owned());
    let result = if args.exclusive {
        let response: RpcResponse<ExclusiveReply<Value>> =
            codec::decode(&reply.payload).map_err(|e| e.to_string())?;
        let nested = response
            .into_result()?
            .ok_or("the reply of an exclusive method has no exclusive reply in it")?;
        if nested.is_not_active() {
            return Err(format!(
                "NOT_ACTIVE: {}",
                nested.message.unwrap_or_default()
            ));
        }
        nested.into_result()?
    } else {
        let response: RpcResponse<Value> =
            codec::decode(&reply.payload).map_err(|e| e.to_string())?;
        response.into_result()?
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&result.unwrap_or(Value::Null)).unwrap_or_default()
    );
    match term {
        Some(term) => eprintln!("served by {instance} under term {term}"),
        None => eprintln!("served by {instance}"),
    }
    Ok(())
}

/// `aegis schema <service>`: the endpoints and JSON Schemas from `$SRV.INFO.{service}`.
pub(crate) async fn schema(nats: &async_nats::Client, service: &str) -> Result<(), String> {
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        nats.request(format!("$SRV.INFO.{service}"), "".into()),
    )
    .await
    .map_err(|_| format!("no running instance of {service} answered in 3 s"))?
    .map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            format!("no running instance of {service} (see `aegis services`)")
        }
        _ => e.to_string(),
    })?;
    let info: Value = codec::decode_value(&reply.payload)
        .map_err(|e| format!("the service's INFO does not decode: {e}"))?;
    let mut out = serde_json::Map::new();
    for endpoint in info["endpoints"].as_array().into_iter().flatten() {
        let name = endpoint["name"].as_str().unwrap_or_default().to_owned();
        let metadata = &endpoint["metadata"];
        let parse = |key: &str| {
            metadata[key]
                .as_str()
                .and_then(|s| codec::decode_value(s.as_bytes()).ok())
                .unwrap_or(Value::Null)
        };
        out.insert(
            name,
            serde_json::json!({
                "subject": endpoint["subject"],
                "request": parse("request_schema"),
                "response": parse("response_schema"),
            }),
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
    );
    Ok(())
}
