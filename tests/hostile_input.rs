//! Hostile bytes at every subject of a running instance.
//!
//! A real nats-server and a real instance process (`aegis-hostile-target`: a leader and a
//! standby of one service with every kind of handler) take structurally valid and invalid
//! MessagePack and JSON, nested up to 100,000 levels deep and up to the server's maximum
//! payload, at the shared, instance and exclusive subjects (leader and standby, which
//! forwards exclusive calls to the leader), the built-in status and health methods,
//! `$SRV`, and the event and command streams. Every request gets a reply that names the
//! problem, and the process is alive and serving afterwards. Run it in release too (`.ci/run` does): stack use differs between profiles.
//!
//! The cases are a committed corpus of the nastiest ones (`corpus/hostile-input.json`)
//! and a proptest over the same space.
//!
//! A body that is not an envelope but JSON (see `codec::is_bare_call`) is a bare-JSON call,
//! as the NATS tools send: it must get the bare JSON result, or an empty body with the
//! ADR-32 error headers (400 when it does not decode, too deep included). The proptest
//! also sends bare bodies of its own: nested around the limit and far beyond, truncated,
//! of the wrong type, and huge.

#![allow(clippy::print_stdout)] // what was sent is printed

mod support;

use std::cell::RefCell;
use std::time::Duration;

use aegis_runtime::codec::{self, Command, Event, ExclusiveReply, Format, RpcRequest, RpcResponse};
use aegis_runtime::subject::{self, EventToken, InstanceId, MethodName, ServiceName};
use aegis_runtime::testing::NatsServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::Deserialize;
use serde_json::{Value, json};
use support::ChildProcess;

/// How long a reply may take: generous, a debug build under a loaded CI machine.
const REPLY_WITHIN: Duration = Duration::from_secs(10);
/// Stands for the hostile value in an otherwise valid envelope, replaced after encoding.
const PLACEHOLDER: &str = "@@HOSTILE@@";

/// Where the hostile value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Placement {
    /// `params.value` of an RPC request (`payload.value` of an event or command): decoded
    /// into `serde_json::Value`, which recurses into anything.
    Value,
    /// The `source` field, which must be a string.
    Source,
    /// The whole message.
    Body,
}

/// What the hostile value is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Shape {
    /// `[[[...]]]`
    Arrays,
    /// `{"x":{"x":...}}`
    Maps,
    /// A map claiming 4 billion entries with nothing behind it (JSON: an unclosed `{`).
    HugeMap,
    /// A string claiming 4 GiB with nothing behind it (JSON: an unclosed string).
    HugeString,
}

/// How deep the value nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Levels {
    Exactly(usize),
    /// `"max_payload"`: as deep as fits in the server's maximum payload.
    MaxPayload(MaxPayload),
}

/// The word `max_payload` in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MaxPayload {
    MaxPayload,
}

/// What the instance must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    /// An error reply saying the message nests too deeply.
    TooDeep,
    /// An error reply, whatever it says (it must say something).
    Error,
    /// The call runs (an exclusive one on the leader, forwarded there by the standby).
    Runs,
    /// A reply that decodes; an error in it says something (a mutated envelope may still
    /// be valid).
    Answered,
}

/// One hostile message.
#[derive(Debug, Clone, Deserialize)]
struct Case {
    name: String,
    format: FormatName,
    placement: Placement,
    shape: Shape,
    levels: Levels,
    /// Cut the message to this fraction of its length.
    #[serde(default)]
    cut: Option<f64>,
    /// XOR the byte at this position (modulo the length) with this mask.
    #[serde(default)]
    flip: Option<(usize, u8)>,
    /// Send these bytes instead.
    #[serde(default)]
    raw: Option<Vec<u8>>,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FormatName {
    Msgpack,
    Json,
}

impl FormatName {
    fn format(self) -> Format {
        match self {
            FormatName::Msgpack => Format::MessagePack,
            FormatName::Json => Format::Json,
        }
    }
}

/// The kinds of subject a request can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain RPC, on the shared or an instance subject.
    Rpc,
    /// An exclusive RPC: it runs on the leader, also when sent to the standby's own
    /// subject (the standby forwards it to the leader, so the hostile bytes cross two
    /// instances).
    Exclusive,
    /// `aegis_status` / `aegis_health` / `aegis_describe`.
    Builtin,
    /// `$SRV.…`: the payload is not read; any reply will do.
    Micro,
}

