//! The typed client and runner against raw async-nats request/reply, in one run, on one
//! nats-server: the same payload and the same serde work (MessagePack envelopes encoded and
//! decoded on both sides), so the difference is what Aegis adds (discovery, selection,
//! deadline and trace headers, retries bookkeeping, metrics, dispatch and stats).
//!
//! Run with: `cargo bench -p aegis-tests --bench client`
//!
//! Under `cargo test` (no `--bench` argument) it runs a short smoke round instead, so the
//! benchmark is known to work without slowing the suite.

#![allow(clippy::print_stdout)] // a benchmark: its output is the point

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{ServiceRunner, service};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What both sides send and answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Quote {
    symbol: String,
    price: f64,
    size: u64,
    venue: String,
}

struct Echo;

#[service(name = "bench-echo", version = "1.0.0")]
impl Echo {
    #[rpc]
    async fn echo(&self, quote: Quote) -> Quote {
        quote
    }
}

fn quote() -> Quote {
    Quote {
        symbol: "EURUSD".into(),
        price: 1.08345,
        size: 1_000_000,
        venue: "XNAS-0123456789-abcdefghijklmnopqrstuvwxyz".into(),
    }
}

/// Serves `raw.echo` the way a hand-written async-nats service would: decode the request
/// envelope, encode the response envelope, publish it.
async fn raw_responder(nats: async_nats::Client) {
    let mut requests = nats
        .queue_subscribe("raw.echo", "raw".into())
        .await
        .expect("subscribe");
    while let Some(message) = requests.next().await {
        let nats = nats.clone();
        tokio::spawn(async move {
            let Some(reply) = message.reply else { return };
            let response = match codec::decode::<RpcRequest<Quote>>(&message.payload) {
                Ok(request) => {
                    let quote = request.params.clone();
                    RpcResponse::ok(&request, quote)
                }
                Err(err) => {
                    RpcResponse::<Quote>::err(&RpcRequest::new("echo", quote()), err.to_string())
                }
            };
            let bytes = codec::encode(&response).expect("encode");
            let _ = nats.publish(reply, bytes.into()).await;
        });
    }
}

/// One call through raw async-nats: encode, request, decode.
async fn raw_call(nats: &async_nats::Client, quote: &Quote) -> Quote {
    let request = RpcRequest::new("echo", quote.clone());
    let bytes = codec::encode(&request).expect("encode");
    let reply = nats
        .request("raw.echo", bytes.into())
        .await
        .expect("raw reply");
    let response: RpcResponse<Quote> = codec::decode(&reply.payload).expect("decode");
    response.into_result().expect("success").expect("a result")
}

struct Measured {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// Sequential latency over `calls` calls, then throughput with `in_flight` concurrent
/// callers making `calls` calls in all.
async fn measure<F, Fut>(call: F, calls: usize, in_flight: usize) -> Measured
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    for _ in 0..calls / 10 {
        call().await; // warm up
    }
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call().await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let call = Arc::new(call);
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..calls / in_flight {
                    call().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    let made = (calls / in_flight) * in_flight;
    Measured {
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        per_second: made as f64 / started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(if full { 20_000 } else { 640 }, 64));
}

async fn run(calls: usize, in_flight: usize) {
    let server = NatsServer::start().await.expect("nats-server");
    let serving = server.connect().await.expect("connect");
    tokio::spawn(raw_responder(serving));
    let instance = ServiceRunner::new(Echo)
        .nats(server.connect().await.expect("connect"))
        .concurrency(1024)
        .start()
        .await
        .expect("start");

    let raw_nats = server.connect().await.expect("connect");
    let raw = measure(
        move || {
            let nats = raw_nats.clone();
            async move {
                raw_call(&nats, &quote()).await;
            }
        },
        calls,
        in_flight,
    )
    .await;

    let client = EchoClient::new(server.connect().await.expect("connect"));
    let typed = measure(
        move || {
            let client = client.clone();
            async move {
                client.echo(quote()).await.expect("typed call");
            }
        },
        calls,
        in_flight,
    )
    .await;
    instance.stop().await;

    println!(
        "{calls} sequential calls, then {calls} with {in_flight} in flight; same payload and envelopes"
    );
    println!("{:<28} {:>10} {:>10} {:>12}", "", "p50", "p99", "calls/s");
    for (name, m) in [("raw async-nats", &raw), ("aegis typed client", &typed)] {
        println!(
            "{name:<28} {:>10.1?} {:>10.1?} {:>12.0}",
            m.p50, m.p99, m.per_second
        );
    }
    let throughput = typed.per_second / raw.per_second;
    let p50 = typed.p50.as_secs_f64() / raw.p50.as_secs_f64();
    println!(
        "ratio aegis/raw: throughput {throughput:.2}× (target ≥ 0.90), p50 {p50:.2}× (target ≤ 1.10)"
    );
}
