//! `aegis dashboard` in a real headless Chromium, against a real nats-server with three
//! `order_service` processes: the page shows the instances and the leader, and after the
//! leader is killed (SIGKILL) it shows the new leader and term within 5 s, without a
//! reload. A screenshot is written to `target/dashboard.png`.
//!
//! Chromium is Debian's `chromium` package (`scripts/test` installs it). Without it the
//! test says why and passes, except under `CI=true`, where a missing browser is a failure.

#![allow(clippy::print_stdout, clippy::print_stderr)] // the skip reason and the timing

mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aegis_examples::failover;
use aegis_examples::process::ChildProcess;
use aegis_runtime::testing::NatsServer;
use serde_json::Value;

const LEADER_TTL: Duration = Duration::from_secs(2);

/// What the page shows, read from its DOM: the instance rows and the leader badge.
const READ_PAGE: &str = r#"(() => {
  const service = document.querySelector('section[data-service="order-processor"]');
  if (!service) return null;
  const leader = service.querySelector('[data-leader-group="default"]');
  return {
    instances: [...service.querySelectorAll('tr[data-instance]')].map((row) => ({
      id: row.dataset.instance, role: row.dataset.role, stale: row.dataset.stale === 'true',
    })),
    leader: leader ? leader.dataset.leader : null,
    term: leader && leader.dataset.term ? Number(leader.dataset.term) : null,
    log: [...document.querySelectorAll('#log li')].map((li) => li.dataset.eventKind + ' ' + li.textContent.trim()),
    loaded: window.__loaded_once === true,
  };
})()"#;

/// Reads the page until `done` holds for what it shows, or `within` passes.
async fn until_page(
    page: &mut browser::Browser,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, Value> {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = page.eval(READ_PAGE).await.expect("the page answers");
        if !last.is_null() && done(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

fn screenshot_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/dashboard.png"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_new_leader_after_a_crash_without_a_reload() {
    let Some(chromium) = browser::binary().filter(|path| path.exists()) else {
        let why = "no Chromium at /usr/bin/chromium (install Debian's `chromium`, as \
                   scripts/test does, or set AEGIS_CHROMIUM)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
        return;
    };
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let ids: Vec<String> = (1..=3).map(|i| format!("orders-{i}")).collect();
    let mut instances: Vec<ChildProcess> = ids
        .iter()
        .map(|id| failover::spawn_instance(&url, id, LEADER_TTL, None))
        .collect();
    let nats = server.connect().await.expect("connect");
    let leader = failover::wait_for_leader(&nats, &ids, Duration::from_secs(15))
        .await
        .expect("a leader");

    let (_dashboard, line) = ChildProcess::start_until(
        "aegis",
        &["--server", &url, "dashboard", "--listen", "127.0.0.1:0"],
        "dashboard: ",
    );
    let address = line.trim_start_matches("dashboard: ").trim().to_owned();
    assert!(address.starts_with("http://127.0.0.1:"), "{line}");

    let mut page = browser::Browser::open(&chromium, &address)
        .await
        .expect("Chromium opens the dashboard");
    let before = until_page(&mut page, Duration::from_secs(15), |shown| {
        shown["instances"].as_array().map(Vec::len) == Some(3) && shown["leader"] == leader.as_str()
    })
    .await
    .unwrap_or_else(|shown| panic!("the page never showed 3 instances and {leader}: {shown}"));
    let old_term = before["term"].as_u64().expect("a term");
    let roles: Vec<&str> = before["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["role"].as_str())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "ACTIVE").count(),
        1,
        "one ACTIVE role among {roles:?}"
    );

    // The JSON API beside the page, fetched by the page's own origin.
    let api = page
        .eval("fetch('/api/services').then((r) => r.json())")
        .await
        .expect("/api/services");
    assert_eq!(api["services"][0]["name"], "order-processor", "{api}");
    assert_eq!(api["services"][0]["instances"], 3, "{api}");
    let one = page
        .eval("fetch('/api/services/order-processor').then((r) => r.json())")
        .await
        .expect("/api/services/order-processor");
    let endpoints = one["endpoints"].as_array().expect("per-instance counters");
    assert_eq!(endpoints.len(), 3, "{one}");
    assert!(
        endpoints.iter().all(|i| i["endpoints"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["name"] == "process_order"))),
        "every instance reports process_order: {one}"
    );
    let missing = page
        .eval("fetch('/api/services/nope').then((r) => r.status)")
        .await
        .expect("/api/services/nope");
    assert_eq!(missing, 404);

    // Marks this page load: a reload would lose it.
    page.eval("window.__loaded_once = true")
        .await
        .expect("mark");
    let victim = ids.iter().position(|id| *id == leader).expect("leader");
    instances[victim].kill();
    let killed = Instant::now();
    let after = until_page(&mut page, Duration::from_secs(5), |shown| {
        shown["leader"].as_str().is_some_and(|now| now != leader)
            && shown["term"].as_u64().is_some_and(|term| term > old_term)
    })
    .await
    .unwrap_or_else(|shown| {
        panic!("within 5 s of the kill the page did not show a new leader and term: {shown}")
    });
    println!(
        "dashboard: new leader {} (term {}) on the page {:?} after SIGKILL of {leader}",
        after["leader"],
        after["term"],
        killed.elapsed()
    );
    assert_eq!(after["loaded"], true, "the page was reloaded");
    let new_leader = after["leader"].as_str().expect("leader").to_owned();
    // The event log says so, pushed as it happened.
    let logged = until_page(&mut page, Duration::from_secs(5), |shown| {
        shown["log"].as_array().is_some_and(|log| {
            log.iter().any(|line| {
                line.as_str().is_some_and(|l| {
                    l.starts_with("leader_elected") && l.contains(new_leader.as_str())
                })
            })
        })
    })
    .await;
    assert!(
        logged.is_ok(),
        "no leader_elected event for {new_leader}: {logged:?}"
    );
    // The crashed instance is marked stale, then goes when its entry expires.
    let gone = until_page(&mut page, Duration::from_secs(10), |shown| {
        shown["instances"].as_array().is_some_and(|rows| {
            rows.iter()
                .all(|row| row["id"] != leader.as_str() || row["stale"] == true)
        })
    })
    .await;
    assert!(gone.is_ok(), "{leader} still shown as live: {gone:?}");

    let path = screenshot_path();
    page.screenshot(&path).await.expect("screenshot");
    println!("screenshot: {}", path.display());
}
