//! Commands as a work queue over several instances, and the Python SDK's command envelope.
//! (Progress, failures, retries and timeouts through the generated client are in
//! `service_macro.rs`.) Real nats-server, real instances.

#![allow(clippy::print_stdout)] // the spread over instances is printed

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_runtime::codec::{self, CommandCallback, CommandStatus};
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{CommandOptions, Progress, RunningService, ServiceRunner, service};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Job {
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Done {
    n: u32,
    instance: String,
}

/// Which instance ran which job, every time one ran.
#[derive(Clone, Default)]
struct Worker {
    runs: Arc<Mutex<Vec<(u32, String)>>>,
    instance: String,
}

/// The service name the Python SDK's captured command is addressed to.
#[service(name = "ev-svc", version = "1.0.0")]
impl Worker {
    #[command]
    async fn reindex(&self, job: Job, progress: Progress) -> Result<Done, String> {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push((job.n, self.instance.clone()));
        }
        progress
            .report(50.0, "half")
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Done {
            n: job.n,
            instance: self.instance.clone(),
        })
    }
}

async fn start(
    server: &NatsServer,
    id: &str,
    runs: &Arc<Mutex<Vec<(u32, String)>>>,
) -> RunningService {
    let worker = Worker {
        runs: runs.clone(),
        instance: id.to_owned(),
    };
    ServiceRunner::new(worker)
        .nats(server.connect().await.expect("connect"))
        .instance_id(id)
        .start()
        .await
        .expect("start")
}

#[tokio::test]
async fn thirty_commands_over_three_instances_each_complete_once() {
    let server = NatsServer::start().await.expect("nats-server");
    let runs = Arc::default();
    let mut instances = Vec::new();
    for id in ["worker-1", "worker-2", "worker-3"] {
        instances.push(start(&server, id, &runs).await);
    }
    let client = WorkerClient::new(server.connect().await.expect("connect"));
    let mut handles = Vec::new();
    for n in 0..30 {
        handles.push(
            client
                .start_reindex(Job { n }, CommandOptions::default())
                .await
                .expect("sent"),
        );
    }
    let mut done = Vec::new();
    for handle in handles {
        done.push(handle.outcome().await.expect("completed"));
    }
    let mut ns: Vec<u32> = done.iter().map(|d| d.n).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..30).collect::<Vec<_>>(), "every command completed");
    let runs = runs.lock().expect("runs").clone();
    assert_eq!(runs.len(), 30, "each ran exactly once: {runs:?}");
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for (_, instance) in &runs {
        *spread.entry(instance.clone()).or_default() += 1;
    }
    println!("30 commands over 3 instances: {spread:?}");
    assert!(
        spread.len() >= 2,
        "more than one instance takes commands: {spread:?}"
    );
    for instance in instances {
        instance.stop().await;
    }
}

