//! The wire codec: envelopes of the Python AegisSDK, as MessagePack (default) or JSON.
//!
//! Envelopes are maps with snake_case string keys in a fixed order, every field present (nil
//! when absent), strings as `str`, floats as float64: the bytes the Python SDK writes. A
//! receiver accepts both encodings; the first byte decides (see [`Format::detect`]).
//! Decoding never panics: bad input gives a [`DecodeError`] that says what was wrong.
//!
//! ```
//! use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
//! use serde_json::json;
//!
//! let request = RpcRequest::new("process_order", json!({"order_id": "ORD-1"}));
//! let bytes = codec::encode(&request)?;
//! let received: RpcRequest = codec::decode(&bytes)?;
//! assert_eq!(received, request);
//!
//! let response = RpcResponse::ok(&received, json!({"accepted": true}));
//! let decoded: RpcResponse = codec::decode(&codec::encode(&response)?)?;
//! assert_eq!(decoded.correlation_id.as_deref(), Some(request.message_id.as_str()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod command_status;
mod depth;
mod envelope;
mod error;
pub(crate) use error::abridge;
mod exclusive;
pub mod headers;
mod timestamp;

use std::io::Cursor;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use command_status::{CommandCallback, CommandProgress, CommandStatus};
pub use envelope::{
    Command, DEFAULT_COMMAND_MAX_RETRIES, DEFAULT_COMMAND_TIMEOUT_SECS, DEFAULT_RPC_TIMEOUT_SECS,
    EVENT_VERSION, Event, Priority, RpcRequest, RpcResponse,
};
pub use error::{BrokenRule, DecodeError, EncodeError};
pub use exclusive::ExclusiveReply;
pub use timestamp::{InvalidTimestamp, Timestamp};

/// The error text that starts the reply to a request whose
/// [deadline](RpcRequest::deadline) had passed when it was to run: the method did not run.
pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";

/// How deeply maps and arrays may nest in a message [`decode`] accepts, counting the
/// envelope itself as level 1 (so `params` may hold 98 more levels).
///
/// Decoding recurses once per level; a hostile message a few hundred bytes long could
/// otherwise nest deep enough to overflow a thread's stack, which aborts the whole process
/// (a panic guard cannot catch it). The limit is checked before any recursion goes past it,
/// for MessagePack and JSON alike, in every build profile, and is far below what a 2 MiB
/// thread stack (tokio's default for its workers) survives in a debug build.
///
/// ```
/// use aegis_runtime::codec::{self, DecodeError, MAX_DEPTH, RpcRequest};
///
/// let deep = format!(
///     r#"{{"message_id":"m","trace_id":"t","correlation_id":null,"timestamp":"2025-01-01T00:00:00+00:00","source":null,"target":null,"method":"m","params":{{"a":{}1{}}},"timeout":1.0}}"#,
///     "[".repeat(MAX_DEPTH),
///     "]".repeat(MAX_DEPTH),
/// );
/// let err = codec::decode::<RpcRequest>(deep.as_bytes()).unwrap_err();
/// assert!(matches!(err, DecodeError::TooDeep { limit: MAX_DEPTH, .. }));
/// ```
pub const MAX_DEPTH: usize = 100;

/// Largest message [`decode`] accepts: 8 MiB, well above NATS's default 1 MiB payload limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// How a message is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// MessagePack, the default of the Python SDK and of Aegis.
    MessagePack,
    /// JSON text, accepted from senders that use it.
    Json,
}

impl Format {
    /// Tells the encoding of `bytes` from their first byte, as the Python SDK does: a
    /// MessagePack map, array or a marker in `0xc0..=0xdf` means MessagePack, anything else
    /// is read as JSON.
    ///
    /// ```
    /// use aegis_runtime::codec::Format;
    ///
    /// assert_eq!(Format::detect(&[0x89, 0xaa]), Format::MessagePack);
    /// assert_eq!(Format::detect(b"{\"a\":1}"), Format::Json);
    /// ```
    pub fn detect(bytes: &[u8]) -> Format {
        match bytes.first() {
            Some(0x80..=0x9f | 0xc0..=0xdf) => Format::MessagePack,
            _ => Format::Json,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::MessagePack => "MessagePack",
            Format::Json => "JSON",
        })
    }
}

/// A message of the protocol: what [`decode`] can produce.
///
/// Implemented by every envelope type; `check` holds rules that serde cannot express, such
/// as "`success` is true exactly when `error` is nil".
pub trait WireMessage: DeserializeOwned {
    /// What the message is, for error messages ("RPC request").
    const NAME: &'static str;

    /// Checks rules across fields after decoding.
    ///
    /// # Errors
    /// [`BrokenRule`], saying which rule the message breaks.
    fn check(&self) -> Result<(), BrokenRule> {
        Ok(())
    }
}

