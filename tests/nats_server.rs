//! The test server guard: starts a real nats-server, restarts it on the same port and store,
//! and kills it on drop.

use std::time::Duration;

use aegis_runtime::testing::{NatsServer, ServerError};
use futures_util::StreamExt;
use nix::sys::signal::kill;
use nix::unistd::Pid;

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn starts_on_loopback_with_jetstream() {
    let server = NatsServer::start().await.expect("nats-server");
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    let client = server.connect().await.expect("connect");
    assert!(client.server_info().jetstream, "JetStream is on");
    let (major, minor) = aegis_runtime::testing::MIN_VERSION;
    let version = client.server_info().version;
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    assert!(
        found >= (major, minor),
        "nats-server {version} is older than {major}.{minor}"
    );
}

#[tokio::test]
async fn drop_kills_the_process() {
    let server = NatsServer::start().await.expect("nats-server");
    let pid = server.pid().expect("running");
    assert!(alive(pid));
    drop(server);
    assert!(!alive(pid), "nats-server {pid} survived the guard's drop");
}

#[tokio::test]
async fn drop_kills_the_process_when_a_test_panics() {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let task = tokio::spawn(async move {
        let server = NatsServer::start().await.expect("nats-server");
        pid_tx.send(server.pid().expect("running")).expect("send");
        panic!("a failing test");
    });
    assert!(task.await.is_err(), "the task panicked");
    let pid = pid_rx.recv().expect("pid");
    assert!(!alive(pid), "nats-server {pid} survived a panicking test");
}

#[tokio::test]
async fn restart_keeps_port_and_jetstream_data() {
    let mut server = NatsServer::start().await.expect("nats-server");
    let port = server.port();
    let first_pid = server.pid().expect("running");
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "survives".into(),
            ..Default::default()
        })
        .await
        .expect("bucket");
    kv.put("key", "value".into()).await.expect("put");

    server.stop().await;
    assert!(!server.is_running());
    assert!(!alive(first_pid));
    assert!(
        server.connect().await.is_err(),
        "nothing listens while stopped"
    );

    server.restart().await.expect("restart");
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(first_pid));
    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let kv = js.get_key_value("survives").await.expect("bucket survived");
    assert_eq!(
        kv.get("key").await.expect("get").as_deref(),
        Some(&b"value"[..])
    );
}

#[tokio::test]
async fn a_client_reconnects_after_a_kill_and_restart() {
    let mut server = NatsServer::start().await.expect("nats-server");
    let client = server.connect().await.expect("connect");
    let mut echo = client.subscribe("echo").await.expect("subscribe");
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    client.flush().await.expect("flush");
    assert_eq!(
        &client
            .request("echo", "1".into())
            .await
            .expect("before")
            .payload[..],
        b"1"
    );

    server.kill();
    server.restart().await.expect("restart");

    // The client reconnects on its own and re-subscribes; retry until it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(
            Duration::from_millis(500),
            client.request("echo", "2".into()),
        )
        .await
        {
            Ok(Ok(reply)) => {
                assert_eq!(&reply.payload[..], b"2");
                break;
            }
            _ if tokio::time::Instant::now() < deadline => {}
            other => panic!("no echo 10 s after restart: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_paused_server_answers_nothing_until_resumed() {
    let server = NatsServer::start().await.expect("nats-server");
    let client = server.connect().await.expect("connect");
    // A request nobody serves is answered by the server itself with "no responders": it
    // shows whether the server is alive without needing a responder.
    let probe = || {
        tokio::time::timeout(
            Duration::from_millis(500),
            client.request("nobody", "".into()),
        )
    };
    assert!(
        matches!(probe().await, Ok(Err(_))),
        "a running server answers at once"
    );

    server.pause();
    assert!(probe().await.is_err(), "a paused server must not answer");

    server.resume();
    let answered =
        tokio::time::timeout(Duration::from_secs(5), client.request("nobody", "".into())).await;
    let err = answered
        .expect("answers after resume")
        .expect_err("no responders");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn a_missing_binary_says_how_to_install_it() {
    let err = NatsServer::builder()
        .binary("/nonexistent/nats-server")
        .start()
        .await
        .expect_err("no such binary");
    assert!(matches!(err, ServerError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/nats-server"),
        "{err}"
    );
}

#[tokio::test]
async fn a_binary_that_is_not_nats_server_is_refused() {
    let err = NatsServer::builder()
        .binary("/bin/true")
        .start()
        .await
        .expect_err("not nats");
    assert!(matches!(err, ServerError::TooOld { .. }), "{err:?}");
    assert!(
        err.to_string().contains("scripts/install-nats-server"),
        "{err}"
    );
}
