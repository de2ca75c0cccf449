//! Bad input never panics and always says what was wrong.

use aegis_runtime::codec::{
    self, Command, CommandCallback, CommandProgress, DecodeError, Event, ExclusiveReply, Format,
    RpcRequest, RpcResponse,
};
use aegis_runtime::instance::ServiceInstance;
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid_request() -> Value {
    serde_json::to_value(RpcRequest::new(
        "process_order",
        json!({"order_id": "ORD-1"}),
    ))
    .expect("to value")
}

fn msgpack(value: &Value) -> Vec<u8> {
    codec::encode(value).expect("encode")
}

fn decode_request(bytes: &[u8]) -> DecodeError {
    codec::decode::<RpcRequest>(bytes).expect_err("must be rejected")
}

#[test]
fn empty_input_is_rejected() {
    assert_eq!(
        decode_request(b""),
        DecodeError::Empty {
            what: "RPC request"
        }
    );
    assert_eq!(
        decode_request(b"").to_string(),
        "cannot decode RPC request: the message is empty"
    );
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let bytes = msgpack(&valid_request());
    let err = codec::decode_with_limit::<RpcRequest>(&bytes, bytes.len() - 1).expect_err("too big");
    assert_eq!(
        err,
        DecodeError::TooLarge {
            what: "RPC request",
            len: bytes.len(),
            limit: bytes.len() - 1
        }
    );
    let huge = vec![b' '; codec::DEFAULT_MAX_MESSAGE_SIZE + 1];
    assert!(matches!(
        decode_request(&huge),
        DecodeError::TooLarge { .. }
    ));
}