/// The running target: a nats-server and the instance process.
struct Target {
    _server: NatsServer,
    process: RefCell<ChildProcess>,
    nats: async_nats::Client,
    requests: Vec<(Kind, String)>,
    events: String,
    commands: String,
    max_payload: usize,
}

impl Target {
    async fn start() -> Self {
        let server = NatsServer::start().await.expect("nats-server");
        let url = server.url();
        let (process, ready) = ChildProcess::start("aegis-hostile-target", &["--nats", &url]);
        let ids: Vec<&str> = ready
            .split_whitespace()
            .filter_map(|word| word.split_once('=').map(|(_, id)| id))
            .collect();
        let [leader, standby] = ids[..] else {
            panic!("unexpected ready line: {ready}")
        };
        let service = ServiceName::new("hostile").expect("name");
        let leader = InstanceId::new(leader).expect("id");
        let standby = InstanceId::new(standby).expect("id");
        let method = |name: &str| MethodName::new(name).expect("method");
        let shared = |name| subject::rpc(&service, &method(name));
        let own = |id: &InstanceId, name| subject::rpc_instance(&service, id, &method(name));
        let mut requests = vec![
            (Kind::Rpc, shared("echo")),
            (Kind::Rpc, own(&leader, "echo")),
            (Kind::Rpc, own(&standby, "echo")),
            (Kind::Exclusive, shared("exclusive_echo")),
            (Kind::Exclusive, own(&leader, "exclusive_echo")),
            (Kind::Exclusive, own(&standby, "exclusive_echo")),
            (Kind::Micro, "$SRV.PING".to_owned()),
            (Kind::Micro, format!("$SRV.INFO.{service}")),
            (Kind::Micro, format!("$SRV.STATS.{service}.{leader}")),
        ];
        for builtin in ["aegis_status", "aegis_health", "aegis_describe"] {
            requests.push((Kind::Builtin, shared(builtin)));
            requests.push((Kind::Builtin, own(&standby, builtin)));
        }
        let token = |t| EventToken::new(t).expect("token");
        let nats = server.connect().await.expect("connect");
        let max_payload = nats.server_info().max_payload;
        Target {
            process: RefCell::new(process),
            nats,
            requests,
            events: subject::event(&token("hostile"), &token("bomb")),
            commands: subject::command(&service, &method("work")),
            max_payload,
            _server: server,
        }
    }

    /// Fails at once when the instance process has died (no need to wait for timeouts).
    fn assert_alive(&self, after: &str) {
        let exited = self.process.borrow_mut().has_exited();
        assert!(!exited, "the instance process died after {after}");
    }

