//! An echo service and a client, over a nats-server this program starts itself.
//!
//! Run with: `cargo run -p aegis-examples --bin echo` (or `scripts/demo`).
//!
//! Two instances of the `echo` service serve `rpc.echo.say` in one queue group, so NATS
//! spreads the calls over them; the client sends Aegis RPC envelopes (MessagePack, the
//! Python SDK's format) and prints who answered and how long it took.

#![allow(clippy::print_stdout)] // an example: it prints what happens for the person running it

use std::time::{Duration, Instant};

use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
use aegis_runtime::subject::{self, InstanceId, MethodName, ServiceName};
use aegis_runtime::testing::NatsServer;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// What the client sends: the `params` map of the request.
#[derive(Debug, Serialize, Deserialize)]
struct Say {
    text: String,
}

/// What an instance answers: the `result` of the response.
#[derive(Debug, Serialize, Deserialize)]
struct Echoed {
    text: String,
    instance_id: String,
}

/// Serves `rpc.echo.say` as one instance until the connection closes.
async fn serve(client: async_nats::Client, service: ServiceName) -> Result<(), async_nats::Error> {
    let instance = InstanceId::generate(&service);
    let method = MethodName::new("say")?;
    let mut requests = client
        .queue_subscribe(
            subject::rpc(&service, &method),
            subject::rpc_queue_group(&service),
        )
        .await?;
    tracing::info!(%instance, "echo instance serving");
    while let Some(message) = requests.next().await {
        let Some(reply_to) = message.reply else {
            continue;
        };
        let response = match codec::decode::<RpcRequest<Say>>(&message.payload) {
            Ok(request) => {
                let echoed = Echoed {
                    text: request.params.text.clone(),
                    instance_id: instance.to_string(),
                };
                codec::encode(&RpcResponse::ok(&request, echoed))?
            }
            Err(err) => {
                let unknown = RpcRequest::new("say", ());
                codec::encode(&RpcResponse::<()>::err(&unknown, err.to_string()))?
            }
        };
        client.publish(reply_to, response.into()).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .init();

    let server = NatsServer::start().await?;
    println!(
        "nats-server {} running at {}",
        server.pid().unwrap_or_default(),
        server.url()
    );

    let service = ServiceName::new("echo")?;
    for _ in 0..2 {
        let connection = server.connect().await?;
        connection.flush().await?;
        tokio::spawn(serve(connection, service.clone()));
    }

    let client = server.connect().await?;
    let method = MethodName::new("say")?;
    let subject = subject::rpc(&service, &method);
    // The instances subscribe asynchronously: wait until one answers before timing calls.
    wait_for_responder(&client, &subject).await?;

    for text in ["hello", "from", "aegis", "over", "nats", "!"] {
        let request = RpcRequest::new("say", Say { text: text.into() }).with_target("echo");
        let started = Instant::now();
        let reply = client
            .request(subject.clone(), codec::encode(&request)?.into())
            .await?;
        let elapsed = started.elapsed();
        let response: RpcResponse<Echoed> = codec::decode(&reply.payload)?;
        match response.into_result() {
            Ok(Some(echoed)) => println!(
                "say {text:>6} -> {:>6} from {} in {elapsed:?}",
                echoed.text, echoed.instance_id
            ),
            Ok(None) => println!("say {text:>6} -> (no result)"),
            Err(error) => println!("say {text:>6} -> error: {error}"),
        }
    }
    println!("done; stopping nats-server");
    Ok(())
}

async fn wait_for_responder(
    client: &async_nats::Client,
    subject: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let probe = codec::encode(&RpcRequest::new(
            "say",
            Say {
                text: String::new(),
            },
        ))?;
        match client.request(subject.to_owned(), probe.into()).await {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(%err, "no echo instance yet");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}
