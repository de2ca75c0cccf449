//! The least-privilege permission sets of docs/security.md, on a real nats-server with an
//! `authorization` block: a service user serves, a client user calls and discovers, and
//! what the client user may not do (delete the leader key, purge the election or registry
//! stream, write a registry entry) the server refuses.

#![allow(clippy::print_stdout)] // what the server refused is printed

mod support;

use std::time::Duration;

use aegis_examples::orders::{
    OrderProcessor, OrderProcessorClient, OrderRequest, QuoteRequest, Reindex,
};
use aegis_examples::process::run_to_exit;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{CommandOptions, RunningService, ServiceRunner};
use async_nats::jetstream;
use tokio::sync::mpsc;

const LEADER_KEY: &str = "sticky-active.order-processor.default.leader";

/// The permission sets, as docs/security.md gives them (the test reads them from there, so
/// the document cannot drift from what is tested).
fn authorization_block() -> String {
    let doc = include_str!("../docs/security.md");
    let start = doc
        .find("```conf\nauthorization {")
        .expect("docs/security.md has the authorization block")
        + "```conf\n".len();
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end].to_owned()
}

/// A connection as `user`, with its own inbox prefix, that reports every error the server
/// sends (permission violations arrive that way, not as results).
async fn connect_as(
    server: &NatsServer,
    user: &str,
    password: &str,
    inbox: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (errors, received) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(inbox)
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    let _ = errors.send(err.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .expect("connect");
    (client, received)
}

fn drain(errors: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(error) = errors.try_recv() {
        all.push(error);
    }
    all
}

/// A server with the documented block, plus an unrestricted `admin` user the test uses to
/// look at what the others could or could not change.
async fn server() -> NatsServer {
    let block = authorization_block().replacen(
        "users: [",
        "users: [\n    { user: \"admin\", password: \"admin-secret\" }",
        1,
    );
    NatsServer::builder()
        .config(block)
        .start()
        .await
        .expect("nats-server with the documented permissions")
}

/// An instance of order-processor running as its service user; it leads its group.
async fn service(server: &NatsServer) -> (RunningService, mpsc::UnboundedReceiver<String>) {
    let (nats, errors) = connect_as(
        server,
        "order-processor",
        "service-secret",
        "_INBOX_order-processor",
    )
    .await;
    let running = tokio::time::timeout(
        Duration::from_secs(20),
        ServiceRunner::new(OrderProcessor::default())
            .nats(nats)
            .leader_ttl(Duration::from_secs(1))
            .start(),
    )
    .await
    .expect("the service starts in time")
    .expect("the service starts with its permission set");
    assert!(
        support::until(Duration::from_secs(10), || async {
            running.leadership().is_active()
        })
        .await,
        "the instance is elected"
    );
    (running, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_a_client_work_with_least_privilege() {
    let server = server().await;
    let (running, mut service_errors) = service(&server).await;
    let (client_nats, mut client_errors) = connect_as(
        &server,
        "orders-client",
        "client-secret",
        "_INBOX_orders-client",
    )
    .await;
    let client = OrderProcessorClient::new(client_nats);
    let quote = client
        .quote(QuoteRequest { items: 2 })
        .await
        .expect("a plain call");
    assert!(quote > 0.0);
    let processed = client
        .process_order(OrderRequest {
            order_id: "ORD-1".into(),
            amount: 5.0,
        })
        .await
        .expect("an exclusive call");
    assert_eq!(processed.instance_id, running.instance_id().as_str());
    let done = client
        .start_reindex(Reindex { orders: 3 }, CommandOptions::default())
        .await
        .expect("command sent")
        .outcome()
        .await
        .expect("the command completes");
    assert_eq!(done.reindexed, 3);
    // A one-off discovery read (a batched direct read of the registry) as the client.
    let (discovering, _) = connect_as(
        &server,
        "orders-client",
        "client-secret",
        "_INBOX_orders-client",
    )
    .await;
    let service = aegis_runtime::subject::ServiceName::new("order-processor").expect("name");
    let began = std::time::Instant::now();
    let listed = aegis_runtime::discovery::Discovery::instances(
        &aegis_runtime::discovery::BasicDiscovery::new(discovering),
        &service,
    )
    .await
    .expect("the client user reads the registry");
    assert_eq!(listed.len(), 1);
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "the read took {:?}",
        began.elapsed()
    );
    // Nothing either user did was refused: the sets are complete for what they do.
    assert_eq!(drain(&mut service_errors), Vec::<String>::new());
    assert_eq!(drain(&mut client_errors), Vec::<String>::new());
    let log = server.log();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    running.stop().await;
}

/// The client's view of a group without a leader, with the client user's permission set:
/// while no Aegis leader is known, the client also looks for a Python SDK leader, with a
/// read the set does not allow (the server drops it without an answer). That look must not
/// hold the call up: the call is served as soon as the next instance leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_user_is_served_as_soon_as_a_leaderless_group_has_a_leader() {
    let server = server().await;
    let (leader, _leader_errors) = service(&server).await;
    let (client_nats, _client_errors) = connect_as(
        &server,
        "orders-client",
        "client-secret",
        "_INBOX_orders-client",
    )
    .await;
    let client = OrderProcessorClient::new(client_nats);
    let order = |n: u32| OrderRequest {
        order_id: format!("ORD-{n}"),
        amount: 1.0,
    };
    client.process_order(order(1)).await.expect("steady state");
    // The only instance leaves (releasing the key); the next one starts a second later.
    leader.stop().await;
    let gap_began = std::time::Instant::now();
    let (next_nats, _next_errors) = connect_as(
        &server,
        "order-processor",
        "service-secret",
        "_INBOX_order-processor",
    )
    .await;
    let next = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ServiceRunner::new(OrderProcessor::default())
            .nats(next_nats)
            .leader_ttl(Duration::from_secs(1))
            .start()
            .await
            .expect("the next instance starts")
    });
    let served = client
        .process_order(order(2))
        .await
        .expect("the call is served by the next leader");
    let took = gap_began.elapsed();
    let next = next.await.expect("started");
    assert_eq!(served.instance_id, next.instance_id().as_str());
    println!("client user, leaderless for 1 s: served after {took:?}");
    assert!(
        took < Duration::from_millis(2500),
        "the call waited {took:?} for a leader that came after about 1 s"
    );
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_user_cannot_touch_the_election_or_the_registry() {
    let server = server().await;
    let (running, _) = service(&server).await;
    let (admin, _) = connect_as(&server, "admin", "admin-secret", "_INBOX_admin").await;
    let admin = jetstream::new(admin);
    let election = admin
        .get_key_value("sticky_active")
        .await
        .expect("election bucket");
    let leader_before = election
        .entry(LEADER_KEY)
        .await
        .expect("read")
        .expect("a leader key");

    let (client, mut errors) = connect_as(
        &server,
        "orders-client",
        "client-secret",
        "_INBOX_orders-client",
    )
    .await;
    let mut js = jetstream::new(client);
    // A refused request is never answered: wait for the server's refusal, not the timeout.
    js.set_timeout(Duration::from_millis(500));
    let attempts: [(&str, &str); 4] = [
        (
            "delete the leader key",
            "$KV.sticky_active.sticky-active.order-processor.default.leader",
        ),
        (
            "purge the election stream",
            "$JS.API.STREAM.PURGE.KV_sticky_active",
        ),
        (
            "write a registry entry",
            "$KV.service_registry.service-instances.order-processor.forged",
        ),
        (
            "purge the registry stream",
            "$JS.API.STREAM.PURGE.KV_service_registry",
        ),
    ];
    for (what, subject) in attempts {
        let attempt = async {
            match what {
                "delete the leader key" => {
                    let store = js
                        .get_key_value("sticky_active")
                        .await
                        .map_err(|e| e.to_string())?;
                    store.delete(LEADER_KEY).await.map_err(|e| e.to_string())
                }
                "purge the election stream" => {
                    let stream = js
                        .get_stream("KV_sticky_active")
                        .await
                        .map_err(|e| e.to_string())?;
                    stream.purge().await.map(|_| ()).map_err(|e| e.to_string())
                }
                "write a registry entry" => {
                    let store = js
                        .get_key_value("service_registry")
                        .await
                        .map_err(|e| e.to_string())?;
                    store
                        .put("service-instances.order-processor.forged", "{}".into())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                _ => {
                    let stream = js
                        .get_stream("KV_service_registry")
                        .await
                        .map_err(|e| e.to_string())?;
                    stream.purge().await.map(|_| ()).map_err(|e| e.to_string())
                }
            }
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), attempt).await;
        assert!(
            !matches!(outcome, Ok(Ok(()))),
            "the client user could {what}"
        );
        // The refusal comes from the server, naming the subject.
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match errors.recv().await {
                    Some(error)
                        if error.contains("Permissions Violation") && error.contains(subject) =>
                    {
                        return error;
                    }
                    Some(_) => {}
                    None => panic!("the connection closed"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!("the server did not refuse the client user's attempt to {what}")
        });
        println!("{what}: {refused}");
    }
    // Nothing changed: the same leader key at the same revision, no forged entry, the leader
    // still leading.
    let leader_after = election
        .entry(LEADER_KEY)
        .await
        .expect("read")
        .expect("a leader key");
    let record = |value: &[u8]| {
        let record: aegis_runtime::election::LeaderRecord =
            aegis_runtime::codec::decode(value).expect("a leader record");
        (record.instance_id, record.elected_at)
    };
    assert_eq!(record(&leader_after.value), record(&leader_before.value));
    assert!(
        leader_after.revision >= leader_before.revision,
        "renewals only"
    );
    let registry = admin
        .get_key_value("service_registry")
        .await
        .expect("registry");
    assert!(
        registry
            .entry("service-instances.order-processor.forged")
            .await
            .expect("read")
            .is_none()
    );
    assert!(running.leadership().is_active());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_as_the_operator_user() {
    let server = server().await;
    let (running, _) = service(&server).await;
    let url = server.url();
    let connection = [
        "--server",
        url.as_str(),
        "--user",
        "operator",
        "--password",
        "operator-secret",
    ];
    for (args, expect) in [
        (&["services"][..], "order-processor"),
        (
            &["instances", "order-processor"][..],
            running.instance_id().as_str(),
        ),
        (
            &["leader", "order-processor"][..],
            running.instance_id().as_str(),
        ),
        (
            &["call", "order-processor", "get_quote", "{\"items\": 2}"][..],
            "19",
        ),
    ] {
        let all: Vec<&str> = args.iter().copied().chain(connection).collect();
        let finished = tokio::task::spawn_blocking({
            let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
            move || {
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                run_to_exit("aegis", &all, Duration::from_secs(30))
            }
        })
        .await
        .expect("join");
        assert!(
            finished.success && finished.stdout.contains(expect),
            "aegis {args:?} as the operator: {finished:?}"
        );
    }
    let log = server.log();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_fails_the_start_at_once_and_names_it() {
    // The service's own set, under another name, without the right to write its registry
    // entries (and with the default inbox prefix, which the runner's connection uses).
    let block = authorization_block();
    let service_user_start = block
        .find("{ user: \"order-processor\"")
        .expect("the service user");
    let service_user_end = service_user_start
        + block[service_user_start..].find("} }").expect("its end")
        + "} }".len();
    let narrow = block[service_user_start..service_user_end]
        .replace("user: \"order-processor\"", "user: \"narrow\"")
        .replace(
            "\"$KV.service_registry.service-instances.order-processor.>\",",
            "",
        )
        .replace(
            "\"_INBOX_order-processor.>\"",
            "\"_INBOX_order-processor.>\", \"_INBOX.>\"",
        );
    assert!(
        !narrow.contains("\"$KV.service_registry.service-instances"),
        "{narrow}"
    );
    let config = block.replacen("users: [", &format!("users: [\n    {narrow}"), 1);
    let server = NatsServer::builder()
        .config(config)
        .start()
        .await
        .expect("nats-server");
    let began = std::time::Instant::now();
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        ServiceRunner::new(OrderProcessor::default())
            .connect_with(
                aegis_runtime::connect::ConnectConfig::new(server.url())
                    .user_and_password("narrow", "service-secret"),
            )
            .start(),
    )
    .await
    .expect("the start ends");
    let took = began.elapsed();
    let err = started.expect_err("the start fails");
    println!("refused start after {took:?}: {err}");
    // A refused write of the registry entry: the registry step's JetStream error says so.
    match &err {
        aegis_runtime::StartError::Registry(aegis_runtime::JetStreamError::PermissionDenied {
            permission,
            subject,
            ..
        }) => {
            assert_eq!(*permission, aegis_runtime::Permission::Publish);
            assert!(
                subject.starts_with("$KV.service_registry.service-instances.order-processor."),
                "{subject}"
            );
        }
        other => panic!("not a refused registry write: {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("$KV.service_registry.service-instances.order-processor."),
        "the error names the refused subject: {message}"
    );
    assert!(message.contains("docs/security.md"), "{message}");
    assert!(!message.contains("service-secret"), "{message}");
    // At once: not after the JetStream timeouts (5 s each) it used to wait out.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// The [`JetStreamError`](aegis_runtime::JetStreamError) in the source chain of `err`.
fn jetstream_error_in(err: &aegis_runtime::StartError) -> Option<&aegis_runtime::JetStreamError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<aegis_runtime::JetStreamError>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_user_without_jetstream_rights_is_told_which_subject_was_refused() {
    // The service may serve its subjects, but not make a single JetStream request.
    let block = authorization_block().replacen(
        "users: [",
        "users: [\n    { user: \"no-js\", password: \"no-js-secret\", permissions: { \
         publish: { allow: [\"_INBOX.>\"] }, \
         subscribe: { allow: [\"rpc.order-processor.>\", \"_INBOX.>\"] } } }",
        1,
    );
    let server = NatsServer::builder()
        .config(block)
        .start()
        .await
        .expect("nats-server");
    let began = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        ServiceRunner::new(OrderProcessor::default())
            .connect_with(
                aegis_runtime::connect::ConnectConfig::new(server.url())
                    .user_and_password("no-js", "no-js-secret"),
            )
            .start(),
    )
    .await
    .expect("the start ends")
    .expect_err("the start fails");
    let took = began.elapsed();
    println!("refused start after {took:?}: {err}");
    let found = jetstream_error_in(&err).expect("a JetStream error in the source chain");
    let aegis_runtime::JetStreamError::PermissionDenied {
        permission,
        subject,
        ..
    } = found
    else {
        panic!("not a refused permission: {found:?}");
    };
    assert_eq!(*permission, aegis_runtime::Permission::Publish);
    // The first JetStream request of a start looks up the registry bucket.
    assert!(subject.starts_with("$JS.API."), "{subject}");
    assert!(subject.contains("KV_service_registry"), "{subject}");
    assert_eq!(found.refused_subject(), Some(subject.as_str()));
    assert!(
        err.to_string().contains("$JS.API.>"),
        "the fix is named: {err}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_jetstream_rights_fails_by_its_deadline_saying_nothing_ran() {
    // A user that may call the service but not read the registry: discovery waits out its
    // JetStream timeouts. The call must end by its deadline and say that it did not run
    // (it used to answer "the method may have run" after 12 s, with nothing sent).
    let block = authorization_block().replacen(
        "users: [",
        "users: [\n    { user: \"bare\", password: \"bare-secret\", permissions: { \
         publish: { allow: [\"rpc.order-processor.>\"] }, \
         subscribe: { allow: [\"_INBOX_bare.>\"] } } }",
        1,
    );
    let server = NatsServer::builder()
        .config(block)
        .start()
        .await
        .expect("nats-server");
    let (running, _) = service(&server).await;
    let (nats, _) = connect_as(&server, "bare", "bare-secret", "_INBOX_bare").await;
    let deadline = Duration::from_secs(2);
    let client = aegis_runtime::ServiceClient::for_service(
        nats,
        aegis_runtime::subject::ServiceName::new("order-processor").expect("name"),
    )
    .with_timeout(deadline);
    let began = std::time::Instant::now();
    let err = client
        .call::<_, f64>("get_quote", &QuoteRequest { items: 2 })
        .await
        .expect_err("discovery cannot answer");
    let took = began.elapsed();
    println!("failed after {took:?}: {err}");
    assert!(
        matches!(
            err.kind(),
            aegis_runtime::CallErrorKind::Unavailable(
                aegis_runtime::discovery::DiscoveryError::TimedOut { waited, .. }
            ) if *waited == deadline
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("did not run"), "{err}");
    assert!(took < deadline + Duration::from_secs(1), "took {took:?}");
    running.stop().await;
}