#[tokio::test]
async fn a_python_sdk_command_is_handled_and_answered() {
    let (subject, bytes, captured) = support::python_vector("command_publish");
    let id = captured["message_id"].as_str().expect("id").to_owned();

    let server = NatsServer::start().await.expect("nats-server");
    let runs = Arc::default();
    let instance = start(&server, "worker-1", &runs).await;
    let nats = server.connect().await.expect("connect");
    let mut callback = nats
        .subscribe(format!("commands.callback.{id}"))
        .await
        .expect("subscribe");
    let mut progress = nats
        .subscribe(format!("commands.progress.{id}"))
        .await
        .expect("subscribe");
    async_nats::jetstream::new(nats.clone())
        .publish(subject, bytes.into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let update = tokio::time::timeout(Duration::from_secs(10), progress.next())
        .await
        .expect("progress in time")
        .expect("progress");
    let update: codec::CommandProgress = codec::decode(&update.payload).expect("decode");
    assert_eq!((update.progress, update.status.as_str()), (50.0, "half"));
    let outcome = tokio::time::timeout(Duration::from_secs(10), callback.next())
        .await
        .expect("callback in time")
        .expect("callback");
    let outcome: CommandCallback = codec::decode(&outcome.payload).expect("decode");
    assert_eq!(outcome.status, CommandStatus::Completed);
    assert_eq!(outcome.result.expect("result")["n"], 3);
    assert_eq!(runs.lock().expect("runs").len(), 1);
    instance.stop().await;
}

/// Records the order in which commands start on a single, one-at-a-time instance.
#[derive(Clone, Default)]
struct Sequencer {
    started: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Step {
    name: String,
    millis: u64,
}

#[service(name = "sequencer", version = "1.0.0")]
impl Sequencer {
    #[command]
    async fn step(&self, step: Step) -> String {
        if let Ok(mut started) = self.started.lock() {
            started.push(step.name.clone());
        }
        tokio::time::sleep(Duration::from_millis(step.millis)).await;
        step.name
    }
}

#[tokio::test]
async fn higher_priority_commands_run_first_inside_an_instance() {
    use aegis_runtime::codec::Priority;
    let server = NatsServer::start().await.expect("nats-server");
    let sequencer = Sequencer::default();
    // One call at a time: everything sent while the first runs waits in the instance.
    let instance = ServiceRunner::new(sequencer.clone())
        .nats(server.connect().await.expect("connect"))
        .concurrency(1)
        .start()
        .await
        .expect("start");
    let client = SequencerClient::new(server.connect().await.expect("connect"));
    let send = |name: String, millis: u64, priority: Priority| {
        let client = client.clone();
        async move {
            let options = CommandOptions {
                priority,
                ..CommandOptions::default()
            };
            client
                .start_step(Step { name, millis }, options)
                .await
                .expect("sent")
        }
    };
    let mut handles = vec![send("blocker".into(), 1000, Priority::Normal).await];
    tokio::time::sleep(Duration::from_millis(100)).await; // the blocker runs
    for i in 0..4 {
        handles.push(send(format!("low-{i}"), 10, Priority::Low).await);
        handles.push(send(format!("critical-{i}"), 10, Priority::Critical).await);
        handles.push(send(format!("normal-{i}"), 10, Priority::Normal).await);
    }
    for handle in handles {
        handle.outcome().await.expect("completed");
    }
    let started = sequencer.started.lock().expect("started").clone();
    let expected: Vec<String> = std::iter::once("blocker".to_owned())
        .chain((0..4).map(|i| format!("critical-{i}")))
        .chain((0..4).map(|i| format!("normal-{i}")))
        .chain((0..4).map(|i| format!("low-{i}")))
        .collect();
    assert_eq!(started, expected, "by priority, then in order of arrival");
    instance.stop().await;
}

#[tokio::test]
async fn a_command_whose_payload_does_not_decode_fails_at_once_and_is_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let server = NatsServer::start().await.expect("nats-server");
    let runs = Arc::default();
    let instance = start(&server, "worker-1", &runs).await;
    let client = aegis_runtime::ServiceClient::new(
        server.connect().await.expect("connect"),
        WorkerClient::SERVICE,
    )
    .expect("client");

    let handle = client
        .start_command::<_, serde_json::Value>(
            "reindex",
            &serde_json::json!({"n": "three"}),
            CommandOptions::default(), // 3 retries allowed: none may be used
        )
        .await
        .expect("sent");
    let err = handle
        .outcome()
        .await
        .expect_err("a payload that does not decode");
    let message = err.handler_message().expect("the failure's message");
    assert!(message.contains("payload.n"), "says which field: {message}");
    assert!(
        runs.lock().expect("runs").is_empty(),
        "the handler never ran"
    );

    let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("ev-svc-reindex", "COMMANDS")
        .await
        .expect("the command's consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(info.num_redelivered, 0, "delivered once, never retried");
    assert_eq!(info.num_ack_pending, 0, "terminated, not left to redeliver");
    let poisoned: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == aegis_runtime::metrics::POISON_COMMANDS)
        .map(|(_, _, _, value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(poisoned, 1, "counted as poison");
    instance.stop().await;
}

#[tokio::test]
async fn a_command_redelivered_after_a_run_without_outcome_is_not_run_past_its_retries() {
    let server = NatsServer::start().await.expect("nats-server");
    let nats = server.connect().await.expect("connect");
    let js = async_nats::jetstream::new(nats.clone());
    // A first instance took the command and vanished without an outcome: here, the consumer
    // the instances share hands it to the test, which gives it back.
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "COMMANDS".into(),
            subjects: vec!["commands.>".into()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("ev-svc-reindex".into()),
            filter_subject: "commands.ev-svc.reindex".into(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let client = aegis_runtime::ServiceClient::new(nats.clone(), "ev-svc").expect("client");
    let options = CommandOptions {
        max_retries: 0,
        ..CommandOptions::default()
    };
    let handle = client
        .start_command::<_, Done>("reindex", &Job { n: 2 }, options)
        .await
        .expect("sent");
    {
        use futures_util::StreamExt;
        // A waiting pull, not `fetch()`: a no-wait pull can run before the server has
        // signalled the consumer about the message it just acknowledged to the publisher.
        let mut taken = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .expect("fetch");
        let first = taken.next().await.expect("delivered").expect("message");
        first
            .ack_with(async_nats::jetstream::AckKind::Nak(None))
            .await
            .expect("given back");
    }

    let runs = Arc::default();
    let instance = start(&server, "worker-1", &runs).await;
    let err = tokio::time::timeout(Duration::from_secs(10), handle.outcome())
        .await
        .expect("the caller hears at once")
        .expect_err("max_retries 0: the second delivery does not run");
    let message = err.handler_message().expect("message");
    assert!(
        message.contains("delivered 2 times") && message.contains("max_retries 0"),
        "says why: {message}"
    );
    assert!(
        runs.lock().expect("runs").is_empty(),
        "the handler did not run again"
    );
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("ev-svc-reindex", "COMMANDS")
        .await
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.info().await.expect("info").num_ack_pending > 0 {
        assert!(Instant::now() < deadline, "terminated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    instance.stop().await;
}
