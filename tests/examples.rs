//! The example programs, run as a newcomer would run them: the self-contained ones to
//! their end, the services with their clients against a real nats-server.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aegis_examples::process::run_to_exit;
use aegis_runtime::testing::NatsServer;
use support::ChildProcess;

const WITHIN: Duration = Duration::from_secs(60);

#[test]
fn echo_runs_to_its_end() {
    let run = run_to_exit("echo", &[], WITHIN);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("say  hello -> "), "{}", run.stdout);
    assert!(run.stdout.contains("error, as it should"), "{}", run.stdout);
}

#[test]
fn events_shows_compete_and_broadcast() {
    let run = run_to_exit("events", &[], WITHIN);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let count = |which: &str| -> u32 {
        run.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(which))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u32>().ok())
            .sum()
    };
    assert_eq!(count("compete"), 30, "{}", run.stdout);
    assert_eq!(count("broadcast"), 90, "{}", run.stdout);
}

#[test]
fn commands_shows_progress_failure_and_timeout() {
    let run = run_to_exit("commands", &[], WITHIN);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("progress"))
            .count(),
        10,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("done: Reindexed { reindexed: 200 }"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("failed, as it should"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("timed out, as it should"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn echo_client_spreads_calls_over_echo_services() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let _services: Vec<ChildProcess> = ["echo-a", "echo-b"]
        .iter()
        .map(|id| ChildProcess::start("echo_service", &["--nats", &url, "--instance", id]).0)
        .collect();
    let run = tokio::task::spawn_blocking(move || {
        run_to_exit("echo_client", &["--nats", &url, "--calls", "6"], WITHIN)
    })
    .await
    .expect("client");
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let served: BTreeSet<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split(" <- ").nth(1))
        .collect();
    assert_eq!(
        served,
        BTreeSet::from(["echo-a", "echo-b"]),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn order_client_is_served_by_the_leader() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let _services: Vec<ChildProcess> = ["orders-a", "orders-b"]
        .iter()
        .map(|id| ChildProcess::start("order_service", &["--nats", &url, "--instance", id]).0)
        .collect();
    let run = tokio::task::spawn_blocking(move || {
        run_to_exit(
            "order_client",
            &["--nats", &url, "--calls", "5", "--interval-ms", "10"],
            WITHIN,
        )
    })
    .await
    .expect("client");
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let leaders: BTreeSet<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split(" served by ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "one leader serves them all: {}",
        run.stdout
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.contains(" served by "))
            .count(),
        5,
        "{}",
        run.stdout
    );
}

#[test]
fn failover_bench_measures_one_round_of_each() {
    let run = run_to_exit(
        "failover_bench",
        &["--graceful", "1", "--crash", "1", "--freeze", "1"],
        // A freeze round with today's client takes up to the registry TTL (30 s).
        Duration::from_secs(240),
    );
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    for summary in [
        "SIGTERM: 1 rounds, p50",
        "SIGKILL: 1 rounds, p50",
        "SIGSTOP: 1 rounds, p50",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(summary))
            .unwrap_or_else(|| panic!("no {summary} line:\n{}", run.stdout));
        assert!(line.contains(", failed calls "), "{line}");
        assert!(line.contains(", retries per failover max "), "{line}");
    }
    // The targets are printed, met or not, never asserted here.
    let targets = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("target ") && (l.contains(": met") || l.contains(": not met")))
        .count();
    assert_eq!(targets, 4, "{}", run.stdout);
    // A graceful stop loses no call, whatever the client.
    let graceful = run
        .stdout
        .lines()
        .find(|l| l.starts_with("SIGTERM: "))
        .unwrap_or_default();
    assert!(graceful.contains("failed calls 0,"), "{graceful}");
}
