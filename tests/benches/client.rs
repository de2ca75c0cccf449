//! The typed client and runner against raw async-nats request/reply, in one run, on one
//! nats-server: the same envelopes (MessagePack, the same fields) encoded and decoded on
//! both sides, over the same two connections (one for every caller, one for both
//! responders), so the difference is what Aegis adds: discovery, selection, the
//! per-instance subject, retry bookkeeping, metrics, dispatch, the deadline check and
//! stats.
//!
//! Run with: `cargo bench -p aegis-tests --bench client`; with `AEGIS_BENCH_METRICS=1`, the
//! Prometheus recorder is installed first, so both sides record their metrics.
//!
//! Method. The callers take turns in short blocks (each block: 256 sequential calls for
//! latency, then 2048 calls from 64 concurrent tasks for throughput), the order reversed
//! every other block, so the drift of a shared 2-core machine hits them alike. Throughput
//! is compared block by block with the raw baseline measured next to it (median of the
//! ratios); latency is the median over every sequential call. The baseline is measured
//! twice: the second row shows how far two identical callers differ, the noise floor of
//! the ratios. CPU per call is read from `/proc` (this process: callers and responders;
//! and the nats-server) over each caller's throughput phases.
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
/// envelope, encode the response envelope (with its source, as the runner writes it),
/// publish it.
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
                Ok(request) => RpcResponse::ok(&request, request.params.clone()),
                Err(err) => {
                    RpcResponse::<Quote>::err(&RpcRequest::new("echo", quote()), err.to_string())
                }
            }
            .with_source("bench-echo-0a1b2c3d");
            let bytes = codec::encode(&response).expect("encode");
            let _ = nats.publish(reply, bytes.into()).await;
        });
    }
}

/// One call through raw async-nats to `subject`: encode the envelope the typed client
/// sends (source, target and timeout included), request, decode.
async fn raw_call(nats: &async_nats::Client, subject: &'static str, quote: Quote) -> Quote {
    let request = RpcRequest::new("echo", quote)
        .with_source("bench-echo-client-0a1b2c3d")
        .with_target("bench-echo")
        .with_timeout(5.0);
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

/// How much each caller is measured.
#[derive(Debug, Clone, Copy)]
struct Plan {
    blocks: usize,
    /// Calls one after another per block, for latency.
    sequential: usize,
    /// Calls per block made by `in_flight` concurrent tasks, for throughput.
    concurrent: usize,
    in_flight: usize,
}

/// CPU time used so far by process `pid`, when `/proc` tells.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime
    // and stime the 12th and 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What was measured of one caller.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    /// Calls per second, one per block.
    rates: Vec<f64>,
    /// CPU used during the throughput phases: this process, the nats-server.
    cpu: Option<(Duration, Duration)>,
}

impl Measured {
    fn p(&mut self, percent: usize) -> Duration {
        self.latencies.sort();
        self.latencies[(self.latencies.len() * percent / 100).min(self.latencies.len() - 1)]
    }
}

/// Measures every caller block by block, in turns (see the module's doc).
async fn measure(callers: &[Caller], plan: Plan, server_pid: Option<u32>) -> Vec<Measured> {
    let mut measured: Vec<Measured> = callers.iter().map(|_| Measured::default()).collect();
    for call in callers {
        for _ in 0..plan.sequential {
            call().await; // warm up
        }
    }
    let cpu_now = || Some((cpu_time(std::process::id())?, cpu_time(server_pid?)?));
    let per_task = plan.concurrent / plan.in_flight;
    for block in 0..plan.blocks {
        let mut order: Vec<usize> = (0..callers.len()).collect();
        if block % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (call, measured) = (&callers[index], &mut measured[index]);
            for _ in 0..plan.sequential {
                let started = Instant::now();
                call().await;
                measured.latencies.push(started.elapsed());
            }
            let cpu_before = cpu_now();
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
            measured.cpu = match (cpu_before, cpu_now(), measured.cpu) {
                (Some((own, server)), Some((own_after, server_after)), sum) => {
                    let (own_sum, server_sum) = sum.unwrap_or_default();
                    Some((
                        own_sum + (own_after - own),
                        server_sum + (server_after - server),
                    ))
                }
                _ => None,
            };
        }
    }
    measured
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The median of the block-by-block ratios of `rates` to `baseline`.
fn paired_ratio(rates: &[f64], baseline: &[f64]) -> f64 {
    let ratios: Vec<f64> = rates.iter().zip(baseline).map(|(a, b)| a / b).collect();
    median(&ratios)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(if full {
        Plan {
            blocks: 100,
            sequential: 256,
            concurrent: 2048,
            in_flight: 64,
        }
    } else {
        Plan {
            blocks: 2,
            sequential: 64,
            concurrent: 256,
            in_flight: 64,
        }
    }));
}