#[test]
fn every_truncation_is_malformed_and_says_so() {
    for bytes in [
        msgpack(&valid_request()),
        codec::encode_json(&valid_request()).expect("json"),
    ] {
        for end in 1..bytes.len() {
            match decode_request(&bytes[..end]) {
                DecodeError::Malformed { detail, .. } => {
                    if Format::detect(&bytes) == Format::MessagePack {
                        assert!(detail.contains("truncated"), "at {end}: {detail}");
                    }
                }
                other => panic!("prefix of {end} bytes: expected Malformed, got {other:?}"),
            }
        }
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut bytes = msgpack(&valid_request());
    bytes.extend_from_slice(&[0xc0, 0xc0]);
    let err = decode_request(&bytes);
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                format: Format::MessagePack,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 trailing bytes"), "{err}");

    let mut json = codec::encode_json(&valid_request()).expect("json");
    json.extend_from_slice(b" {}");
    assert!(matches!(
        decode_request(&json),
        DecodeError::Malformed {
            format: Format::Json,
            ..
        }
    ));
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let mut value = valid_request();
    value["priority"] = json!("high");
    for bytes in [msgpack(&value), serde_json::to_vec(&value).expect("json")] {
        let err = decode_request(&bytes);
        assert!(matches!(err, DecodeError::Schema { .. }), "{err:?}");
        assert!(
            err.to_string().contains("unknown field `priority`"),
            "{err}"
        );
    }
}

#[test]
fn missing_and_mistyped_fields_are_rejected_by_name() {
    let mut missing = valid_request();
    missing.as_object_mut().expect("map").remove("method");
    let err = decode_request(&msgpack(&missing));
    assert!(err.to_string().contains("missing field `method`"), "{err}");

    let mut mistyped = valid_request();
    mistyped["timeout"] = json!("soon");
    let err = decode_request(&msgpack(&mistyped));
    assert!(matches!(err, DecodeError::Schema { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot decode RPC request from MessagePack: field `timeout`: unexpected string"
    );
    let err = decode_request(&serde_json::to_vec(&mistyped).expect("json"));
    assert!(
        err.to_string()
            .contains("field `timeout`: invalid type: string \"soon\""),
        "{err}"
    );

    let mut nested = valid_request();
    nested["params"] = json!({"order_id": 7});
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        order_id: String,
    }
    let err = codec::decode::<RpcRequest<Order>>(&msgpack(&nested)).expect_err("mistyped");
    assert!(
        err.to_string()
            .contains("field `params.order_id`: invalid type: integer `7`, expected a string"),
        "{err}"
    );

    let mut bad_time = valid_request();
    bad_time["timestamp"] = json!("yesterday");
    let err = decode_request(&msgpack(&bad_time));
    assert!(
        err.to_string().contains("invalid timestamp \"yesterday\""),
        "{err}"
    );
}

#[test]
fn a_map_that_is_not_an_envelope_is_a_schema_error() {
    let err = decode_request(&msgpack(&json!([1, 2, 3])));
    assert!(matches!(err, DecodeError::Schema { .. }), "{err:?}");
    let err = decode_request(&[0xc0]);
    assert!(matches!(err, DecodeError::Schema { .. }), "{err:?}");
}

#[test]
fn invalid_utf8_in_a_string_is_malformed() {
    let mut bytes = msgpack(&valid_request());
    // The method name "process_order" is a fixstr: corrupt its first byte.
    let at = bytes
        .windows(13)
        .position(|w| w == b"process_order")
        .expect("method bytes");
    bytes[at] = 0xff;
    let err = decode_request(&bytes);
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn binary_that_is_neither_format_says_so() {
    let err = decode_request(&[0xa5, b'h', b'e', b'l', b'l', b'o']);
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                format: Format::Json,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("first byte 0xa5"), "{err}");
}

#[test]
fn rules_across_fields_are_checked() {
    let request = RpcRequest::new("m", json!({}));
    let mut response = serde_json::to_value(RpcResponse::ok(&request, json!(1))).expect("value");
    response["error"] = json!("boom");
    let err = codec::decode::<RpcResponse>(&msgpack(&response)).expect_err("inconsistent");
    assert_eq!(
        err.to_string(),
        "invalid RPC response: `success` is true but `error` is set (\"boom\")"
    );

    let reply = json!({"success": false, "error": null, "message": "x", "result": null});
    let err = codec::decode::<ExclusiveReply>(&msgpack(&reply)).expect_err("inconsistent");
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err:?}");

    let mut negative = valid_request();
    negative["timeout"] = json!(-1.0);
    let err = decode_request(&msgpack(&negative));
    assert!(
        err.to_string().contains("`timeout` must be a non-negative"),
        "{err}"
    );

    let progress = json!({"command_id": "c", "progress": 150.0, "status": "x", "timestamp": 1.0});
    let err = codec::decode::<CommandProgress>(&msgpack(&progress)).expect_err("out of range");
    assert!(err.to_string().contains("between 0 and 100"), "{err}");

    let failed = json!({"command_id": "c", "status": "failed", "result": null});
    let err = codec::decode::<CommandCallback>(&msgpack(&failed)).expect_err("no error");
    assert!(err.to_string().contains("needs an `error`"), "{err}");
}

/// A valid RPC request whose `params` are `levels` nested maps or arrays (params itself
/// included), so that the whole message nests `levels + 1` deep.
fn request_nested(levels: usize, format: Format, maps: bool) -> Vec<u8> {
    let mut envelope = valid_request();
    envelope["params"] = json!({});
    let mut bytes = match format {
        Format::MessagePack => msgpack(&envelope),
        Format::Json => codec::encode_json(&envelope).expect("json"),
    };
    // The nesting is written by hand in place of the empty params map: building a `Value`
    // that deep would itself recurse.
    let (empty, inner): (&[u8], Vec<u8>) = match format {
        Format::MessagePack => {
            // {"x": {"x": ... {}}} or {"x": [[...{}]]}: `levels` containers in all.
            let mut inner = Vec::new();
            if levels > 1 {
                inner.extend([0x81, 0xa1, b'x']);
                for _ in 2..levels {
                    if maps {
                        inner.extend([0x81, 0xa1, b'x']);
                    } else {
                        inner.push(0x91);
                    }
                }
            }
            inner.push(0x80);
            (&[0xa6, b'p', b'a', b'r', b'a', b'm', b's', 0x80], inner)
        }
        Format::Json => {
            let (open, close) = if maps { ("{\"x\":", "}") } else { ("[", "]") };
            let inner = if levels > 1 {
                format!(
                    "{{\"x\":{}{{}}{}}}",
                    open.repeat(levels - 2),
                    close.repeat(levels - 2)
                )
            } else {
                "{}".to_owned()
            };
            (b"\"params\":{}", inner.into_bytes())
        }
    };
    let start = bytes
        .windows(empty.len())
        .position(|window| window == empty)
        .expect("params in the envelope");
    // Keep the key, replace the empty map after it.
    let value_at = start + empty.len() - 2 + usize::from(format == Format::MessagePack);
    let tail = bytes.split_off(start + empty.len());
    bytes.truncate(value_at);
    bytes.extend(inner);
    bytes.extend(tail);
    bytes
}

#[test]
fn nesting_up_to_the_limit_decodes_and_deeper_is_refused_by_name() {
    for format in [Format::MessagePack, Format::Json] {
        for maps in [true, false] {
            // The envelope is level 1: params may nest MAX_DEPTH - 1 more.
            let fits = request_nested(codec::MAX_DEPTH - 1, format, maps);
            let request: RpcRequest = codec::decode(&fits)
                .unwrap_or_else(|err| panic!("{format} maps={maps} at the limit: {err}"));
            assert!(request.params.get("x").is_some());

            for levels in [codec::MAX_DEPTH, codec::MAX_DEPTH + 1, 1_000, 100_000] {
                let err = decode_request(&request_nested(levels, format, maps));
                assert_eq!(
                    err,
                    DecodeError::TooDeep {
                        what: "RPC request",
                        format,
                        limit: codec::MAX_DEPTH
                    },
                    "{format} maps={maps} levels={levels}"
                );
                assert!(
                    err.to_string().contains("nest deeper than 100 levels"),
                    "{err}"
                );
            }
        }
    }
}

#[test]
fn decoding_at_the_depth_limit_fits_in_a_small_fraction_of_a_worker_stack() {
    // tokio's workers have 2 MiB stacks; a message at the limit must decode, and fail to
    // decode (the error path decodes a second time, tracking the path), in a quarter of
    // that, in debug builds too.
    let worst: Vec<Vec<u8>> = [Format::MessagePack, Format::Json]
        .into_iter()
        .flat_map(|format| {
            [true, false].map(|maps| request_nested(codec::MAX_DEPTH - 1, format, maps))
        })
        .collect();
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            for bytes in &worst {
                assert!(codec::decode::<RpcRequest>(bytes).is_ok());
                // Params of the wrong type: the error is found deep inside, then explained.
                assert!(codec::decode::<RpcRequest<Vec<Vec<u8>>>>(bytes).is_err());
            }
        })
        .expect("spawn")
        .join()
        .expect("decoding at the depth limit overflowed a 512 KiB stack");
}

