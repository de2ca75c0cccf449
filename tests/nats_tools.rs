//! Callable from the NATS tools: what `nats req` and `nats micro info` see of a running
//! Aegis service. A bare-JSON request (the parameters alone, no envelope) gets the bare
//! JSON result, or an empty body with the ADR-32 error headers; an envelope request is
//! answered as before; `$SRV.INFO` lists RPCs, commands and built-ins with their schemas.
//! A real nats-server, two real instances (a leader and a standby) of a service defined
//! here, and a plain `async_nats::Client`, as a tool would use.

use std::time::Duration;

mod support;

use aegis_runtime::codec::{self, ExclusiveReply, RpcRequest, RpcResponse, headers};
use aegis_runtime::runner::MicroInfo;
use aegis_runtime::testing::NatsServer;
use aegis_runtime::{Progress, RpcContext, RunningService, ServiceRunner, service};
use async_nats::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const REPLY_WITHIN: Duration = Duration::from_secs(5);
/// The ADR-32 error headers (as `async_nats::service` names them).
const SERVICE_ERROR: &str = "Nats-Service-Error";
const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Say {
    text: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
struct Said {
    said: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Led {
    instance: String,
    term: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Reindex {
    shard: u32,
}

struct Tools;

#[service(name = "tools", version = "1.2.3")]
impl Tools {
    /// Says it back.
    #[rpc]
    async fn say(&self, req: Say) -> Said {
        Said {
            said: format!("you said {}", req.text),
        }
    }

    /// Always refuses.
    #[rpc]
    async fn refuse(&self, req: Say) -> Result<Said, String> {
        Err(format!("refused: {}", req.text))
    }

    /// Takes nothing.
    #[rpc]
    async fn ping(&self) -> String {
        "pong".to_owned()
    }

    /// Panics.
    #[rpc]
    async fn explode(&self) -> String {
        panic!("boom")
    }

    /// Runs on the leader only; says where and under which term.
    #[exclusive_rpc]
    async fn lead(&self, ctx: &RpcContext, req: Say) -> Led {
        Led {
            instance: format!("{} {}", ctx.instance_id(), req.text),
            term: ctx.term(),
        }
    }

    #[command]
    async fn reindex(&self, job: Reindex, _progress: Progress) -> u32 {
        job.shard
    }
}

/// A nats-server, a leader (`tools-leader`) and a standby (`tools-standby`), and a plain
/// client.
struct Fixture {
    _server: NatsServer,
    leader: RunningService,
    standby: RunningService,
    nats: async_nats::Client,
}

impl Fixture {
    async fn start() -> Self {
        let server = NatsServer::start().await.expect("nats-server");
        let runner = |nats, id: &str| ServiceRunner::new(Tools).nats(nats).instance_id(id);
        let leader = runner(server.connect().await.expect("connect"), "tools-leader")
            .start()
            .await
            .expect("start the leader");
        assert!(
            support::until(Duration::from_secs(10), || async {
                leader.leadership().is_active()
            })
            .await,
            "the first instance leads"
        );
        let standby = runner(server.connect().await.expect("connect"), "tools-standby")
            .start()
            .await
            .expect("start the standby");
        let nats = server.connect().await.expect("connect");
        Fixture {
            _server: server,
            leader,
            standby,
            nats,
        }
    }

    /// `nats req {subject} '{body}'`, optionally with headers.
    async fn request(
        &self,
        subject: &str,
        body: &[u8],
        headers: Option<HeaderMap>,
    ) -> async_nats::Message {
        let mut request = async_nats::Request::new().payload(body.to_vec().into());
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        tokio::time::timeout(
            REPLY_WITHIN,
            self.nats.send_request(subject.to_owned(), request),
        )
        .await
        .expect("a reply in time")
        .expect("a reply")
    }

    async fn info(&self, subject: &str) -> MicroInfo {
        let reply = self.request(subject, b"", None).await;
        serde_json::from_slice(&reply.payload).expect("an INFO answer")
    }
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(async_nats::HeaderValue::as_str)
}

/// The reply's body as JSON; fails on a reply that carries an error.
fn bare_json(message: &async_nats::Message) -> Value {
    assert_eq!(
        header(message, SERVICE_ERROR),
        None,
        "no error expected: {message:?}"
    );
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!(
            "the body is not plain JSON ({e}): {:?}",
            String::from_utf8_lossy(&message.payload)
        )
    })
}

/// The ADR-32 error of a reply: (code, text); its body must be empty.
fn service_error(message: &async_nats::Message) -> (String, String) {
    assert!(
        message.payload.is_empty(),
        "an error reply has an empty body, not {:?}",
        String::from_utf8_lossy(&message.payload)
    );
    let code = header(message, SERVICE_ERROR_CODE).expect("Nats-Service-Error-Code");
    let text = header(message, SERVICE_ERROR).expect("Nats-Service-Error");
    (code.to_owned(), text.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_json_request_gets_the_plain_json_result() {
    let f = Fixture::start().await;
    let reply = f.request("rpc.tools.say", br#"{"text":"hi"}"#, None).await;
    assert_eq!(bare_json(&reply), json!({"said": "you said hi"}));
    // On an instance's own subject too, and with whitespace around the JSON.
    let reply = f
        .request(
            "rpc.tools.tools-standby.say",
            b" {\"text\": \"yo\"}\n",
            None,
        )
        .await;
    assert_eq!(bare_json(&reply), json!({"said": "you said yo"}));
    // An empty body is "no parameters".
    let reply = f.request("rpc.tools.ping", b"", None).await;
    assert_eq!(bare_json(&reply), json!("pong"));
    // Not an ADR-32 error, and no Aegis headers on a plain method's reply.
    assert!(reply.headers.is_none(), "{:?}", reply.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_of_a_bare_call_arrives_in_the_adr32_headers() {
    let f = Fixture::start().await;
    let reply = f
        .request("rpc.tools.refuse", br#"{"text":"no"}"#, None)
        .await;
    let (code, text) = service_error(&reply);
    assert_eq!(code, "500");
    assert_eq!(text, "refused: no");
    // A panic too (the runtime catches it): 500, and the service serves on.
    let reply = f.request("rpc.tools.explode", b"", None).await;
    let (code, text) = service_error(&reply);
    assert_eq!(code, "500");
    assert_eq!(text, "the handler panicked: boom");
    let reply = f.request("rpc.tools.ping", b"", None).await;
    assert_eq!(bare_json(&reply), json!("pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bare_params_get_a_400_that_says_what_is_wrong() {
    let f = Fixture::start().await;
    for (body, says) in [
        (
            &br#"{"text": 7}"#[..],
            "field `text`: invalid type: integer `7`, expected a string",
        ),
        (br#"{"words":"hi"}"#, "missing field `text`"),
        (br#"{"text": "hi""#, "malformed JSON"),
        (b"[1, 2]", "invalid type"),
        (
            b"",
            "the body is empty (no parameters), but the method needs some",
        ),
    ] {
        let reply = f.request("rpc.tools.say", body, None).await;
        let (code, text) = service_error(&reply);
        assert_eq!(code, "400", "{body:?}: {text}");
        assert!(
            text.starts_with("cannot decode RPC params") && text.contains(says),
            "{:?}: {text}",
            String::from_utf8_lossy(body)
        );
    }
    // Nested deeper than the codec's limit: refused as too deep, on one line.
    let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
    let reply = f.request("rpc.tools.say", deep.as_bytes(), None).await;
    let (code, text) = service_error(&reply);
    assert_eq!(code, "400");
    assert!(text.contains("nest deeper than 100 levels"), "{text}");
}

/// A huge string where a struct belongs: the decoder's message quotes the value, so every
/// error that holds it is cut. Before, the instance kept the whole text as the endpoints'
/// last error, and its `$SRV.STATS` answer outgrew the server's maximum payload: the server
/// closed the instance's connection instead of delivering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_bad_value_gets_a_short_error_and_stats_still_answer() {
    let f = Fixture::start().await;
    let huge = format!("\"{}\"", "x".repeat(600 * 1024));
    // To the leader itself, whose stats are read below (the shared subject may pick either).
    for subject in [
        "rpc.tools.tools-leader.say",
        "rpc.tools.tools-leader.refuse",
    ] {
        let reply = f.request(subject, huge.as_bytes(), None).await;
        let (code, text) = service_error(&reply);
        assert_eq!(code, "400");
        assert!(text.len() < 1024, "{} bytes of error text", text.len());
        assert!(text.contains("expected struct Say"), "{text}");
    }
    let stats = f.request("$SRV.STATS.tools.tools-leader", b"", None).await;
    let stats: Value = serde_json::from_slice(&stats.payload).expect("a STATS answer");
    let errors: Vec<&str> = stats["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["last_error"].as_str())
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.len() < 1024), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_bare_call_gets_plain_json_from_the_leader_also_through_a_standby() {
    let f = Fixture::start().await;
    let term = f.leader.leadership().term().expect("the leader's term");
    let body = br#"{"text":"x"}"#;
    for subject in [
        "rpc.tools.lead",
        "rpc.tools.tools-leader.lead",
        // The standby forwards it to the leader and relays the reply, headers and all.
        "rpc.tools.tools-standby.lead",
    ] {
        let reply = f.request(subject, body, None).await;
        let led = bare_json(&reply);
        assert_eq!(
            led,
            json!({"instance": "tools-leader x", "term": term}),
            "{subject}: plain JSON, not an exclusive reply"
        );
        assert_eq!(
            header(&reply, headers::INSTANCE_ID),
            Some("tools-leader"),
            "{subject}"
        );
        assert_eq!(
            header(&reply, headers::TERM),
            Some(term.to_string().as_str()),
            "{subject}"
        );
    }
    // A call the standby must not forward (forwarded once already) is refused there: 503,
    // the method did not run.
    let mut forwarded = HeaderMap::new();
    forwarded.insert(headers::FORWARDED_BY, "tools-elsewhere");
    let reply = f
        .request("rpc.tools.tools-standby.lead", body, Some(forwarded))
        .await;
    let (code, text) = service_error(&reply);
    assert_eq!(code, "503");
    assert!(
        text.starts_with("NOT_ACTIVE: ") && text.contains("tools-standby"),
        "{text}"
    );
}

/// The same three calls (a value, an exclusive value, a handler error) as envelopes,
/// MessagePack and JSON, and bare: each reply takes the form of its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_takes_the_form_of_the_request() {
    let f = Fixture::start().await;
    for (name, encode) in [
        (
            "MessagePack",
            codec::encode::<RpcRequest> as fn(&RpcRequest) -> _,
        ),
        ("JSON", codec::encode_json::<RpcRequest>),
    ] {
        let request = RpcRequest::new("say", json!({"text": "hi"}));
        let reply = f
            .request("rpc.tools.say", &encode(&request).expect("encode"), None)
            .await;
        let response: RpcResponse = codec::decode(&reply.payload)
            .unwrap_or_else(|e| panic!("{name}: an envelope reply: {e}"));
        assert_eq!(
            response.correlation_id.as_deref(),
            Some(request.message_id.as_str())
        );
        assert_eq!(
            response.result,
            Some(json!({"said": "you said hi"})),
            "{name}"
        );
        // An exclusive method nests its result in an exclusive reply, as before.
        let request = RpcRequest::new("lead", json!({"text": "e"}));
        let reply = f
            .request("rpc.tools.lead", &encode(&request).expect("encode"), None)
            .await;
        let response: RpcResponse<ExclusiveReply> =
            codec::decode(&reply.payload).expect("an envelope reply");
        let nested = response.result.expect("an exclusive reply");
        assert!(nested.success, "{name}: {nested:?}");
        assert_eq!(
            nested.result.expect("a value")["instance"],
            "tools-leader e"
        );
        // A handler error stays an envelope error, without ADR-32 headers.
        let request = RpcRequest::new("refuse", json!({"text": "no"}));
        let reply = f
            .request("rpc.tools.refuse", &encode(&request).expect("encode"), None)
            .await;
        assert_eq!(header(&reply, SERVICE_ERROR), None, "{name}");
        let response: RpcResponse = codec::decode(&reply.payload).expect("an envelope reply");
        assert_eq!(response.error.as_deref(), Some("refused: no"), "{name}");
    }
    // The same calls, bare.
    let reply = f.request("rpc.tools.say", br#"{"text":"hi"}"#, None).await;
    assert_eq!(bare_json(&reply), json!({"said": "you said hi"}));
    let reply = f.request("rpc.tools.lead", br#"{"text":"e"}"#, None).await;
    assert_eq!(bare_json(&reply)["instance"], "tools-leader e");
    let reply = f
        .request("rpc.tools.refuse", br#"{"text":"no"}"#, None)
        .await;
    assert_eq!(
        service_error(&reply),
        ("500".to_owned(), "refused: no".to_owned())
    );
    // A JSON object with `message_id` and `params` is an envelope, however broken: it
    // keeps getting an envelope error (here: fields missing), not a bare one.
    let reply = f
        .request(
            "rpc.tools.say",
            br#"{"message_id":"m-1","params":{"text":"hi"}}"#,
            None,
        )
        .await;
    assert_eq!(header(&reply, SERVICE_ERROR), None);
    let response: RpcResponse = codec::decode(&reply.payload).expect("an envelope reply");
    assert!(!response.success);
    assert!(
        response
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot decode RPC request")),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_ins_answer_bare_calls() {
    let f = Fixture::start().await;
    let status = bare_json(
        &f.request("rpc.tools.tools-leader.aegis_status", b"", None)
            .await,
    );
    assert_eq!(status["instance_id"], "tools-leader");
    assert_eq!(status["version"], "1.2.3");
    let health = bare_json(
        &f.request("rpc.tools.tools-standby.aegis_health", b"", None)
            .await,
    );
    assert_eq!(health["instance_id"], "tools-standby");
    assert_eq!(health["is_active"], false);
    let described = bare_json(&f.request("rpc.tools.aegis_describe", b"", None).await);
    assert_eq!(described["name"], "tools");
    assert_eq!(described["version"], "1.2.3");
    let rpcs: Vec<&str> = described["rpcs"]
        .as_array()
        .expect("rpcs")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(rpcs, ["say", "refuse", "ping", "explode", "lead"]);
    assert_eq!(described["commands"][0]["name"], "reindex");
    assert_eq!(
        described["rpcs"][0]["request"]["properties"]["text"]["type"],
        "string"
    );
    // And the describe method answers envelopes too, like every method.
    let request = RpcRequest::new("aegis_describe", json!({}));
    let reply = f
        .request(
            "rpc.tools.aegis_describe",
            &codec::encode(&request).expect("encode"),
            None,
        )
        .await;
    let response: RpcResponse = codec::decode(&reply.payload).expect("an envelope reply");
    assert_eq!(response.result.expect("a result")["name"], "tools");
}

/// The endpoints of an INFO answer by name: (subject, queue group, metadata).
fn endpoints(
    info: &MicroInfo,
) -> Vec<(
    String,
    String,
    String,
    std::collections::HashMap<String, String>,
)> {
    info.endpoints
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.subject.clone(),
                e.queue_group.clone(),
                e.metadata.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_info_lists_rpcs_commands_and_built_ins_with_their_schemas() {
    let f = Fixture::start().await;
    let info = f.info("$SRV.INFO.tools.tools-leader").await;
    let listed: Vec<(String, String, String, String)> = endpoints(&info)
        .into_iter()
        .map(|(name, subject, queue, metadata)| (name, subject, queue, metadata["kind"].clone()))
        .collect();
    let row = |name: &str, subject: &str, queue: &str, kind: &str| {
        (
            name.to_owned(),
            subject.to_owned(),
            queue.to_owned(),
            kind.to_owned(),
        )
    };
    assert_eq!(
        listed,
        [
            row("say", "rpc.tools.say", "rpc.tools", "rpc"),
            row("refuse", "rpc.tools.refuse", "rpc.tools", "rpc"),
            row("ping", "rpc.tools.ping", "rpc.tools", "rpc"),
            row("explode", "rpc.tools.explode", "rpc.tools", "rpc"),
            row("lead", "rpc.tools.lead", "rpc.tools", "exclusive_rpc"),
            row("reindex", "commands.tools.reindex", "", "command"),
            row(
                "aegis_status",
                "rpc.tools.aegis_status",
                "rpc.tools",
                "builtin"
            ),
            row(
                "aegis_health",
                "rpc.tools.aegis_health",
                "rpc.tools",
                "builtin"
            ),
            row(
                "aegis_describe",
                "rpc.tools.aegis_describe",
                "rpc.tools",
                "builtin"
            ),
        ]
    );
    let schema = |name: &str, key: &str| -> Value {
        let endpoint = info
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        let text = endpoint
            .metadata
            .get(key)
            .unwrap_or_else(|| panic!("{name} has {key}"));
        serde_json::from_str(text).expect("a JSON Schema")
    };
    assert_eq!(
        schema("say", "request_schema")["properties"]["text"]["type"],
        "string"
    );
    assert_eq!(
        schema("say", "response_schema")["properties"]["said"]["type"],
        "string"
    );
    assert_eq!(
        schema("reindex", "request_schema")["properties"]["shard"]["type"],
        "integer"
    );
    assert_eq!(schema("reindex", "response_schema")["type"], "integer");
    assert_eq!(
        schema("aegis_status", "response_schema")["title"],
        "StatusReport"
    );
    assert!(schema("aegis_status", "response_schema")["properties"]["uptime_seconds"].is_object());
    assert_eq!(
        schema("aegis_health", "response_schema")["title"],
        "HealthReport"
    );
    assert_eq!(
        schema("aegis_describe", "response_schema")["title"],
        "ServiceDescriptor"
    );
    assert_eq!(schema("aegis_status", "request_schema")["maxProperties"], 0);
    let exclusive = |name: &str| {
        info.endpoints
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.metadata["exclusive"].clone())
    };
    assert_eq!(exclusive("lead").as_deref(), Some("true"));
    assert_eq!(exclusive("say").as_deref(), Some("false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_lists_an_exclusive_method_only_under_its_own_subject() {
    let f = Fixture::start().await;
    assert!(!f.standby.leadership().is_active());
    let info = f.info("$SRV.INFO.tools.tools-standby").await;
    assert_eq!(info.id, "tools-standby");
    let lead: Vec<_> = endpoints(&info)
        .into_iter()
        .filter(|(name, ..)| name == "lead")
        .collect();
    assert_eq!(lead.len(), 1, "{lead:?}");
    let (_, subject, queue, metadata) = &lead[0];
    // Not the group's subject, which only the leader serves: its own, which forwards.
    assert_eq!(subject, "rpc.tools.tools-standby.lead");
    assert_eq!(queue, "");
    assert_eq!(metadata["kind"], "exclusive_rpc");
    assert!(
        !info.endpoints.iter().any(|e| e.subject == "rpc.tools.lead"),
        "a standby does not list the shared exclusive subject"
    );
    // Its other endpoints are the leader's.
    assert_eq!(info.endpoints.len(), 9);
    assert!(info.endpoints.iter().any(|e| e.subject == "rpc.tools.say"));
    // And the subject it lists does answer (forwarded to the leader).
    let reply = f.request(subject, br#"{"text":"via standby"}"#, None).await;
    assert_eq!(bare_json(&reply)["instance"], "tools-leader via standby");
}