/// Encodes a message as MessagePack, the way the Python SDK does.
///
/// # Errors
/// [`EncodeError`] if a value cannot be represented (a map with non-string keys, say).
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, EncodeError> {
    // An envelope's own fields take about 200 bytes: start there rather than grow into it.
    let mut bytes = Vec::with_capacity(256);
    message
        .serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
        .map_err(|e| EncodeError::new(Format::MessagePack, e))?;
    Ok(bytes)
}

/// Encodes a message as compact JSON.
///
/// # Errors
/// [`EncodeError`] if a value cannot be represented (a non-finite float, say).
pub fn encode_json<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(message).map_err(|e| EncodeError::new(Format::Json, e))
}

/// Decodes a message from MessagePack or JSON (detected), refusing input over
/// [`DEFAULT_MAX_MESSAGE_SIZE`].
///
/// # Errors
/// [`DecodeError`] saying what was wrong: empty, too large, malformed, the wrong shape
/// (missing, unknown or mistyped field), nested deeper than [`MAX_DEPTH`], or breaking a
/// rule of the message.
pub fn decode<T: WireMessage>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with_limit(bytes, DEFAULT_MAX_MESSAGE_SIZE)
}

/// Like [`decode`], with a size limit of `max_size` bytes.
///
/// # Errors
/// As [`decode`].
pub fn decode_with_limit<T: WireMessage>(bytes: &[u8], max_size: usize) -> Result<T, DecodeError> {
    let what = T::NAME;
    let message: T = decode_as(bytes, what, max_size)?;
    message.check().map_err(|broken| DecodeError::Invalid {
        what,
        detail: broken.to_string(),
    })?;
    Ok(message)
}

/// Decodes any MessagePack or JSON value (detected), within the same limits as [`decode`]:
/// for tools that show what they received, such as a reply of unknown shape.
///
/// ```
/// use aegis_runtime::codec;
///
/// let value = codec::decode_value(br#"{"order_id": "ORD-1"}"#)?;
/// assert_eq!(value["order_id"], "ORD-1");
/// assert!(codec::decode_value("[".repeat(10_000).as_bytes()).is_err());
/// # Ok::<(), codec::DecodeError>(())
/// ```
///
/// # Errors
/// [`DecodeError`] as [`decode`] gives it.
pub fn decode_value(bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
    decode_as(bytes, "value", DEFAULT_MAX_MESSAGE_SIZE)
}

/// Decodes `bytes` as a `T` named `what` in errors, enforcing the size and depth limits.
fn decode_as<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    max_size: usize,
) -> Result<T, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty { what });
    }
    if bytes.len() > max_size {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            limit: max_size,
        });
    }
    match Format::detect(bytes) {
        Format::MessagePack => decode_msgpack(bytes, what),
        Format::Json => {
            if depth::json_exceeds(bytes, MAX_DEPTH) {
                return Err(DecodeError::TooDeep {
                    what,
                    format: Format::Json,
                    limit: MAX_DEPTH,
                });
            }
            serde_json::from_slice(bytes).map_err(|err| explain_json_error::<T>(bytes, what, &err))
        }
    }
}

/// A MessagePack deserializer of `bytes` that refuses nesting deeper than [`MAX_DEPTH`].
fn msgpack_deserializer(
    bytes: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>> {
    let mut deserializer = rmp_serde::Deserializer::new(Cursor::new(bytes));
    // rmp-serde fails when its counter reaches 0, so it allows one level less than it is set to.
    deserializer.set_max_depth(MAX_DEPTH + 1);
    deserializer
}

fn decode_msgpack<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let mut deserializer = msgpack_deserializer(bytes);
    let message = match T::deserialize(&mut deserializer) {
        Ok(message) => message,
        Err(err) => return Err(explain_msgpack_error::<T>(bytes, what, err)),
    };
    let consumed = deserializer.position();
    if consumed != bytes.len() as u64 {
        return Err(DecodeError::Malformed {
            what,
            format: Format::MessagePack,
            detail: format!(
                "{} trailing bytes after the message (it ends at byte {consumed})",
                bytes.len() as u64 - consumed
            ),
        });
    }
    Ok(message)
}

/// Turns a MessagePack decoding failure into a [`DecodeError`] that names the field.
///
/// The fast path decodes without tracking where it is; only a failed message is decoded a
/// second time with path tracking, so good messages pay nothing for good errors.
#[cold]
fn explain_msgpack_error<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    err: rmp_serde::decode::Error,
) -> DecodeError {
    if matches!(err, rmp_serde::decode::Error::DepthLimitExceeded) {
        return DecodeError::from_msgpack(what, err);
    }
    let mut deserializer = msgpack_deserializer(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(tracked) => {
            let path = tracked.path().to_string();
            DecodeError::from_msgpack(what, tracked.into_inner()).at_path(&path)
        }
        Ok(_) => DecodeError::from_msgpack(what, err),
    }
}

