//! The `aegis` command, run as a real process against a real nats-server.

mod support;

use std::time::{Duration, Instant};

use aegis_examples::process::{ChildProcess, Finished, run_to_exit};
use aegis_runtime::testing::NatsServer;
use serde_json::Value;
use support::{hold_leader_key, start_orders};

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

#[tokio::test]
async fn the_demo_runs_to_its_final_table_with_no_failed_call_and_serves_its_dashboard() {
    let (mut demo, line) = ChildProcess::start_until(
        "aegis",
        &["demo", "--phase", "1.5", "--dashboard", "127.0.0.1:0"],
        "dashboard: ",
    );
    // While the demo runs, its dashboard's API lists the three instances and a leader.
    let address = line
        .trim_start_matches("dashboard: http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let shown = support::until(Duration::from_secs(10), || {
        let address = address.clone();
        async move {
            let response = support::http_get(&address, "/api/services").await;
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            let api: Value = serde_json::from_str(body).unwrap_or_default();
            api["services"][0]["instances"] == 3
                && api["services"][0]["leaders"][0]["leader"].is_string()
        }
    })
    .await;
    assert!(
        shown,
        "the demo's dashboard did not show 3 instances and a leader"
    );
    let report = tokio::task::spawn_blocking(move || {
        let within = Duration::from_secs(90);
        let lines = [
            "failed ",
            "served by (term, instance)",
            "crash failover",
            "graceful failover",
        ]
        .map(|prefix| demo.wait_for_line(prefix, within));
        let exited = demo.wait_exit(within);
        (lines, exited, demo.exit_status())
    })
    .await
    .expect("demo thread");
    let ([failed, _, crash, graceful], exited, status) = report;
    assert!(
        exited && status.is_some_and(|s| s.success()),
        "demo failed: {status:?}"
    );
    assert_eq!(
        failed.split_whitespace().collect::<Vec<_>>(),
        ["failed", "0"]
    );
    for shown in [crash, graceful] {
        assert!(shown.contains(" ms "), "a measured time: {shown}");
    }
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
    // The domain event it declares it publishes, from its descriptor.
    let cancelled = &schemas["event:orders.cancelled"];
    assert_eq!(
        cancelled["subject"], "events.orders.cancelled",
        "{}",
        schema.stdout
    );
    assert_eq!(
        cancelled["payload"]["properties"]["reason"]["type"], "string",
        "{}",
        schema.stdout
    );

    let unknown = aegis_at(&url, &["instances", "no-such-service"]).await;
    assert_eq!(unknown.code, Some(3), "unknown service: {}", unknown.stderr);
    assert_says(&unknown, "no instance of no-such-service is registered");
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
    // The service says whoami is a plain method: a stray --exclusive does not change that.
    let flagged = aegis_at(&url, &["call", "order-processor", "whoami", "--exclusive"]).await;
    assert_eq!(flagged.code, Some(0), "{}", flagged.stderr);
    assert_eq!(flagged.stdout.trim(), "\"orders-cli\"");

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

    // The service says process_order is exclusive (its $SRV.INFO): no flag needed.
    let detected = aegis_at(&url, &["call", "order-processor", "process_order", order]).await;
    assert_eq!(detected.code, Some(0), "{}", detected.stderr);
    let result: serde_json::Value = serde_json::from_str(&detected.stdout).expect("JSON");
    assert_eq!(result["order_id"], "ORD-CLI", "{}", detected.stdout);
    assert_says(&detected, "served by the active instance orders-cli");

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
    assert_says(&addressed, "served by orders-cli under term");

    let bad = aegis_at(
        &url,
        &["call", "order-processor", "process_order", "[1, 2]"],
    )
    .await;
    assert_eq!(bad.code, Some(2), "a usage error: {}", bad.stderr);
    assert_says(&bad, "must be a JSON object");

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
    assert_eq!(failing.code, Some(1), "a handler error: {}", failing.stderr);
    assert_says(&failing, "must be positive");
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
    assert_eq!(
        run.code,
        Some(5),
        "exit 5: cannot reach NATS; {}",
        run.stderr
    );
    assert_says(&run, "cannot reach a NATS server at nats://127.0.0.1:1");
    let json = aegis(
        &["--server", "nats://127.0.0.1:1", "instances", "x", "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(json.code, Some(5), "{}", json.stderr);
    let error: Value = serde_json::from_str(&json.stdout).expect("one JSON value");
    assert_eq!(error["error"]["exit_code"], 5, "{error}");
    assert_eq!(error["error"]["kind"], "connect", "{error}");
}

/// Waits until `instance` leads its group.
async fn until_leader(instance: &aegis_runtime::RunningService) {
    let elected = support::until(Duration::from_secs(10), || async {
        instance.leadership().is_active()
    })
    .await;
    assert!(elected, "never elected");
}

/// Parses the one JSON value a `--json` run printed.
/// Asserts that what `run` printed on stderr says `what`.
#[track_caller]
fn assert_says(run: &Finished, what: &str) {
    assert!(
        run.stderr.contains(what),
        "stderr does not say {what:?}:\n{}",
        run.stderr
    );
}

fn parsed(run: &Finished) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("not one JSON value ({err}):\n{}", run.stdout))
}

