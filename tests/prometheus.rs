//! The `prometheus` feature: the metrics of real calls, a failover and a command served
//! over HTTP, as a Prometheus scraper reads them; and the Grafana dashboard, whose queries
//! must name metrics the runtime records. Its own test binary, because a process has one
//! metrics recorder (installed by the one test that scrapes).

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use aegis_examples::echo::{Echo, EchoClient, Say};
use aegis_examples::orders::{
    OrderCreated, OrderProcessor, OrderProcessorClient, OrderRequest, Reindex,
};
use aegis_runtime::events::EventPublisher;
use aegis_runtime::metrics::{self, MetricKind, install_prometheus_exporter};
use aegis_runtime::subject::{self, InstanceId, ServiceName};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{CommandOptions, ServiceRunner};

/// `GET /metrics` over plain HTTP/1.1; the whole response.
async fn scrape(address: SocketAddr) -> String {
    let response = support::http_get(&address.to_string(), "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample line that starts with `series` (name and labels), if any.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The sum of the values of every sample line of `name` whose labels include all of
/// `labels` (`key="value"` pairs); `None` when no line matches.
fn total(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = body
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_failover_and_commands_are_counted_on_the_prometheus_endpoint() {
    let address = {
        // A free port: bound, read, released for the exporter.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
        listener.local_addr().expect("its address")
    };
    install_prometheus_exporter(address).expect("the only recorder of this binary");

    let server = NatsServer::start().await.expect("nats-server");
    let instance = ServiceRunner::new(Echo)
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    let client = EchoClient::new(server.connect().await.expect("connect"));
    for _ in 0..3 {
        client
            .say(Say { text: "hi".into() })
            .await
            .expect("an echo");
    }
    let failed = client.say(Say { text: "".into() }).await;
    assert!(failed.is_err(), "an empty text is a handler error");

    let body = scrape(address).await;
    let calls = |outcome: &str| {
        sample(
            &body,
            &format!(
                r#"{}{{service="echo",method="say",outcome="{outcome}"}}"#,
                metrics::CALLS
            ),
        )
    };
    assert_eq!(calls("ok"), Some(3.0), "{body}");
    assert_eq!(calls("error"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            &format!(
                r#"{}{{service="echo",method="say",kind="handler"}}"#,
                metrics::ERRORS
            )
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"{}{{service="echo",method="say"}}"#, metrics::ATTEMPTS)
        ),
        Some(4.0),
        "{body}"
    );
    assert!(
        body.contains(&format!("# TYPE {} ", metrics::CALL_SECONDS)),
        "the call-time histogram is served: {body}"
    );
    instance.stop().await;

    // Server side, a failover and a command: two order processors in this process (so
    // their series share labels and add up), the first the leader.
    let first = support::start_orders(&server, "orders-prom-1").await;
    assert!(
        support::until(Duration::from_secs(10), || async {
            first.leadership().is_active()
        })
        .await,
        "the first instance leads"
    );
    // Quick heartbeats, so a deleted registry entry is written again soon.
    let second = ServiceRunner::new(OrderProcessor::default())
        .nats(server.connect().await.expect("connect"))
        .instance_id("orders-prom-2")
        .heartbeat_interval(Duration::from_millis(300))
        .start()
        .await
        .expect("start");
    let orders = OrderProcessorClient::new(server.connect().await.expect("connect"));
    let order = |n: u32, amount: f64| OrderRequest {
        order_id: format!("ORD-{n}"),
        amount,
    };
    for n in 0..3 {
        orders
            .process_order(order(n, 1.0))
            .await
            .expect("processed");
    }
    orders
        .process_order(order(99, 0.0))
        .await
        .expect_err("a zero amount is a handler error");
    first.stop().await;
    assert!(
        support::until(Duration::from_secs(15), || async {
            second.leadership().is_active()
        })
        .await,
        "the second instance takes over"
    );
    let term = second.leadership().term().expect("a term");
    for n in 3..5 {
        orders
            .process_order(order(n, 1.0))
            .await
            .expect("processed by the new leader");
    }
    let reindexed = orders
        .start_reindex(Reindex { orders: 10 }, CommandOptions::default())
        .await
        .expect("sent")
        .outcome()
        .await
        .expect("completed");
    assert_eq!(reindexed.reindexed, 10);
    EventPublisher::new(server.connect().await.expect("connect"))
        .publish(
            "orders",
            "created",
            &OrderCreated {
                order_id: "ORD-1".into(),
            },
        )
        .await
        .expect("published");
    // An operator deletes the second instance's registry entry: its next heartbeat writes
    // it again.
    let registry = async_nats::jetstream::new(server.connect().await.expect("connect"))
        .get_key_value(subject::REGISTRY_BUCKET)
        .await
        .expect("the registry");
    registry
        .delete(subject::registry_key(
            &ServiceName::new("order-processor").expect("a name"),
            &InstanceId::new("orders-prom-2").expect("an id"),
        ))
        .await
        .expect("deleted");
    // The event's ack and the entry's re-creation happen in the background.
    let settled = |body: &str| {
        total(body, metrics::EVENT_ACKS, &[r#"ack="ack""#]) == Some(1.0)
            && total(
                body,
                metrics::REGISTRATION_RECREATIONS,
                &[r#"service="order-processor""#],
            )
            .is_some_and(|n| n >= 1.0)
    };
    assert!(
        support::until(Duration::from_secs(10), || async {
            settled(&scrape(address).await)
        })
        .await,
        "the event is acked and the entry re-created: {}",
        scrape(address).await
    );

    let body = scrape(address).await;
    let process = [r#"service="order-processor""#, r#"method="process_order""#];
    let with = |extra: &'static str| {
        let mut labels = process.to_vec();
        labels.push(extra);
        labels
    };
    // Every recorded metric is described, with its HELP text.
    for name in [
        metrics::SERVER_REQUESTS,
        metrics::SERVER_ERRORS,
        metrics::SERVER_HANDLER_SECONDS,
        metrics::SERVER_QUEUE_SECONDS,
        metrics::SERVER_IN_FLIGHT,
        metrics::LEADER,
        metrics::LEADER_TERM,
        metrics::LEADER_CHANGES,
        metrics::COMMAND_DELIVERIES,
        metrics::EVENT_ACKS,
        metrics::REGISTRATION_RECREATIONS,
        metrics::CALLS,
        metrics::CALL_SECONDS,
        metrics::DISCOVERY_HITS,
    ] {
        let help = metrics::ALL
            .iter()
            .find(|info| info.name == name)
            .expect("listed in ALL")
            .help;
        assert!(
            body.contains(&format!("# HELP {name} {help}")),
            "{name} has its HELP text: {body}"
        );
    }
    // Latencies are histograms with buckets, the client's too.
    for name in [
        metrics::SERVER_HANDLER_SECONDS,
        metrics::SERVER_QUEUE_SECONDS,
        metrics::CALL_SECONDS,
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} histogram")),
            "{name} is a histogram: {body}"
        );
        assert!(
            body.contains(&format!("{name}_bucket{{")) && body.contains(r#"le="+Inf""#),
            "{name} has buckets: {body}"
        );
    }
    let count = |name: &str, labels: &[&str]| total(&body, name, labels);
    assert_eq!(
        count(metrics::SERVER_REQUESTS, &with(r#"outcome="ok""#)),
        Some(5.0),
        "five orders processed, on either leader: {body}"
    );
    assert_eq!(
        count(metrics::SERVER_ERRORS, &with(r#"kind="handler""#)),
        Some(1.0),
        "{body}"
    );
    let handler_count = format!("{}_count", metrics::SERVER_HANDLER_SECONDS);
    let answered = count(metrics::SERVER_REQUESTS, &process).expect("requests");
    assert_eq!(
        count(&handler_count, &process),
        Some(answered),
        "one handler time per answered call: {body}"
    );
    assert_eq!(
        count(metrics::SERVER_IN_FLIGHT, &process),
        Some(0.0),
        "nothing runs now: {body}"
    );
    let group = r#"service="order-processor""#;
    assert_eq!(
        count(metrics::LEADER_CHANGES, &[group, r#"change="elected""#]),
        Some(2.0),
        "the first, then the second instance was elected: {body}"
    );
    assert_eq!(
        count(metrics::LEADER_CHANGES, &[group, r#"change="lost""#]),
        Some(1.0),
        "the first lost its leadership when it stopped: {body}"
    );
    assert_eq!(
        count(metrics::LEADER, &[group]),
        Some(1.0),
        "one leader now: {body}"
    );
    #[allow(clippy::cast_precision_loss)] // a KV revision, far below 2^53
    let term = term as f64;
    assert_eq!(
        count(metrics::LEADER_TERM, &[group]),
        Some(term),
        "the new leader's term: {body}"
    );
    assert_eq!(
        count(metrics::COMMAND_DELIVERIES, &[r#"command="reindex""#]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        count(metrics::COMMAND_REDELIVERIES, &[r#"command="reindex""#]),
        None,
        "delivered once: {body}"
    );
    second.stop().await;
}

/// Every name the dashboard's queries use, with `_bucket`, `_sum` and `_count` taken off
/// histogram series.
fn dashboard_metric_names(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn exprs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "query", serde_json::Value::String(expr)) => found.push(expr),
                        _ => exprs(value, found),
                    }
                }
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| exprs(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    exprs(dashboard, &mut found);
    assert!(!found.is_empty(), "the dashboard has queries");
    let mut names = Vec::new();
    for expr in found {
        let mut named = 0;
        for (start, _) in expr.match_indices("aegis_") {
            if start > 0
                && expr[..start]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push((name, expr.to_owned()));
            named += 1;
        }
        assert!(named > 0, "the query {expr:?} names an Aegis metric");
    }
    names
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_runtime_records() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/aegis.json");
    let text = std::fs::read_to_string(path).expect("docs/grafana/aegis.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let known: BTreeSet<&str> = metrics::ALL.iter().map(|info| info.name).collect();
    for (name, expr) in dashboard_metric_names(&dashboard) {
        let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            metrics::ALL
                .iter()
                .any(|info| info.name == base && info.kind == MetricKind::Histogram)
                .then_some(base)
        });
        let base = histogram.unwrap_or(&name);
        assert!(
            known.contains(base),
            "the query {expr:?} names {name}, which Aegis does not record"
        );
        if expr.contains("histogram_quantile") && name.ends_with("_bucket") {
            assert!(histogram.is_some(), "{name} is a histogram's buckets");
        }
    }
    // Latency percentiles come from buckets.
    assert!(
        text.contains("histogram_quantile") && text.contains("_bucket"),
        "the dashboard shows latency percentiles"
    );
}

#[test]
fn the_observability_docs_list_every_metric() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/observability.md");
    let text = std::fs::read_to_string(path).expect("docs/observability.md");
    for info in metrics::ALL {
        assert!(
            text.contains(&format!("| `{}` |", info.name)),
            "docs/observability.md has a row for {}",
            info.name
        );
    }
}

#[test]
fn every_metric_is_listed_once_with_help_text() {
    let mut names = BTreeSet::new();
    for info in metrics::ALL {
        assert!(names.insert(info.name), "{} is listed twice", info.name);
        assert!(!info.help.is_empty(), "{} has HELP text", info.name);
        assert!(info.name.starts_with("aegis_"), "{}", info.name);
        assert_eq!(
            info.kind == MetricKind::Counter,
            info.name.ends_with("_total"),
            "counters, and only they, end in _total: {}",
            info.name
        );
        assert_eq!(
            info.kind == MetricKind::Histogram,
            info.unit == "seconds",
            "histograms are latencies in seconds: {}",
            info.name
        );
    }
}
