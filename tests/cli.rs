//! The `aegis` command, run as a real process against a real nats-server.

mod support;

use std::time::{Duration, Instant};

use aegis_examples::process::{Finished, run_to_exit};
use aegis_runtime::testing::NatsServer;
use support::start_orders;

/// Runs `aegis args…` and waits up to `within` for it to exit.
fn aegis(args: &[&str], within: Duration) -> Finished {
    run_to_exit("aegis", args, within)
}

/// Runs `aegis --server {url} args…` (in a blocking thread: the test's runtime serves the
/// instances meanwhile).
async fn aegis_at(url: &str, args: &[&str]) -> Finished {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        aegis(&args, Duration::from_secs(30))
    })
    .await
    .expect("aegis thread")
}

#[test]
fn the_demo_runs_to_its_final_table_with_no_failed_call() {
    let run = aegis(&["demo", "--phase", "1.5"], Duration::from_secs(90));
    assert!(run.success, "demo failed:\n{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("failed            0"), "{}", run.stdout);
    for line in ["crash failover", "graceful failover"] {
        let shown = run
            .stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} line:\n{}", run.stdout));
        assert!(shown.contains(" ms "), "a measured time: {shown}");
    }
    assert!(
        run.stdout.contains("served by (term, instance)"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn inspection_commands_show_the_running_service() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let instance = start_orders(&server, "orders-cli").await;
    // Wait until it is the leader, so that every command has something to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !instance.leadership().is_active() {
        assert!(Instant::now() < deadline, "never elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let services = aegis_at(&url, &["services"]).await;
    assert!(services.success, "{}", services.stderr);
    assert!(
        services
            .stdout
            .lines()
            .any(|l| l.starts_with("order-processor") && l.contains(" 1 ")),
        "{}",
        services.stdout
    );

    let instances = aegis_at(&url, &["instances", "order-processor"]).await;
    assert!(instances.success, "{}", instances.stderr);
    let row = instances
        .stdout
        .lines()
        .find(|l| l.starts_with("orders-cli"))
        .unwrap_or_else(|| panic!("{}", instances.stdout));
    assert!(row.contains("1.0.0") && row.contains("ACTIVE"), "{row}");

    // After renewals (every third of the 2 s TTL) the key's revision has moved on from
    // the term: `leader` shows the term handlers see, not the revision.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let term = instance.leadership().term().expect("still the leader");
    let leader = aegis_at(&url, &["leader", "order-processor"]).await;
    assert!(leader.success, "{}", leader.stderr);
    assert!(
        leader.stdout.contains(&format!("orders-cli  term {term} ")),
        "handlers see term {term}: {}",
        leader.stdout
    );

    let schema = aegis_at(&url, &["schema", "order-processor"]).await;
    assert!(schema.success, "{}", schema.stderr);
    let schemas: serde_json::Value = serde_json::from_str(&schema.stdout).expect("JSON");
    assert_eq!(
        schemas["process_order"]["request"]["properties"]["order_id"]["type"], "string",
        "{}",
        schema.stdout
    );

    let unknown = aegis_at(&url, &["instances", "no-such-service"]).await;
    assert!(!unknown.success);
    assert!(
        unknown
            .stderr
            .contains("no instance of no-such-service is registered"),
        "{}",
        unknown.stderr
    );
    instance.stop().await;
}

#[tokio::test]
async fn call_reaches_any_instance_the_leader_or_one_instance() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let instance = start_orders(&server, "orders-cli").await;

    let whoami = aegis_at(&url, &["call", "order-processor", "whoami"]).await;
    assert!(whoami.success, "{}", whoami.stderr);
    assert_eq!(whoami.stdout.trim(), "\"orders-cli\"");

    let order = r#"{"order_id": "ORD-CLI", "amount": 2.5}"#;
    let exclusive = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            order,
            "--exclusive",
        ],
    )
    .await;
    assert!(exclusive.success, "{}", exclusive.stderr);
    let result: serde_json::Value = serde_json::from_str(&exclusive.stdout).expect("JSON");
    assert_eq!(result["order_id"], "ORD-CLI");

    let addressed = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            order,
            "--exclusive",
            "--instance",
            "orders-cli",
        ],
    )
    .await;
    assert!(addressed.success, "{}", addressed.stderr);
    assert!(
        addressed.stderr.contains("served by orders-cli under term"),
        "{}",
        addressed.stderr
    );

    let bad = aegis_at(
        &url,
        &["call", "order-processor", "process_order", "[1, 2]"],
    )
    .await;
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("must be a JSON object"),
        "{}",
        bad.stderr
    );

    let failing = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            r#"{"order_id": "X", "amount": -1}"#,
            "--exclusive",
        ],
    )
    .await;
    assert!(!failing.success);
    assert!(
        failing.stderr.contains("must be positive"),
        "{}",
        failing.stderr
    );
    assert!(
        failing.stderr.contains("1 attempt"),
        "a handler error is not retried: {}",
        failing.stderr
    );
    instance.stop().await;
}

#[tokio::test]
async fn watch_prints_instances_and_leaders_as_they_change() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let first = start_orders(&server, "orders-1").await;
    let watching = tokio::spawn({
        let url = url.clone();
        async move { aegis_at(&url, &["watch", "order-processor", "--for", "3"]).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = start_orders(&server, "orders-2").await;
    first.stop().await;
    let run = watching.await.expect("watch");
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("instance orders-1"), "{}", run.stdout);
    assert!(run.stdout.contains("instance orders-2"), "{}", run.stdout);
    assert!(
        run.stdout.contains("instance orders-1: left"),
        "{}",
        run.stdout
    );
    // Leader changes only, not the renewals (several per second): orders-1 leads once,
    // then none, then orders-2, each line timestamped.
    let leader_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(" leader of group default: "))
        .collect();
    let first_leader = leader_lines
        .iter()
        .filter(|l| l.contains(": orders-1 (term "))
        .count();
    assert_eq!(first_leader, 1, "{}", run.stdout);
    assert!(
        leader_lines.iter().any(|l| l.contains(": orders-2 (term ")),
        "{}",
        run.stdout
    );
    assert!(
        leader_lines
            .iter()
            .all(|l| l.starts_with("20") && l.contains('T')),
        "timestamped: {leader_lines:?}"
    );
    second.stop().await;
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let run = aegis(
        &["--server", "nats://127.0.0.1:1", "services"],
        Duration::from_secs(20),
    );
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("cannot reach a NATS server at nats://127.0.0.1:1"),
        "{}",
        run.stderr
    );
}