#[tokio::test]
async fn every_inspection_command_prints_json_with_stable_fields() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let instance = start_orders(&server, "orders-json").await;
    until_leader(&instance).await;

    let services = aegis_at(&url, &["services", "--json"]).await;
    assert_eq!(services.code, Some(0), "{}", services.stderr);
    let services = parsed(&services);
    let listed = &services["services"][0];
    assert_eq!(listed["service"], "order-processor", "{services}");
    assert_eq!(listed["instances"], 1, "{services}");
    assert_eq!(listed["stale_instances"], 0, "{services}");
    assert_eq!(
        listed["versions"],
        serde_json::json!(["1.0.0"]),
        "{services}"
    );

    let instances = aegis_at(&url, &["instances", "order-processor", "--json"]).await;
    assert_eq!(instances.code, Some(0), "{}", instances.stderr);
    let instances = parsed(&instances);
    assert_eq!(instances["service"], "order-processor");
    let row = &instances["instances"][0];
    assert_eq!(row["instance_id"], "orders-json", "{instances}");
    assert_eq!(row["version"], "1.0.0", "{instances}");
    assert_eq!(row["status"], "ACTIVE", "{instances}");
    assert_eq!(row["group"], "default", "{instances}");
    assert_eq!(row["stale"], false, "{instances}");
    assert!(row["heartbeat_age_seconds"].is_f64(), "{instances}");
    assert!(row["ttl_seconds"].is_u64(), "{instances}");

    let term = instance.leadership().term().expect("the leader");
    let leader = aegis_at(&url, &["leader", "order-processor", "--json"]).await;
    assert_eq!(leader.code, Some(0), "{}", leader.stderr);
    let leader = parsed(&leader);
    assert_eq!(leader["service"], "order-processor", "{leader}");
    assert_eq!(leader["group"], "default", "{leader}");
    assert_eq!(leader["leader"], "orders-json", "{leader}");
    assert_eq!(leader["term"], term, "{leader}");
    assert!(leader["renewed_seconds_ago"].is_f64(), "{leader}");

    let schema = aegis_at(&url, &["schema", "order-processor", "--json"]).await;
    assert_eq!(schema.code, Some(0), "{}", schema.stderr);
    let schema = parsed(&schema);
    assert_eq!(schema["service"], "order-processor", "{schema}");
    let methods = schema["methods"].as_array().expect("methods");
    let process = methods
        .iter()
        .find(|m| m["name"] == "process_order")
        .expect("process_order listed");
    assert_eq!(process["exclusive"], true, "{process}");
    assert_eq!(
        process["request"]["properties"]["order_id"]["type"], "string",
        "{process}"
    );
    let whoami = methods
        .iter()
        .find(|m| m["name"] == "whoami")
        .expect("whoami");
    assert_eq!(whoami["exclusive"], false, "{whoami}");
    let events = schema["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{schema}");
    assert_eq!(events[0]["subject"], "events.orders.cancelled", "{schema}");
    assert_eq!(
        (&events[0]["domain"], &events[0]["event_type"]),
        (
            &serde_json::json!("orders"),
            &serde_json::json!("cancelled")
        ),
        "{schema}"
    );

    // An exclusive method, recognised from the service's INFO: no --exclusive needed.
    let call = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            r#"{"order_id": "ORD-JSON", "amount": 1.5}"#,
            "--json",
        ],
    )
    .await;
    assert_eq!(call.code, Some(0), "{}", call.stderr);
    let call = parsed(&call);
    assert_eq!(call["service"], "order-processor", "{call}");
    assert_eq!(call["method"], "process_order", "{call}");
    assert_eq!(call["exclusive"], true, "{call}");
    assert_eq!(call["result"]["order_id"], "ORD-JSON", "{call}");
    assert_eq!(call["result"]["instance_id"], "orders-json", "{call}");

    let addressed = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "whoami",
            "--instance",
            "orders-json",
            "--json",
        ],
    )
    .await;
    assert_eq!(addressed.code, Some(0), "{}", addressed.stderr);
    let addressed = parsed(&addressed);
    assert_eq!(addressed["result"], "orders-json", "{addressed}");
    assert_eq!(addressed["served_by"], "orders-json", "{addressed}");
    assert_eq!(addressed["exclusive"], false, "{addressed}");
    instance.stop().await;
}

