//! Authenticated connections: a real nats-server with an `authorization` block (user and
//! password, token, nkey), operator-mode JWTs (a creds file), or TLS with a client
//! certificate; and the runner, a typed client and every `aegis` subcommand connecting to it.

#![allow(clippy::print_stdout)] // the errors shown and the start times are printed

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aegis_examples::orders::{OrderProcessor, OrderProcessorClient, OrderRequest};
use aegis_examples::process::{Finished, run_to_exit, workspace_binary};
use aegis_runtime::ServiceRunner;
use aegis_runtime::connect::{ConnectConfig, ConnectError};
use aegis_runtime::testing::{NatsCluster, NatsServer};
use nkeys::KeyPair;
use support::until;

const PASSWORD: &str = "s3cret-Pa55";
const TOKEN: &str = "t0ken-Xyz-42";

/// A server that demands one kind of credential, with a config and `aegis` flags that
/// satisfy it.
struct Secured {
    server: NatsServer,
    /// The server URL, without credentials.
    url: String,
    config: ConnectConfig,
    /// The `aegis` flags besides `--server`.
    flags: Vec<String>,
    /// Key, certificate and creds files, removed at the end.
    _files: tempfile::TempDir,
}

fn files() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aegis-auth-")
        .tempdir()
        .expect("temp dir")
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

async fn start_server(config: String) -> NatsServer {
    NatsServer::builder()
        .config(config)
        .start()
        .await
        .expect("nats-server")
}