async fn run(plan: Plan) {
    if std::env::var_os("AEGIS_BENCH_METRICS").is_some() {
        // What recording costs: the Prometheus recorder (buckets and all) takes every
        // metric, as in production; without it the `metrics` calls are no-ops.
        aegis_runtime::metrics::install_prometheus_exporter(([127, 0, 0, 1], 0).into())
            .expect("the only recorder");
        println!("with the Prometheus recorder installed (AEGIS_BENCH_METRICS)");
    }
    let server = NatsServer::start().await.expect("nats-server");
    // Both responders on one connection, every caller on another: no path gets a
    // connection (and its tasks' place on the runtime's threads) of its own.
    let serving = server.connect().await.expect("connect");
    tokio::spawn(raw_responder(serving.clone()));
    let instance = ServiceRunner::new(Echo)
        .nats(serving)
        .concurrency(1024)
        .start()
        .await
        .expect("start");
    let calling = server.connect().await.expect("connect");

    let raw = |subject: &'static str| {
        let nats = calling.clone();
        caller(move || {
            let nats = nats.clone();
            async move {
                raw_call(&nats, subject, quote()).await;
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
    let callers = [
        ("raw client, raw responder", raw("raw.echo")),
        ("  the same, measured again", raw("raw.echo")),
        ("raw client, aegis runner", raw("rpc.bench-echo.echo")),
        (
            "aegis client, no discovery",
            typed(EchoClient::configured(calling.clone(), |c| {
                c.without_discovery()
            })),
        ),
        (
            "aegis client, aegis runner",
            typed(EchoClient::new(calling.clone())),
        ),
    ];
    let functions: Vec<Caller> = callers.iter().map(|(_, call)| call.clone()).collect();
    let mut measured = measure(&functions, plan, server.pid()).await;
    instance.stop().await;

    let Plan {
        blocks,
        sequential,
        concurrent,
        in_flight,
    } = plan;
    println!(
        "{blocks} blocks per caller, in turns: {sequential} sequential calls, then {concurrent} calls with {in_flight} in flight"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>8} {:>9} {:>11}",
        "", "p50", "p99", "calls/s", "vs raw", "cpu/call", "server/call"
    );
    let baseline = measured[0].rates.clone();
    let calls = (blocks * (concurrent / in_flight * in_flight)) as f64;
    for ((name, _), m) in callers.iter().zip(measured.iter_mut()) {
        let (own, server) = match m.cpu {
            Some((own, server)) => (
                format!("{:.1?}", own.div_f64(calls)),
                format!("{:.1?}", server.div_f64(calls)),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "{name:<28} {:>9.1?} {:>9.1?} {:>9.0} {:>7.2}× {own:>9} {server:>11}",
            m.p(50),
            m.p(99),
            median(&m.rates),
            paired_ratio(&m.rates, &baseline),
        );
    }
    let noise = paired_ratio(&measured[1].rates, &baseline);
    let throughput = paired_ratio(&measured[4].rates, &baseline);
    let p50 = measured[4].p(50).as_secs_f64() / measured[0].p(50).as_secs_f64();
    println!(
        "ratio aegis/raw: throughput {throughput:.2}× (target ≥ 0.90), p50 {p50:.2}× (target ≤ 1.10); \
         two identical raw callers differ by {:.0} %",
        (noise - 1.0).abs() * 100.0
    );
}