/// Like [`explain_msgpack_error`], for JSON.
#[cold]
fn explain_json_error<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    err: &serde_json::Error,
) -> DecodeError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(tracked) => {
            let path = tracked.path().to_string();
            DecodeError::from_json(what, bytes, tracked.inner()).at_path(&path)
        }
        Ok(_) => DecodeError::from_json(what, bytes, err),
    }
}

/// Whether an RPC request body that did not decode as an envelope is a **bare-JSON call**:
/// the method's parameters themselves, as `nats req rpc.echo.say '{"text":"hi"}'` sends them.
///
/// That is the case when the body is empty (no parameters), or when it is JSON (its first
/// byte is not MessagePack's, see [`Format::detect`]) and not envelope-shaped. A body is
/// envelope-shaped when its top-level value is a JSON object with both a `message_id` and a
/// `params` key; the keys are read up to the first syntax error, so a broken envelope (a
/// value of the wrong type, nested too deep, cut short after its `params` key) still counts
/// as one, and keeps getting an envelope error.
/// MessagePack is never bare: only envelopes travel as MessagePack.
///
/// Decode the envelope first: this is the fallback for bodies that are not one.
///
/// ```
/// use aegis_runtime::codec::is_bare_call;
///
/// assert!(is_bare_call(br#"{"text":"hi"}"#));
/// assert!(is_bare_call(b""));
/// assert!(is_bare_call(b"[1, 2]"));
/// assert!(is_bare_call(br#"{"text": hi}"#)); // broken JSON, but no envelope
/// assert!(!is_bare_call(br#"{"message_id":"m","params":{"x":1},"bad":"#));
/// assert!(!is_bare_call(&[0x81, 0xa1, b'a', 0x01])); // MessagePack
/// ```
pub fn is_bare_call(bytes: &[u8]) -> bool {
    bytes.is_empty() || (Format::detect(bytes) == Format::Json && !envelope_shaped(bytes))
}

/// Whether `bytes` (JSON) hold an object with a top-level `message_id` and `params` key,
/// as far as they can be read. Values are skipped without recursion (serde_json skips an
/// ignored value iteratively), so no nesting can overflow the stack here.
fn envelope_shaped(bytes: &[u8]) -> bool {
    use serde::Deserializer as _;
    use serde::de::{IgnoredAny, MapAccess, Visitor};

    struct Keys<'a>(&'a mut (bool, bool));

    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RPC request envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "message_id" => self.0.0 = true,
                    "params" => self.0.1 = true,
                    _ => {}
                }
                if *self.0 == (true, true) {
                    return Ok(());
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if first != Some(&b'{') {
        return false;
    }
    let mut seen = (false, false);
    // An error after both keys (or anywhere) changes nothing: what was read counts.
    let _ = serde_json::Deserializer::from_slice(bytes).deserialize_map(Keys(&mut seen));
    seen == (true, true)
}

/// Decodes the parameters of a [bare-JSON call](is_bare_call): the whole body is the
/// method's parameters, within the size and depth limits of [`decode`] (the parameters
/// count as level 1). An empty body stands for no parameters: it decodes as `{}`, which a
/// method without parameters (or with only optional ones) accepts.
///
/// ```
/// use aegis_runtime::codec;
/// use std::collections::HashMap;
///
/// let params: HashMap<String, String> = codec::decode_params(br#"{"text":"hi"}"#)?;
/// assert_eq!(params["text"], "hi");
/// let none: HashMap<String, String> = codec::decode_params(b"")?;
/// assert!(none.is_empty());
/// assert!(codec::decode_params::<HashMap<String, String>>(b"[1]").is_err());
/// # Ok::<(), codec::DecodeError>(())
/// ```
///
/// # Errors
/// [`DecodeError`] naming the "RPC params": malformed JSON, the wrong shape (with the
/// field's path), nested deeper than [`MAX_DEPTH`], over [`DEFAULT_MAX_MESSAGE_SIZE`].
pub fn decode_params<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    const WHAT: &str = "RPC params";
    if bytes.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|err| DecodeError::Schema {
            what: WHAT,
            format: Format::Json,
            detail: format!("the body is empty (no parameters), but the method needs some: {err}"),
        });
    }
    decode_as(bytes, WHAT, DEFAULT_MAX_MESSAGE_SIZE)
}

/// A new random message id (UUID v4, hyphenated), as the Python SDK makes them.
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
