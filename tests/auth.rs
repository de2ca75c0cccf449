//! Authenticated connections: a real nats-server with an `authorization` block, and the
//! runner, the typed client and the `aegis` command connecting to it.

mod support;

use std::time::Duration;

use aegis_examples::orders::OrderProcessor;
use aegis_examples::process::{Finished, run_to_exit};
use aegis_runtime::ServiceRunner;
use aegis_runtime::testing::NatsServer;

const PASSWORD: &str = "s3cret-Pa55";

/// A server that admits only `svc` with [`PASSWORD`].
async fn password_server() -> NatsServer {
    NatsServer::builder()
        .config(format!(
            "authorization {{ user: svc, password: \"{PASSWORD}\" }}"
        ))
        .start()
        .await
        .expect("nats-server")
}

/// Runs `aegis args…` in a blocking thread and waits up to 30 s for it to exit.
async fn aegis(args: Vec<String>) -> Finished {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit("aegis", &args, Duration::from_secs(30))
    })
    .await
    .expect("aegis thread")
}

#[tokio::test]
async fn credentials_in_the_url_are_used_by_the_runner_and_the_cli() {
    let server = password_server().await;
    let url = format!("nats://svc:{PASSWORD}@127.0.0.1:{}", server.port());
    let running = ServiceRunner::new(OrderProcessor::default())
        .url(url.clone())
        .instance_id("orders-url")
        .start()
        .await
        .expect("start with credentials in the URL");
    let services = aegis(vec!["--server".into(), url, "services".into()]).await;
    assert!(services.success, "{}", services.stderr);
    assert!(
        services.stdout.contains("order-processor"),
        "{}",
        services.stdout
    );
    running.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_rejected_without_the_password() {
    let server = password_server().await;
    let wrong = "wr0ng-Secret";
    let url = format!("nats://svc:{wrong}@127.0.0.1:{}", server.port());
    let run = aegis(vec!["--server".into(), url, "services".into()]).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("authentication rejected"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(wrong),
        "the password leaked: {}",
        run.stderr
    );
}
