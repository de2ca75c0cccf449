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

/// One call through raw async-nats to `subject`: encode, request, decode.
async fn raw_call(nats: &async_nats::Client, subject: &'static str, quote: &Quote) -> Quote {
    let request = RpcRequest::new("echo", quote.clone());
    let bytes = codec::encode(&request).expect("encode");
    let reply = nats
        .request(subject, bytes.into())
        .await
        .expect("raw reply");
    let response: RpcResponse<Quote> = codec::decode(&reply.payload).expect("decode");
    response.into_result().expect("success").expect("a result")
}

/// One way of making a call.
type Caller = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

fn caller<F, Fut>(call: F) -> Caller
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(call()))
}

#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    rates: Vec<f64>,
}

impl Measured {
    fn p(&mut self, percent: usize) -> Duration {
        self.latencies.sort();
        self.latencies[(self.latencies.len() * percent / 100).min(self.latencies.len() - 1)]
    }
}

/// Measures every caller in `plan.rounds` interleaved rounds, each starting with another
/// caller (so that noise on this machine hits all of them alike): per round,
/// `plan.sequential` calls one after another (latency), then `plan.concurrent` calls from
/// `plan.in_flight` concurrent callers (throughput, one rate per round).
async fn measure(callers: &[Caller], plan: Plan) -> Vec<Measured> {
    let mut measured: Vec<Measured> = callers.iter().map(|_| Measured::default()).collect();
    for call in callers {
        for _ in 0..plan.sequential / 4 {
            call().await; // warm up
        }
    }
    for round in 0..plan.rounds {
        // Each round starts with another caller, so that none always runs first.
        let mut order: Vec<usize> = (0..callers.len()).collect();
        order.rotate_left(round % callers.len().max(1));
        for index in order {
            let (call, measured) = (&callers[index], &mut measured[index]);
            for _ in 0..plan.sequential {
                let started = Instant::now();
                call().await;
                measured.latencies.push(started.elapsed());
            }
            let per_task = plan.concurrent / plan.in_flight;
            let started = Instant::now();
            let tasks: Vec<_> = (0..plan.in_flight)
                .map(|_| {
                    let call = call.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            call().await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("caller");
            }
            let made = per_task * plan.in_flight;
            measured
                .rates
                .push(made as f64 / started.elapsed().as_secs_f64());
        }
    }
    measured
}

/// The median and the range of `values`.
fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if full {
        runtime.block_on(run(Plan {
            rounds: 8,
            sequential: 4_096,
            concurrent: 16_384,
            in_flight: 64,
        }));
    } else {
        runtime.block_on(run(Plan {
            rounds: 1,
            sequential: 256,
            concurrent: 256,
            in_flight: 64,
        }));
    }
}

/// How much each caller is measured.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    /// Calls one after another per round, for latency.
    sequential: usize,
    /// Calls per round made by `in_flight` concurrent callers, for throughput.
    concurrent: usize,
    in_flight: usize,
}

async fn run(plan: Plan) {
    let server = NatsServer::start().await.expect("nats-server");
    let serving = server.connect().await.expect("connect");
    tokio::spawn(raw_responder(serving));
    let instance = ServiceRunner::new(Echo)
        .nats(server.connect().await.expect("connect"))
        .concurrency(1024)
        .start()
        .await
        .expect("start");

    let raw = |subject: &'static str, nats: async_nats::Client| {
        caller(move || {
            let nats = nats.clone();
            async move {
                raw_call(&nats, subject, &quote()).await;
            }
        })
    };
    let typed = |client: EchoClient| {
        caller(move || {
            let client = client.clone();
            async move {
                client.echo(quote()).await.expect("typed call");
            }
        })
    };
    let connect = || server.connect();
    let callers = [
        (
            "raw client, raw responder",
            raw("raw.echo", connect().await.expect("connect")),
        ),
        (
            "raw client, aegis runner",
            raw("rpc.bench-echo.echo", connect().await.expect("connect")),
        ),
        (
            "aegis client, aegis runner",
            typed(EchoClient::new(connect().await.expect("connect"))),
        ),
        (
            "  same, without discovery",
            typed(EchoClient::configured(
                connect().await.expect("connect"),
                |c| c.without_discovery(),
            )),
        ),
    ];
    let functions: Vec<Caller> = callers.iter().map(|(_, call)| call.clone()).collect();
    let mut measured = measure(&functions, plan).await;
    instance.stop().await;

    let Plan {
        rounds,
        sequential,
        concurrent,
        in_flight,
    } = plan;
    println!(
        "{rounds} interleaved rounds of {sequential} sequential calls and {concurrent} calls with {in_flight} in flight; same payload and envelopes"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>16}",
        "", "p50", "p99", "calls/s", "rounds min–max"
    );
    for ((name, _), m) in callers.iter().zip(measured.iter_mut()) {
        let (median, low, high) = median_and_range(&m.rates);
        println!(
            "{name:<28} {:>10.1?} {:>10.1?} {:>12.0} {:>16}",
            m.p(50),
            m.p(99),
            median,
            format!("{low:.0}–{high:.0}")
        );
    }
    // Rounds drift together on a shared machine, so throughput is compared round by round:
    // the aegis client against raw async-nats measured next to it.
    let paired: Vec<f64> = measured[2]
        .rates
        .iter()
        .zip(&measured[0].rates)
        .map(|(aegis, raw)| aegis / raw)
        .collect();
    let (throughput, low, high) = median_and_range(&paired);
    let p50 = measured[2].p(50).as_secs_f64() / measured[0].p(50).as_secs_f64();
    println!(
        "ratio aegis/raw: throughput {throughput:.2}× (median of rounds, {low:.2}–{high:.2}; target ≥ 0.90), p50 {p50:.2}× (target ≤ 1.10)"
    );
}