/// A server that admits only `svc` with [`PASSWORD`].
async fn password_server() -> NatsServer {
    start_server(format!(
        "authorization {{ user: svc, password: \"{PASSWORD}\" }}"
    ))
    .await
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

/// Starts an order processor with `secured`'s config, calls it with a typed client and
/// runs every inspection subcommand of `aegis` against it.
async fn serve_call_and_inspect(secured: &Secured, id: &str) {
    // The server really demands the credential: none gets a typed error.
    let bare = ConnectConfig::new(secured.url.clone())
        .connect()
        .await
        .expect_err("a connection without credentials");
    assert!(
        matches!(
            bare,
            ConnectError::AuthenticationRejected { .. } | ConnectError::Tls { .. }
        ),
        "{bare:?}"
    );
    println!("without credentials: {bare}");

    let started = Instant::now();
    let running = ServiceRunner::new(OrderProcessor::default())
        .connect_with(secured.config.clone())
        .instance_id(id)
        .start()
        .await
        .expect("the service starts with the credentials");
    let elected = until(Duration::from_secs(10), || async {
        running.leadership().is_active()
    })
    .await;
    assert!(elected, "never elected");
    println!("{id}: serving and elected in {:?}", started.elapsed());

    let client = OrderProcessorClient::new(secured.config.connect().await.expect("client"));
    let done = client
        .process_order(OrderRequest {
            order_id: format!("ORD-{id}"),
            amount: 1.0,
        })
        .await
        .expect("a typed call");
    assert_eq!(done.instance_id, id);

    let commands: [&[&str]; 6] = [
        &["services"],
        &["instances", "order-processor"],
        &["leader", "order-processor"],
        &["schema", "order-processor"],
        &["call", "order-processor", "whoami"],
        &["watch", "order-processor", "--for", "0.5"],
    ];
    for command in commands {
        let mut args = vec!["--server".to_owned(), secured.url.clone()];
        args.extend(secured.flags.iter().cloned());
        args.extend(command.iter().map(|a| (*a).to_owned()));
        let run = aegis(args).await;
        assert!(
            run.success,
            "aegis {command:?} failed: {}\n{}",
            run.stderr, run.stdout
        );
        assert!(
            run.stdout.contains("order-processor") || run.stdout.contains(id),
            "aegis {command:?} shows nothing of the service: {}",
            run.stdout
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn user_and_password() {
    let server = password_server().await;
    let url = server.url();
    let secured = Secured {
        config: ConnectConfig::new(url.clone()).user_and_password("svc", PASSWORD),
        flags: vec![
            "--user".into(),
            "svc".into(),
            "--password".into(),
            PASSWORD.into(),
        ],
        url,
        server,
        _files: files(),
    };
    serve_call_and_inspect(&secured, "orders-password").await;
    drop(secured.server);
}

#[tokio::test]
async fn token() {
    let server = start_server(format!("authorization {{ token: \"{TOKEN}\" }}")).await;
    let url = server.url();
    let secured = Secured {
        config: ConnectConfig::new(url.clone()).token(TOKEN),
        flags: vec!["--token".into(), TOKEN.into()],
        url,
        server,
        _files: files(),
    };
    serve_call_and_inspect(&secured, "orders-token").await;
}

#[tokio::test]
async fn nkey() {
    let user = KeyPair::new_user();
    let dir = files();
    let seed_file = dir.path().join("svc.nk");
    std::fs::write(&seed_file, user.seed().expect("seed")).expect("write seed");
    let server = start_server(format!(
        "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}",
        user.public_key()
    ))
    .await;
    let url = server.url();
    let secured = Secured {
        config: ConnectConfig::new(url.clone()).nkey_file(&seed_file),
        flags: vec!["--nkey".into(), path_str(&seed_file)],
        url,
        server,
        _files: dir,
    };
    serve_call_and_inspect(&secured, "orders-nkey").await;
}

#[tokio::test]
async fn creds_file() {
    // A committed test operator, its account and system account (operator.jwt,
    // resolver.conf) and a user of that account (aegis-test-user.creds): keys made for
    // these tests alone, offline, protecting nothing else.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/creds");
    let resolver = std::fs::read_to_string(fixtures.join("resolver.conf")).expect("resolver");
    let creds = fixtures.join("aegis-test-user.creds");
    let server = start_server(format!(
        "operator: {:?}\n{resolver}",
        path_str(&fixtures.join("operator.jwt")),
    ))
    .await;
    let url = server.url();
    let secured = Secured {
        config: ConnectConfig::new(url.clone()).creds_file(&creds),
        flags: vec!["--creds".into(), path_str(&creds)],
        url,
        server,
        _files: files(),
    };
    serve_call_and_inspect(&secured, "orders-creds").await;
}

/// Runs `openssl args…` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed for the TLS test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, and a server and a client certificate it signed (P-256 keys), in `dir`.
fn make_certificates(dir: &Path) {
    let key = |name: &str| {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ],
        );
    };
    key("ca.key");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-days",
            "2",
            "-subj",
            "/CN=aegis-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.pem",
        ],
    );
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        key(&format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN=aegis-test-{name}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n\
                 keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"
            ),
        )
        .expect("write extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

#[tokio::test]
async fn tls_with_a_test_ca_and_a_client_certificate() {
    let dir = files();
    make_certificates(dir.path());
    let file = |name: &str| -> PathBuf { dir.path().join(name) };
    let server = start_server(format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 5\n}}\n",
        path_str(&file("server.pem")),
        path_str(&file("server.key")),
        path_str(&file("ca.pem")),
    ))
    .await;
    let url = format!("tls://127.0.0.1:{}", server.port());
    // A CA alone is not enough: the server wants a client certificate.
    let no_cert = ConnectConfig::new(url.clone())
        .tls_ca(file("ca.pem"))
        .connect()
        .await
        .expect_err("no client certificate");
    assert!(matches!(no_cert, ConnectError::Tls { .. }), "{no_cert:?}");
    println!("without a client certificate: {no_cert}");
    let secured = Secured {
        config: ConnectConfig::new(url.clone())
            .tls_ca(file("ca.pem"))
            .tls_client_cert(file("client.pem"), file("client.key")),
        flags: vec![
            "--tls-ca".into(),
            path_str(&file("ca.pem")),
            "--tls-cert".into(),
            path_str(&file("client.pem")),
            "--tls-key".into(),
            path_str(&file("client.key")),
        ],
        url,
        server,
        _files: files(),
    };
    serve_call_and_inspect(&secured, "orders-tls").await;
    // Without the test CA the server's certificate is not trusted: a TLS error.
    let untrusted = ConnectConfig::new(secured.url.clone())
        .tls_client_cert(file("client.pem"), file("client.key"))
        .connect()
        .await
        .expect_err("an untrusted server certificate");
    assert!(matches!(untrusted, ConnectError::Tls { .. }), "{untrusted}");

    // A server that wants the TLS handshake first. It falls back to the plain greeting
    // after 400 ms (which lets the test harness, waiting 500 ms for it, see it is up): a
    // client that starts with TLS does not wait for that, one that does not waits.
    let first = start_server(format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  handshake_first: \"400ms\"\n}}\n",
        path_str(&file("server.pem")),
        path_str(&file("server.key")),
        path_str(&file("ca.pem")),
    ))
    .await;
    let url = format!("tls://127.0.0.1:{}", first.port());
    let config = ConnectConfig::new(url.clone())
        .tls_ca(file("ca.pem"))
        .tls_client_cert(file("client.pem"), file("client.key"))
        .tls_first(true);
    let started = Instant::now();
    config.connect().await.expect("connect with TLS first");
    let took = started.elapsed();
    let started = Instant::now();
    ConnectConfig::new(format!("tls://127.0.0.1:{}", first.port()))
        .tls_ca(file("ca.pem"))
        .tls_client_cert(file("client.pem"), file("client.key"))
        .connect()
        .await
        .expect("connect through the fallback");
    let fallback = started.elapsed();
    println!("TLS-first connection in {took:?}, through the fallback in {fallback:?}");
    assert!(
        fallback >= Duration::from_millis(400),
        "no fallback wait: {fallback:?}"
    );
    assert!(
        took < Duration::from_millis(400),
        "waited for the fallback: {took:?}"
    );
    let running = ServiceRunner::new(OrderProcessor::default())
        .connect_with(config.clone())
        .instance_id("orders-tls-first")
        .start()
        .await
        .expect("start with TLS first");
    let mut args = vec!["--server".to_owned(), url, "--tls-first".to_owned()];
    args.extend(secured.flags.iter().cloned());
    args.push("services".to_owned());
    let services = aegis(args).await;
    assert!(services.success, "{}", services.stderr);
    assert!(
        services.stdout.contains("order-processor"),
        "{}",
        services.stdout
    );
    running.stop().await;
    drop(dir);
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
async fn the_conventional_environment_variables_are_read_by_the_cli() {
    let server = password_server().await;
    let url = server.url();
    let running = ServiceRunner::new(OrderProcessor::default())
        .connect_with(ConnectConfig::new(url.clone()).user_and_password("svc", PASSWORD))
        .instance_id("orders-env")
        .start()
        .await
        .expect("start");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(workspace_binary("aegis"))
            .arg("services")
            .env("NATS_URL", url)
            .env("NATS_USER", "svc")
            .env("NATS_PASSWORD", PASSWORD)
            .output()
            .expect("run aegis")
    })
    .await
    .expect("aegis thread");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("order-processor"), "{stdout}");
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

    // The same through the flags, and through the library's typed error.
    let flags = vec![
        "--server".into(),
        server.url(),
        "--user".into(),
        "svc".into(),
        "--password".into(),
        wrong.into(),
        "services".into(),
    ];
    let run = aegis(flags).await;
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
    let err = ConnectConfig::new(server.url())
        .user_and_password("svc", wrong)
        .connect()
        .await
        .expect_err("a wrong password");
    assert!(err.is_auth_rejected(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(wrong), "{err:?}");
}