#[tokio::test]
async fn watch_json_prints_one_object_per_change() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let first = start_orders(&server, "orders-w1").await;
    until_leader(&first).await;
    let watching = tokio::spawn({
        let url = url.clone();
        async move { aegis_at(&url, &["watch", "order-processor", "--for", "3", "--json"]).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    first.stop().await;
    let run = watching.await.expect("watch");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let changes: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    assert!(
        changes.iter().all(|c| c["at"].is_string()),
        "timestamped: {changes:?}"
    );
    assert!(
        changes.iter().any(|c| c["event"] == "instance"
            && c["instance_id"] == "orders-w1"
            && c["change"] == "updated"
            && c["status"] == "ACTIVE"),
        "{changes:?}"
    );
    assert!(
        changes.iter().any(|c| c["event"] == "instance"
            && c["instance_id"] == "orders-w1"
            && c["change"] == "left"),
        "{changes:?}"
    );
    let leaders: Vec<&Value> = changes.iter().filter(|c| c["event"] == "leader").collect();
    assert!(
        leaders
            .iter()
            .any(|c| c["group"] == "default" && c["leader"] == "orders-w1" && c["term"].is_u64()),
        "{leaders:?}"
    );
    assert!(
        leaders.iter().any(|c| c["leader"].is_null()),
        "the release shows as no leader: {leaders:?}"
    );
}

#[tokio::test]
async fn exit_codes_tell_unknown_services_and_methods_from_failed_calls() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let instance = start_orders(&server, "orders-codes").await;
    until_leader(&instance).await;

    let ok = aegis_at(&url, &["call", "order-processor", "whoami"]).await;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);

    let handler = aegis_at(
        &url,
        &["call", "order-processor", "get_quote", r#"{"items": 0}"#],
    )
    .await;
    assert_eq!(handler.code, Some(1), "a handler error: {}", handler.stderr);
    assert_says(&handler, "at least one item");

    let unknown_method = aegis_at(&url, &["call", "order-processor", "no_such_method"]).await;
    assert_eq!(
        unknown_method.code,
        Some(3),
        "unknown method: {}",
        unknown_method.stderr
    );
    assert_says(
        &unknown_method,
        "order-processor has no method no_such_method; its methods: ",
    );
    for method in ["process_order", "whoami", "get_quote"] {
        assert!(
            unknown_method.stderr.contains(method),
            "names {method}: {}",
            unknown_method.stderr
        );
    }
    // INFO lists commands and built-ins too: a command is not a method to call, and the
    // built-ins are named once.
    assert!(
        !unknown_method.stderr.contains("reindex"),
        "a command is not listed as a method: {}",
        unknown_method.stderr
    );
    assert_eq!(
        unknown_method.stderr.matches("aegis_status").count(),
        1,
        "{}",
        unknown_method.stderr
    );
    let command = aegis_at(&url, &["call", "order-processor", "reindex"]).await;
    assert_eq!(command.code, Some(3), "a command name: {}", command.stderr);
    assert_says(&command, "order-processor has no method reindex");
    let as_json = aegis_at(
        &url,
        &["call", "order-processor", "no_such_method", "--json"],
    )
    .await;
    assert_eq!(as_json.code, Some(3), "{}", as_json.stderr);
    let error = parsed(&as_json);
    assert_eq!(error["error"]["kind"], "unknown_method", "{error}");
    assert!(
        error["error"]["methods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "whoami")),
        "{error}"
    );

    let unknown_service = aegis_at(&url, &["call", "no-such-service", "whoami"]).await;
    assert_eq!(
        unknown_service.code,
        Some(3),
        "unknown service: {}",
        unknown_service.stderr
    );
    assert_says(
        &unknown_service,
        "no instance of no-such-service is running",
    );
    for command in [
        &["schema", "no-such-service"][..],
        &["leader", "no-such-service"],
    ] {
        let run = aegis_at(&url, command).await;
        assert_eq!(run.code, Some(3), "{command:?}: {}", run.stderr);
    }

    // Built-in methods are not in INFO, and are not unknown.
    let status = aegis_at(&url, &["call", "order-processor", "aegis_status"]).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    instance.stop().await;
}

#[tokio::test]
async fn an_exclusive_call_that_no_leader_runs_fails_with_exit_1() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    // A leader that does not exist: the instance stays standby, and nothing runs the
    // exclusive method.
    hold_leader_key(&server.connect().await.expect("connect"), "order-processor").await;
    let instance = start_orders(&server, "orders-standby").await;
    let order = r#"{"order_id": "ORD-NA", "amount": 1.0}"#;

    // Straight to the standby: it answers NOT_ACTIVE (no --exclusive: the CLI knows).
    let standby = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            order,
            "--instance",
            "orders-standby",
            "--json",
        ],
    )
    .await;
    assert_eq!(standby.code, Some(1), "NOT_ACTIVE: {}", standby.stderr);
    assert_says(&standby, "NOT_ACTIVE");
    let error = parsed(&standby);
    assert_eq!(error["error"]["kind"], "not_active", "{error}");

    // Through the client: the leader it follows does not answer, until the deadline.
    let any = aegis_at(
        &url,
        &[
            "call",
            "order-processor",
            "process_order",
            order,
            "--timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(any.code, Some(1), "the call failed: {}", any.stderr);
    assert_says(&any, "call of order-processor.process_order failed");
    instance.stop().await;
}

#[tokio::test]
async fn an_instance_whose_heartbeat_is_older_than_its_ttl_is_stale() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let instance = start_orders(&server, "orders-live").await;
    // What a SIGKILLed instance leaves behind when its entry outlives it: its last word,
    // ACTIVE, long ago, with a 30 s TTL.
    let registry = async_nats::jetstream::new(server.connect().await.expect("connect"))
        .get_key_value("service_registry")
        .await
        .expect("the registry bucket");
    let ghost = serde_json::json!({
        "serviceName": "order-processor",
        "instanceId": "orders-ghost",
        "version": "1.0.0",
        "status": "ACTIVE",
        "lastHeartbeat": "2020-01-01T00:00:00Z",
        "stickyActiveGroup": "default",
        "stickyActiveStatus": "STANDBY",
        "metadata": {"ttl_seconds": 30},
    });
    registry
        .put(
            "service-instances.order-processor.orders-ghost",
            serde_json::to_vec(&ghost).expect("json").into(),
        )
        .await
        .expect("put");

    let json = aegis_at(&url, &["instances", "order-processor", "--json"]).await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let listed = parsed(&json);
    let stale = |id: &str| {
        listed["instances"]
            .as_array()
            .and_then(|rows| rows.iter().find(|row| row["instance_id"] == id))
            .map(|row| row["stale"].clone())
    };
    assert_eq!(stale("orders-ghost"), Some(Value::Bool(true)), "{listed}");
    assert_eq!(stale("orders-live"), Some(Value::Bool(false)), "{listed}");

    let text = aegis_at(&url, &["instances", "order-processor"]).await;
    let row = |id: &str| {
        text.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id}: {}", text.stdout))
            .to_owned()
    };
    assert!(row("orders-ghost").contains("STALE"), "{}", text.stdout);
    assert!(!row("orders-live").contains("STALE"), "{}", text.stdout);

    let services = aegis_at(&url, &["services", "--json"]).await;
    assert_eq!(
        parsed(&services)["services"][0]["stale_instances"],
        1,
        "{}",
        services.stdout
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_server_without_jetstream_is_exit_4_not_an_empty_registry() {
    let server = NatsServer::builder()
        .without_jetstream()
        .start()
        .await
        .expect("nats-server without JetStream");
    let url = server.url();
    for command in [
        &["services"][..],
        &["instances", "order-processor"],
        &["leader", "order-processor"],
        &["watch", "order-processor", "--for", "1"],
    ] {
        let run = aegis_at(&url, command).await;
        assert_eq!(
            run.code,
            Some(4),
            "{command:?}: {}{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stderr.contains("no JetStream") && run.stderr.contains("-js"),
            "{command:?}: {}",
            run.stderr
        );
        assert!(
            !run.stdout.contains("no service is registered"),
            "{}",
            run.stdout
        );
    }
    let json = aegis_at(&url, &["services", "--json"]).await;
    assert_eq!(json.code, Some(4), "{}", json.stderr);
    assert_eq!(
        parsed(&json)["error"]["kind"],
        "no_jetstream",
        "{}",
        json.stdout
    );
}

#[tokio::test]
async fn an_operation_the_server_refuses_is_exit_4_naming_it() {
    // A user that may call services but not use JetStream.
    let server = NatsServer::builder()
        .config(
            "authorization { users: [\n  { user: \"caller\", password: \"caller-secret\", \
             permissions: { publish: { allow: [\"rpc.>\", \"$SRV.>\", \"_INBOX.>\"] }, \
             subscribe: { allow: [\"_INBOX.>\"] } } }\n] }",
        )
        .start()
        .await
        .expect("nats-server");
    let url = server.url();
    let began = Instant::now();
    let run = aegis_at(
        &url,
        &[
            "--user",
            "caller",
            "--password",
            "caller-secret",
            "services",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(4), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains("$JS.API"),
        "names the refused subject: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("caller-secret"), "{}", run.stderr);
    assert_eq!(
        parsed(&run)["error"]["kind"],
        "permission_denied",
        "{}",
        run.stdout
    );
    // At once, not after the JetStream request's timeout.
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "took {:?}",
        began.elapsed()
    );
}
