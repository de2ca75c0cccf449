//! `aegis asyncapi <service>`: the AsyncAPI 3.0 document of a running service.
//!
//! The service describes itself through the built-in `aegis_describe` method (its
//! `ServiceDescriptor`, with the JSON Schemas of its methods); the document is made from
//! that by the runtime's `AsyncApi`, the same as `ServiceDescriptor::asyncapi` offline.

use std::time::Duration;

use aegis_runtime::ServiceDescriptor;
use aegis_runtime::asyncapi::AsyncApi;
use aegis_runtime::client::{CallOptions, decode_reply};
use aegis_runtime::codec::{self, RpcRequest};
use aegis_runtime::runner::DESCRIBE_METHOD;
use aegis_runtime::service::NoParams;
use aegis_runtime::subject::{self, MethodName, ServiceName};

use crate::error::CliError;
use crate::output;

/// How long the service may take to describe itself.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `aegis asyncapi <service> [--doc-server NAME=URL]…`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service.
    service: String,
    /// A server to list in the document's `servers`, as NAME=URL (e.g.
    /// `production=nats://nats.example.com:4222`); repeat for more. Default: none, so
    /// that no address of the connection (nor its credentials) ends up in a document meant
    /// for others. (`--server` is where this command connects.)
    #[arg(long = "doc-server", value_name = "NAME=URL", value_parser = parse_server)]
    doc_servers: Vec<(String, String)>,
    /// The document's `info.title` (default: the service name).
    #[arg(long)]
    title: Option<String>,
}

/// `NAME=URL`, both non-empty.
fn parse_server(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!(
            "expected NAME=URL, like production=nats://nats.example.com:4222; got {value:?}"
        )),
    }
}

pub(crate) async fn run(nats: &async_nats::Client, args: Args) -> Result<(), CliError> {
    let service = ServiceName::new(args.service.as_str())?;
    let descriptor = describe(nats, &service).await?;
    let mut api = AsyncApi::new().service(&descriptor);
    for (name, url) in args.doc_servers {
        api = api.server(name, url);
    }
    if let Some(title) = args.title {
        api = api.title(title);
    }
    output::json(&api.build())
}

/// The service's descriptor, from any one instance's `aegis_describe`.
pub(crate) async fn describe(
    nats: &async_nats::Client,
    service: &ServiceName,
) -> Result<ServiceDescriptor, CliError> {
    let method = MethodName::new(DESCRIBE_METHOD)?;
    let subject = subject::rpc(service, &method);
    let what = || format!("{DESCRIBE_METHOD} answer of {service}");
    let request = RpcRequest::new(DESCRIBE_METHOD, NoParams)
        .with_target(service.as_str())
        .with_timeout(DESCRIBE_TIMEOUT.as_secs_f64());
    let payload = codec::encode(&request).map_err(|source| CliError::Decode {
        what: what(),
        source: Box::new(source),
    })?;
    let reply = nats
        .send_request(
            subject.clone(),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(DESCRIBE_TIMEOUT)),
        )
        .await
        .map_err(|err| match err.kind() {
            async_nats::RequestErrorKind::NoResponders => CliError::NotRunning {
                service: service.to_string(),
                subject: subject.clone(),
            },
            _ => CliError::Request {
                what: format!("ask {service} to describe itself"),
                source: err,
            },
        })?;
    decode_reply(&reply.payload, &CallOptions::rpc()).map_err(|kind| CliError::Decode {
        what: what(),
        source: Box::new(kind),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_server;

    #[test]
    fn a_server_is_name_equals_url() {
        assert_eq!(
            parse_server("prod=nats://a:4222"),
            Ok(("prod".to_owned(), "nats://a:4222".to_owned()))
        );
        assert!(parse_server("nats://a:4222").is_err());
        assert!(parse_server("=nats://a:4222").is_err());
        assert!(parse_server("prod=").is_err());
    }
}