#[tokio::test]
async fn a_comma_separated_server_list_reaches_the_cluster() {
    let cluster = NatsCluster::start().await.expect("cluster");
    // A dead address first: the list goes on to the live nodes.
    let mut urls = vec!["nats://127.0.0.1:1".to_owned()];
    urls.extend(cluster.urls());
    let list = urls.join(",");
    let running = ServiceRunner::new(OrderProcessor::default())
        .url(list.clone())
        .instance_id("orders-list")
        .start()
        .await
        .expect("start with a server list");
    let client = OrderProcessorClient::new(
        ConnectConfig::new(list.clone())
            .connect()
            .await
            .expect("client"),
    );
    client.health_check().await.expect("a call over the list");
    let services = aegis(vec!["--server".into(), list, "services".into()]).await;
    assert!(services.success, "{}", services.stderr);
    assert!(
        services.stdout.contains("order-processor"),
        "{}",
        services.stdout
    );
    running.stop().await;
}

#[tokio::test]
async fn a_refused_permission_is_counted() {
    let snapshotter = support::metrics_recorder();
    let server = start_server(format!(
        "authorization {{ users: [ {{ user: limited, password: \"{PASSWORD}\", \
         permissions: {{ publish: {{ deny: [\"forbidden.>\"] }} }} }} ] }}"
    ))
    .await;
    let nats = ConnectConfig::new(server.url())
        .user_and_password("limited", PASSWORD)
        .connect()
        .await
        .expect("connect");
    nats.publish("forbidden.x", "no".into())
        .await
        .expect("queued");
    nats.flush().await.expect("flush");
    let mut violations = 0;
    let counted = until(Duration::from_secs(10), || {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let permission = key
                .key()
                .labels()
                .any(|l| l.value() == "permissions_violation");
            if key.key().name() == "aegis_nats_connection_events_total"
                && permission
                && let metrics_util::debugging::DebugValue::Counter(n) = value
            {
                violations += n;
            }
        }
        let seen = violations > 0;
        async move { seen }
    })
    .await;
    assert!(counted, "the refused publish was not counted");
}
