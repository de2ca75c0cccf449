//! The `prometheus` feature: the metrics of real calls served over HTTP, as a Prometheus
//! scraper reads them. Its own test binary, because a process has one metrics recorder.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use aegis_examples::echo::{Echo, EchoClient, Say};
use aegis_runtime::ServiceRunner;
use aegis_runtime::metrics::{self, install_prometheus_exporter};
use aegis_runtime::testing::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` over plain HTTP/1.1; the body.
async fn scrape(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the exporter listens");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
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

#[tokio::test]
async fn calls_are_counted_on_the_prometheus_endpoint() {
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
}
