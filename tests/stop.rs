//! Stopping instance processes when things go wrong: the NATS server is gone, or a call in
//! flight holds the drain and the operator signals again.

#![allow(clippy::print_stdout)] // the measured stop times are printed

mod support;

use std::time::{Duration, Instant};

use aegis_examples::echo::Delay;
use aegis_examples::orders::{OrderProcessorClient, OrderRequest};
use aegis_runtime::ServiceClient;
use aegis_runtime::runner::StatusReport;
use aegis_runtime::testing::NatsServer;
use nix::sys::signal::Signal;
use serde_json::json;
use support::{ChildProcess, until};

/// What the stop bound promises on top of the drain timeout, as the issue states it; the
/// runtime's own bound ([`aegis_runtime::runner::STOP_GRACE`]) is smaller, the rest is
/// process start-up and exit.
const STOP_SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_gone_exits_within_the_drain_timeout() {
    let mut server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let drain = Duration::from_secs(2);
    let drain_ms = drain.as_millis().to_string();
    let (mut child, _) = ChildProcess::start(
        "order_service",
        &[
            "--nats",
            &url,
            "--instance",
            "orders-stop",
            "--heartbeat-ms",
            "1000",
            "--drain-timeout-ms",
            &drain_ms,
        ],
    );
    // It leads (an exclusive call succeeds), so its stop has a leadership to release, a
    // registry entry to delete and a connection to flush: every NATS step of a stop.
    let client = OrderProcessorClient::new(server.connect().await.expect("connect"));
    let order = OrderRequest {
        order_id: "ORD-stop".into(),
        amount: 1.0,
    };
    let led = until(Duration::from_secs(10), || async {
        client.process_order(order.clone()).await.is_ok()
    })
    .await;
    assert!(led, "the instance leads and serves an exclusive call");

    server.kill();
    child.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let bound = drain + STOP_SLACK;
    let exited = tokio::task::block_in_place(|| child.wait_exit(bound));
    let took = signalled.elapsed();
    println!("with NATS gone, SIGTERM to exit took {took:?} (drain timeout {drain:?})");
    assert!(
        exited,
        "the process still runs {bound:?} after SIGTERM with NATS gone"
    );
    let status = child.exit_status().expect("exited");
    assert!(status.success(), "a graceful stop exits with 0: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_a_long_drain_exits_at_once() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let (mut child, _) = ChildProcess::start(
        "echo_service",
        &[
            "--nats",
            &url,
            "--instance",
            "echo-stop",
            "--drain-timeout-ms",
            "60000",
        ],
    );
    let nats = server.connect().await.expect("connect");
    let client = ServiceClient::new(nats.clone(), "echo")
        .expect("client")
        .with_timeout(Duration::from_secs(120));
    // A call that holds the drain for a minute.
    let long_call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<_, u64>("delay", &Delay { millis: 60_000 })
                .await
        })
    };
    let in_flight = until(Duration::from_secs(10), || async {
        client
            .call::<_, StatusReport>("aegis_status", &json!({}))
            .await
            .is_ok_and(|status| status.in_flight == 1)
    })
    .await;
    assert!(in_flight, "the long call is in flight");

    child.signal(Signal::SIGTERM);
    // The first signal was taken once the instance no longer listens: its stop has begun
    // (a second signal sent before that could merge with the first).
    let draining = until(Duration::from_secs(10), || async {
        match nats.request("rpc.echo.say", "{}".into()).await {
            Err(err) => err.kind() == async_nats::RequestErrorKind::NoResponders,
            Ok(_) => false,
        }
    })
    .await;
    assert!(draining, "the first SIGTERM starts the drain");
    assert!(
        !child.wait_exit(Duration::from_millis(500)),
        "the drain waits for the call in flight"
    );

    child.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let exited = tokio::task::block_in_place(|| child.wait_exit(STOP_SLACK));
    let took = signalled.elapsed();
    println!("second SIGTERM to exit took {took:?} (drain timeout 60 s, call of 60 s in flight)");
    assert!(
        exited,
        "a second SIGTERM exits at once, not after the drain"
    );
    let status = child.exit_status().expect("exited");
    assert_eq!(
        status.code(),
        Some(143),
        "exit code 128 + SIGTERM: {status}"
    );
    long_call.abort();
}