    /// The bytes of `case` as a request to a method, an event or a command.
    fn bytes(&self, case: &Case, message: Message) -> Vec<u8> {
        let format = case.format.format();
        let envelope = match (case.placement, message) {
            (Placement::Body, _) => None,
            (placement, Message::Request) => Some(to_value(
                RpcRequest::new("echo", json!({"value": value_slot(placement)}))
                    .with_source(source_slot(placement)),
            )),
            (placement, Message::Event) => Some(to_value(
                Event::new("hostile", "bomb", json!({"value": value_slot(placement)}))
                    .with_source(source_slot(placement)),
            )),
            (placement, Message::Command) => Some(to_value(
                Command::new("work", json!({"value": value_slot(placement)}))
                    .with_source(source_slot(placement)),
            )),
        };
        let encoded = |value: &Value| match format {
            Format::MessagePack => codec::encode(value).expect("encode"),
            Format::Json => codec::encode_json(value).expect("encode"),
        };
        let frame = envelope.as_ref().map(encoded).unwrap_or_default();
        let levels = match case.levels {
            Levels::Exactly(levels) => levels,
            Levels::MaxPayload(_) => {
                let room = self.max_payload - frame.len() - 64;
                room / per_level(case.shape, format)
            }
        };
        let hostile = nested(case.shape, format, levels);
        let mut bytes = match envelope {
            None => hostile,
            Some(_) => {
                let slot = encoded(&Value::String(PLACEHOLDER.to_owned()));
                let at = frame
                    .windows(slot.len())
                    .position(|window| window == slot)
                    .expect("the placeholder is in the envelope");
                [&frame[..at], &hostile[..], &frame[at + slot.len()..]].concat()
            }
        };
        if let Some(raw) = &case.raw {
            return raw.clone();
        }
        if let Some((at, mask)) = case.flip {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        if let Some(fraction) = case.cut {
            let keep = ((bytes.len() as f64) * fraction) as usize;
            bytes.truncate(keep.max(1));
        }
        assert!(bytes.len() <= self.max_payload, "{}: too large", case.name);
        bytes
    }

    /// Sends `case` to every request subject and checks every reply; then into both
    /// streams.
    async fn attack(&self, case: &Case) -> Result<(), TestCaseError> {
        let bytes = self.bytes(case, Message::Request);
        for (kind, subject) in &self.requests {
            let reply = tokio::time::timeout(
                REPLY_WITHIN,
                self.nats.request(subject.clone(), bytes.clone().into()),
            )
            .await;
            self.assert_alive(&format!("{} at {subject}", case.name));
            let reply = match reply {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => return Err(fail(case, subject, &format!("no reply: {err}"))),
                Err(_) => return Err(fail(case, subject, "no reply within 10 s")),
            };
            if *kind != Kind::Micro && codec::is_bare_call(&bytes) {
                check_bare_reply(case, *kind, subject, &bytes, &reply)?;
            } else {
                check_reply(case, *kind, subject, &reply.payload)?;
            }
        }
        let js = async_nats::jetstream::new(self.nats.clone());
        for (message, subject) in [
            (Message::Event, &self.events),
            (Message::Command, &self.commands),
        ] {
            let bytes = self.bytes(case, message);
            js.publish(subject.clone(), bytes.into())
                .await
                .map_err(|e| fail(case, subject, &e.to_string()))?
                .await
                .map_err(|e| fail(case, subject, &e.to_string()))?;
        }
        Ok(())
    }

    /// The instance still answers calls, handles a valid event and runs a valid command.
    async fn assert_serving(&self, after: &str) {
        self.assert_alive(after);
        let call = |method: &'static str, params: Value| {
            let subject = subject::rpc(
                &ServiceName::new("hostile").expect("name"),
                &MethodName::new(method).expect("method"),
            );
            let bytes = codec::encode(&RpcRequest::new(method, params)).expect("encode");
            let nats = self.nats.clone();
            async move {
                let reply = tokio::time::timeout(REPLY_WITHIN, nats.request(subject, bytes.into()))
                    .await
                    .expect("a reply in time")
                    .expect("a reply");
                let response: RpcResponse = codec::decode(&reply.payload).expect("decodes");
                assert!(
                    response.success,
                    "{method} failed after {after}: {response:?}"
                );
                response.result.expect("a result")
            }
        };
        assert_eq!(
            call("echo", json!({"value": [1, {"a": "b"}]})).await,
            json!({"value": [1, {"a": "b"}]})
        );
        let before = call("handled", json!({})).await;
        let js = async_nats::jetstream::new(self.nats.clone());
        let event = Event::new("hostile", "bomb", json!({"value": 1}));
        let command = Command::new("work", json!({"value": 1}));
        for (subject, bytes) in [
            (&self.events, codec::encode(&event).expect("encode")),
            (&self.commands, codec::encode(&command).expect("encode")),
        ] {
            js.publish(subject.clone(), bytes.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        // Both counters move once the instance handled the valid event and command; the
        // hostile ones before them were dropped without stopping the consumers.
        let deadline = tokio::time::Instant::now() + REPLY_WITHIN;
        loop {
            let now = call("handled", json!({})).await;
            if now[0].as_u64() > before[0].as_u64() && now[1].as_u64() > before[1].as_u64() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "events and commands not handled after {after}: before {before}, now {now}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.assert_alive(after);
    }
}

#[derive(Debug, Clone, Copy)]
enum Message {
    Request,
    Event,
    Command,
}

fn to_value<T: serde::Serialize>(message: T) -> Value {
    serde_json::to_value(message).expect("to value")
}

fn value_slot(placement: Placement) -> Value {
    match placement {
        Placement::Value => Value::String(PLACEHOLDER.to_owned()),
        _ => json!(1),
    }
}

fn source_slot(placement: Placement) -> String {
    match placement {
        Placement::Source => PLACEHOLDER.to_owned(),
        _ => "hostile-test".to_owned(),
    }
}

/// Bytes each further level adds.
fn per_level(shape: Shape, format: Format) -> usize {
    match (shape, format) {
        (Shape::Arrays, Format::MessagePack) => 1,
        (Shape::Arrays, Format::Json) => 2,
        (Shape::Maps, Format::MessagePack) => 3,
        (Shape::Maps, Format::Json) => 6,
        _ => 1,
    }
}

/// `levels` nested containers (at least one), closed; written as bytes, since a `Value`
/// that deep would itself recurse.
fn nested(shape: Shape, format: Format, levels: usize) -> Vec<u8> {
    let inner = levels.max(1) - 1;
    match (shape, format) {
        (Shape::Arrays, Format::MessagePack) => [vec![0x91; inner], vec![0x90]].concat(),
        (Shape::Maps, Format::MessagePack) => {
            [[0x81, 0xa1, b'x'].repeat(inner), vec![0x80]].concat()
        }
        (Shape::Arrays, Format::Json) => {
            format!("{}[]{}", "[".repeat(inner), "]".repeat(inner)).into_bytes()
        }
        (Shape::Maps, Format::Json) => {
            format!("{}{{}}{}", "{\"x\":".repeat(inner), "}".repeat(inner)).into_bytes()
        }
        (Shape::HugeMap, Format::MessagePack) => vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        (Shape::HugeString, Format::MessagePack) => vec![0xdb, 0xff, 0xff, 0xff, 0xff],
        (Shape::HugeMap, Format::Json) => b"{\"x\":".repeat(inner.max(1)),
        (Shape::HugeString, Format::Json) => b"\"unclosed".to_vec(),
    }
}

fn fail(case: &Case, subject: &str, what: &str) -> TestCaseError {
    TestCaseError::fail(format!("{} at {subject}: {what}", case.name))
}

/// Checks a reply against what `case` expects from a subject of `kind`.
fn check_reply(
    case: &Case,
    kind: Kind,
    subject: &str,
    payload: &[u8],
) -> Result<(), TestCaseError> {
    if kind == Kind::Micro {
        // `$SRV` requests carry no parameters: the instance answers as to any request.
        return codec::decode_value(payload).map(|_| ()).map_err(|e| {
            fail(
                case,
                subject,
                &format!("the $SRV reply does not decode: {e}"),
            )
        });
    }
    let exclusive = kind == Kind::Exclusive;
    if case.expect == Expect::Runs
        && exclusive
        && let Levels::Exactly(levels) = case.levels
        && levels + 3 > codec::MAX_DEPTH
    {
        // The exclusive reply wraps the echoed value one level deeper than the request
        // held it: at the limit, the method runs and its reply is too deep for any client.
        return match codec::decode::<RpcResponse>(payload) {
            Err(codec::DecodeError::TooDeep { .. }) => Ok(()),
            other => Err(fail(
                case,
                subject,
                &format!("expected a too-deep reply, got {other:?}"),
            )),
        };
    }
    let response: RpcResponse = codec::decode(payload)
        .map_err(|e| fail(case, subject, &format!("the reply does not decode: {e}")))?;
    let error = response.error.clone().unwrap_or_default();
    match case.expect {
        Expect::TooDeep => {
            if response.success || !error.contains("nest deeper than 100 levels") {
                return Err(fail(
                    case,
                    subject,
                    &format!("expected a too-deep error, got {response:?}"),
                ));
            }
        }
        Expect::Error => {
            if response.success || error.is_empty() {
                return Err(fail(
                    case,
                    subject,
                    &format!("expected an error, got {response:?}"),
                ));
            }
        }
        Expect::Answered => {
            if !response.success && error.is_empty() {
                return Err(fail(
                    case,
                    subject,
                    &format!("an error without text: {response:?}"),
                ));
            }
        }
        Expect::Runs => {
            if !response.success {
                return Err(fail(
                    case,
                    subject,
                    &format!("expected it to run, got {response:?}"),
                ));
            }
            if exclusive {
                let nested: ExclusiveReply =
                    serde_json::from_value(response.result.unwrap_or_default()).map_err(|e| {
                        fail(case, subject, &format!("not an exclusive reply: {e}"))
                    })?;
                if !nested.success {
                    return Err(fail(
                        case,
                        subject,
                        &format!("wrong exclusive outcome: {nested:?}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks the reply to a bare-JSON call (`body` is not an envelope): it runs exactly when
/// the body decodes as the method's parameters (`{"value": …}` for the echo methods,
/// anything for the built-ins, an empty body standing for `{}`); the reply is then the
/// plain JSON result, and else an empty body with a 400 in the ADR-32 headers.
fn check_bare_reply(
    case: &Case,
    kind: Kind,
    subject: &str,
    body: &[u8],
    reply: &async_nats::Message,
) -> Result<(), TestCaseError> {
    let header = |name: &str| {
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let (code, error) = (
        header("Nats-Service-Error-Code"),
        header("Nats-Service-Error"),
    );
    // What the body holds, read within the codec's limits (no recursion past them).
    let params = if body.is_empty() {
        Ok(json!({}))
    } else {
        codec::decode_value(body)
    };
    // The value the echo methods take: a struct decodes from a map with its field, or
    // (serde's sequence form) from an array of exactly its one field.
    let echoed = match &params {
        Ok(Value::Object(map)) => map.get("value").cloned(),
        Ok(Value::Array(items)) if items.len() == 1 => Some(items[0].clone()),
        _ => None,
    };
    let runs = match kind {
        // The built-ins take no parameters and skip whatever JSON they get (numbers out of
        // a float's range and lone surrogates included, which a `Value` refuses).
        Kind::Builtin => {
            !matches!(params, Err(codec::DecodeError::TooDeep { .. }))
                && (body.is_empty()
                    || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok())
        }
        _ => echoed.is_some(),
    };
    let what = || {
        format!(
            "bare body {:?}…: code {code:?}, error {error:?}, reply {:?}…",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            String::from_utf8_lossy(&reply.payload[..reply.payload.len().min(80)]),
        )
    };
    if !runs {
        let text = error.clone().unwrap_or_default();
        let too_deep = matches!(params, Err(codec::DecodeError::TooDeep { .. }));
        if code.as_deref() != Some("400")
            || !reply.payload.is_empty()
            || text.is_empty()
            || (too_deep && !text.contains("nest deeper than 100 levels"))
        {
            return Err(fail(
                case,
                subject,
                &format!("expected a 400 in the headers: {}", what()),
            ));
        }
        return Ok(());
    }
    if code.is_some() || error.is_some() {
        return Err(fail(
            case,
            subject,
            &format!("expected it to run: {}", what()),
        ));
    }
    let result = codec::decode_value(&reply.payload).map_err(|e| {
        fail(
            case,
            subject,
            &format!("the result is not plain JSON ({e}): {}", what()),
        )
    })?;
    let expected = match kind {
        Kind::Builtin => result.is_object(),
        // The echo methods answer `{"value": …}`, for the exclusive one too (not wrapped).
        _ => Some(&result) == echoed.map(|value| json!({ "value": value })).as_ref(),
    };
    if !expected {
        return Err(fail(
            case,
            subject,
            &format!("the wrong result: {}", what()),
        ));
    }
    Ok(())
}

/// The committed corpus.
fn corpus() -> Vec<Case> {
    serde_json::from_str(include_str!("corpus/hostile-input.json")).expect("corpus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_of_hostile_messages_gets_error_replies_and_the_instance_serves_on() {
    let target = Target::start().await;
    target.assert_serving("start").await;
    let cases = corpus();
    assert!(cases.len() >= 20, "the corpus shrank to {}", cases.len());
    for case in &cases {
        if let Err(err) = target.attack(case).await {
            panic!("{err}");
        }
    }
    target.assert_serving("the corpus").await;
    println!(
        "{} hostile messages × {} request subjects and 2 streams: all answered, instance alive ({} build)",
        cases.len(),
        target.requests.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}

/// Any case the corpus could hold, with what the instance must answer; random bytes; and
/// valid envelopes with one byte changed.
fn any_case() -> impl Strategy<Value = Case> {
    let raw = proptest::collection::vec(any::<u8>(), 1..2048).prop_map(|raw| Case {
        name: format!("{} random bytes", raw.len()),
        raw: Some(raw),
        expect: Expect::Answered,
        ..structured(FormatName::Msgpack, Placement::Body, Shape::Arrays, 1, None)
    });
    let flipped = (format(), 1..=60usize, any::<usize>(), 1..=255u8).prop_map(
        |(format, levels, at, mask)| Case {
            name: format!("{format:?} envelope, byte {at} ^ {mask:#04x}"),
            flip: Some((at, mask)),
            expect: Expect::Answered,
            ..structured(format, Placement::Value, Shape::Maps, levels, None)
        },
    );
    let levels = prop_oneof![
        4 => 1..=120usize,
        2 => 97..=103usize,
        2 => 120..5_000usize,
        1 => Just(100_000usize),
    ];
    let structured = (
        format(),
        prop_oneof![
            4 => Just(Placement::Value),
            1 => Just(Placement::Source),
            1 => Just(Placement::Body),
        ],
        prop_oneof![
            4 => Just(Shape::Arrays),
            4 => Just(Shape::Maps),
            1 => Just(Shape::HugeMap),
            1 => Just(Shape::HugeString),
        ],
        levels,
        prop::option::weighted(0.3, 0.0..1.0f64),
    )
        .prop_map(|(format, placement, shape, levels, cut)| {
            structured(format, placement, shape, levels, cut)
        });
    prop_oneof![6 => structured, 1 => raw, 2 => flipped, 3 => bare_case()]
}

/// A bare-JSON call (no envelope), as the NATS tools send: parameters nested around the
/// depth limit and far beyond, of the wrong type, huge, truncated; with or without the
/// `{"value": …}` the echo methods take.
fn bare_case() -> impl Strategy<Value = Case> {
    let nested_value = (
        prop_oneof![
            4 => 1..=120usize,
            2 => 97..=103usize,
            2 => 120..5_000usize,
            1 => Just(100_000usize),
        ],
        any::<bool>(),
    )
        .prop_map(|(levels, maps)| {
            let shape = if maps { Shape::Maps } else { Shape::Arrays };
            String::from_utf8(nested(shape, Format::Json, levels)).expect("JSON text")
        });
    let wrong_type = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-12.5e3".to_owned()),
        Just("\"text\"".to_owned()),
        Just("[1, \"two\", {}]".to_owned()),
        Just("{\"other\": 1}".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just(String::new()),
    ];
    let huge = prop_oneof![
        (1usize..=900_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        (1usize..=100_000).prop_map(|n| format!("1{}", "0".repeat(n))),
        Just("1e999999".to_owned()),
        (1usize..=50_000).prop_map(|n| {
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{}}}", keys.join(","))
        }),
    ];
    (
        prop_oneof![3 => nested_value, 2 => wrong_type, 1 => huge],
        any::<bool>(),
        prop::option::weighted(0.3, 0.0..1.0f64),
    )
        .prop_map(|(value, wrap, cut)| {
            let mut body = if wrap {
                format!("{{\"value\": {value}}}").into_bytes()
            } else {
                value.into_bytes()
            };
            if let Some(fraction) = cut {
                body.truncate(((body.len() as f64) * fraction) as usize);
            }
            Case {
                name: format!(
                    "bare JSON of {} bytes {:?}…",
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ),
                raw: Some(body),
                expect: Expect::Answered,
                ..structured(FormatName::Json, Placement::Body, Shape::Arrays, 1, None)
            }
        })
}

fn format() -> impl Strategy<Value = FormatName> {
    prop_oneof![Just(FormatName::Msgpack), Just(FormatName::Json)]
}

/// A case built from its parts, expecting what the instance must answer to it.
fn structured(
    format: FormatName,
    placement: Placement,
    shape: Shape,
    levels: usize,
    cut: Option<f64>,
) -> Case {
    // The envelope is one level and `params` another, around the value.
    let depth = levels + if placement == Placement::Body { 0 } else { 2 };
    let well_formed = matches!(shape, Shape::Arrays | Shape::Maps) && cut.is_none();
    let expect = if !well_formed || placement != Placement::Value {
        Expect::Error
    } else if depth > codec::MAX_DEPTH {
        Expect::TooDeep
    } else {
        Expect::Runs
    };
    Case {
        name: format!("{format:?} {placement:?} {shape:?} ×{levels} cut {cut:?}"),
        format,
        placement,
        shape,
        levels: Levels::Exactly(levels),
        cut,
        flip: None,
        raw: None,
        expect,
    }
}

#[test]
fn any_hostile_message_gets_an_error_reply_and_the_instance_serves_on() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let target = runtime.block_on(Target::start());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        // Every shrink step is a round of requests to a real instance: few are enough.
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&any_case(), |case| runtime.block_on(target.attack(&case)));
    if let Err(err) = result {
        panic!("{err}");
    }
    runtime.block_on(target.assert_serving("the proptest cases"));
}

/// A responder that answers every request on `subject` with `reply`.
async fn hostile_responder(nats: &async_nats::Client, subject: &str, reply: Vec<u8>) {
    use futures_util::StreamExt;
    let mut requests = nats.subscribe(subject.to_owned()).await.expect("subscribe");
    let publisher = nats.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply_to) = request.reply {
                let _ = publisher.publish(reply_to, reply.clone().into()).await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_a_hostile_reply_gets_a_decode_error_not_a_crash() {
    let server = NatsServer::start().await.expect("nats-server");
    let responder = server.connect().await.expect("connect");
    let request = RpcRequest::new("echo", json!({}));
    // A successful response whose result nests 100,000 levels, and one whose error field is
    // a 1,000-deep array: a client decoding either must not overflow its stack.
    let deep_result = {
        let frame = codec::encode(&RpcResponse::ok(&request, json!(PLACEHOLDER))).expect("encode");
        let slot = codec::encode(&json!(PLACEHOLDER)).expect("encode");
        let at = frame
            .windows(slot.len())
            .position(|w| w == slot)
            .expect("slot");
        let hostile = nested(Shape::Arrays, Format::MessagePack, 100_000);
        [&frame[..at], &hostile[..], &frame[at + slot.len()..]].concat()
    };
    let deep_json = nested(Shape::Maps, Format::Json, 1_000);
    for (method, reply) in [("deep_result", deep_result), ("deep_json", deep_json)] {
        hostile_responder(&responder, &format!("rpc.liar.{method}"), reply).await;
    }
    // The client shares the responder's connection: the server takes a connection's
    // subscriptions and requests in order, so no request can beat a subscription.
    let client = aegis_runtime::ServiceClient::for_service(
        responder.clone(),
        ServiceName::new("liar").expect("name"),
    )
    .without_discovery();
    for method in ["deep_result", "deep_json"] {
        let err = client
            .call::<_, Value>(method, &json!({}))
            .await
            .expect_err("a reply nested that deep cannot decode");
        assert!(
            matches!(
                err.kind(),
                aegis_runtime::CallErrorKind::Decode(codec::DecodeError::TooDeep { .. })
            ),
            "{method}: {err}"
        );
        assert!(
            err.to_string().contains("nest deeper than 100 levels"),
            "{err}"
        );
    }
}