#[test]
fn deep_nesting_at_the_top_level_is_refused_without_overflow() {
    let mut bytes = vec![0x91; 100_000];
    bytes.push(0xc0);
    let err = decode_request(&bytes);
    assert!(
        matches!(
            err,
            DecodeError::Malformed { .. }
                | DecodeError::Schema { .. }
                | DecodeError::TooDeep { .. }
        ),
        "{err:?}"
    );
    let json = "[".repeat(100_000);
    assert!(matches!(
        decode_request(json.as_bytes()),
        DecodeError::TooDeep { .. }
    ));
}

#[test]
fn huge_declared_lengths_do_not_allocate_or_panic() {
    // A map32 claiming 4 billion entries, and a str32 claiming 4 GiB, with no data behind.
    for bytes in [
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![0x81, 0xdb, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(matches!(
            decode_request(&bytes),
            DecodeError::Malformed { .. }
        ));
    }
}

/// Decodes `bytes` as every message type; returns whether any decoder accepted them.
fn decode_everything(bytes: &[u8]) -> bool {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Typed {
        order_id: String,
        amount: f64,
    }
    // The bare-JSON fallback of RPC requests reads the same bytes: it must not panic either.
    if codec::is_bare_call(bytes) {
        let _ = codec::decode_params::<Typed>(bytes);
        let _ = codec::decode_params::<serde::de::IgnoredAny>(bytes);
    }
    let results = [
        codec::decode::<RpcRequest>(bytes).is_ok(),
        codec::decode::<RpcRequest<Typed>>(bytes).is_ok(),
        codec::decode::<RpcResponse>(bytes).is_ok(),
        codec::decode::<RpcResponse<ExclusiveReply<Typed>>>(bytes).is_ok(),
        codec::decode::<Event>(bytes).is_ok(),
        codec::decode::<Command>(bytes).is_ok(),
        codec::decode::<ExclusiveReply>(bytes).is_ok(),
        codec::decode::<CommandProgress>(bytes).is_ok(),
        codec::decode::<CommandCallback>(bytes).is_ok(),
        codec::decode::<ServiceInstance>(bytes).is_ok(),
    ];
    results.iter().any(|ok| *ok)
}

fn sample_messages() -> Vec<Vec<u8>> {
    let request = RpcRequest::new("process_order", json!({"order_id": "O", "amount": 1.5}));
    vec![
        codec::encode(&request).expect("encode"),
        codec::encode_json(&request).expect("encode"),
        codec::encode(&RpcResponse::ok(
            &request,
            ExclusiveReply::ok(json!({"a": [1, 2]})),
        ))
        .expect("encode"),
        codec::encode(&Event::new("order", "created", json!({"id": 1}))).expect("encode"),
        codec::encode(&Command::new("reindex", json!({"n": 3}))).expect("encode"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_map_marker_never_panic(
        marker in 0x80u8..=0x8f,
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut input = vec![marker];
        input.extend(bytes);
        decode_everything(&input);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_messages().swap_remove(which);
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        decode_everything(&bytes);
    }
}

#[test]
fn any_timeout_gives_a_deadline_or_none_without_panicking() {
    let now = std::time::SystemTime::now();
    for timeout in [
        -1.0,
        0.0,
        f64::NAN,
        f64::INFINITY,
        1e18,
        1.8e19, // fits a Duration, but not the clock once added to `timestamp`
        1e300,
        f64::MIN_POSITIVE,
    ] {
        let request = RpcRequest::new("m", json!({})).with_timeout(timeout);
        // The rule a server applies to every request it decodes.
        assert_eq!(request.deadline_passed_by(now), None, "timeout {timeout}");
    }
    let huge = RpcRequest::new("m", json!({})).with_timeout(1.8e19);
    assert_eq!(huge.deadline(), None, "past any time the clock can hold");
}
