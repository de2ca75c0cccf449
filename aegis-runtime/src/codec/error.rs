//! Errors of encoding and decoding.

use super::Format;

/// A message that could not be decoded, and why.
///
/// Every variant names the message it was decoding (`what`, e.g. "RPC request"), so the
/// text can be sent back to the caller as is.
///
/// ```
/// use aegis_runtime::codec::{self, DecodeError, RpcRequest};
///
/// let err = codec::decode::<RpcRequest>(br#"{"method": "x"}"#).unwrap_err();
/// assert!(matches!(err, DecodeError::Schema { .. }));
/// assert!(err.to_string().contains("missing field `message_id`"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload has no bytes.
    #[error("cannot decode {what}: the message is empty")]
    Empty {
        /// The message being decoded.
        what: &'static str,
    },
    /// The payload exceeds the size limit.
    #[error("cannot decode {what}: {len} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// The message being decoded.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes are not valid MessagePack or JSON: truncated, bad UTF-8, trailing bytes...
    #[error("cannot decode {what}: malformed {format}: {detail}")]
    Malformed {
        /// The message being decoded.
        what: &'static str,
        /// The encoding that was detected.
        format: Format,
        /// What is malformed.
        detail: String,
    },
    /// Valid MessagePack or JSON of the wrong shape: a missing, unknown or mistyped field.
    #[error("cannot decode {what} from {format}: {detail}")]
    Schema {
        /// The message being decoded.
        what: &'static str,
        /// The encoding that was detected.
        format: Format,
        /// Which field is wrong and how.
        detail: String,
    },
    /// Maps and arrays nest deeper than the limit ([`MAX_DEPTH`](super::MAX_DEPTH)): refused
    /// before decoding could recurse that deep.
    #[error(
        "cannot decode {what}: maps and arrays nest deeper than {limit} levels (the limit \
         that keeps a hostile message from overflowing the stack); flatten the payload"
    )]
    TooDeep {
        /// The message being decoded.
        what: &'static str,
        /// The encoding that was detected.
        format: Format,
        /// The limit, [`MAX_DEPTH`](super::MAX_DEPTH).
        limit: usize,
    },
    /// A well-formed message that breaks a rule across fields.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The message being decoded.
        what: &'static str,
        /// The rule that is broken.
        detail: String,
    },
}

/// A rule across the fields of a message that it breaks, in a sentence: what
/// [`WireMessage::check`](super::WireMessage::check) returns, and the `detail` of
/// [`DecodeError::Invalid`].
///
/// ```
/// use aegis_runtime::codec::BrokenRule;
///
/// let broken = BrokenRule::new("`progress` must be between 0 and 100, got 140");
/// assert_eq!(broken.to_string(), "`progress` must be between 0 and 100, got 140");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}")]
pub struct BrokenRule {
    rule: String,
}

impl BrokenRule {
    /// The rule that is broken, as a sentence naming the fields and their values.
    pub fn new(rule: impl Into<String>) -> Self {
        Self { rule: rule.into() }
    }
}

impl DecodeError {
    pub(super) fn from_msgpack(what: &'static str, err: rmp_serde::decode::Error) -> Self {
        use rmp_serde::decode::Error as E;
        let format = Format::MessagePack;
        let malformed = |detail: String| DecodeError::Malformed {
            what,
            format,
            detail,
        };
        let schema = |detail: String| DecodeError::Schema {
            what,
            format,
            detail,
        };
        match err {
            E::InvalidMarkerRead(io) | E::InvalidDataRead(io)
                if io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                malformed("truncated: the input ends inside a value".into())
            }
            E::InvalidMarkerRead(io) | E::InvalidDataRead(io) => malformed(io.to_string()),
            E::Utf8Error(e) => malformed(format!("a string is not valid UTF-8 ({e})")),
            E::DepthLimitExceeded => DecodeError::TooDeep {
                what,
                format,
                limit: super::MAX_DEPTH,
            },
            E::TypeMismatch(marker) => schema(format!("unexpected {}", describe(marker))),
            E::OutOfRange => schema("a number is out of range for its field".into()),
            E::LengthMismatch(len) => schema(format!("unexpected array length {len}")),
            E::Uncategorized(detail) | E::Syntax(detail) => schema(abridge(detail)),
        }
    }

    /// Prefixes a schema error with the path of the offending field (`params.amount`).
    pub(super) fn at_path(self, path: &str) -> Self {
        match self {
            DecodeError::Schema {
                what,
                format,
                detail,
            } if !path.is_empty() && path != "." => DecodeError::Schema {
                what,
                format,
                detail: format!("field `{path}`: {detail}"),
            },
            other => other,
        }
    }

    pub(super) fn from_json(what: &'static str, bytes: &[u8], err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let format = Format::Json;
        match err.classify() {
            Category::Data => DecodeError::Schema {
                what,
                format,
                detail: abridge(err.to_string()),
            },
            Category::Syntax | Category::Eof | Category::Io => {
                let mut detail = abridge(err.to_string());
                if let Some(first) = bytes.first().filter(|b| !b.is_ascii()) {
                    detail.push_str(&format!(
                        " (the first byte 0x{first:02x} starts neither JSON text nor a \
                         MessagePack map)"
                    ));
                }
                DecodeError::Malformed {
                    what,
                    format,
                    detail,
                }
            }
        }
    }
}

/// The most bytes of a decoder's message an error keeps.
const MAX_DETAIL: usize = 512;

/// `detail` cut to about [`MAX_DETAIL`] bytes, keeping its start and its end. A decoder
/// quotes the value it refused ("invalid type: string \"…\"") and ends with where it was
/// and what it expected: a message about a huge hostile string would otherwise be as big
/// as the string, in the reply, the logs and the instance's stats (`$SRV.STATS`, whose
/// answer must stay under the server's maximum payload).
pub(crate) fn abridge(detail: String) -> String {
    if detail.len() <= MAX_DETAIL {
        return detail;
    }
    let boundary_at_or_before = |mut at: usize| {
        while !detail.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let head = boundary_at_or_before(MAX_DETAIL / 2);
    let tail = boundary_at_or_before(detail.len() - MAX_DETAIL / 2);
    format!(
        "{} … ({} bytes left out) … {}",
        &detail[..head],
        tail - head,
        &detail[tail..]
    )
}

/// A MessagePack marker in words, for error messages.
fn describe(marker: rmp::Marker) -> &'static str {
    use rmp::Marker as M;
    match marker {
        M::Null => "nil",
        M::True | M::False => "boolean",
        M::FixPos(_)
        | M::FixNeg(_)
        | M::U8
        | M::U16
        | M::U32
        | M::U64
        | M::I8
        | M::I16
        | M::I32
        | M::I64 => "integer",
        M::F32 | M::F64 => "float",
        M::FixStr(_) | M::Str8 | M::Str16 | M::Str32 => "string",
        M::Bin8 | M::Bin16 | M::Bin32 => "binary data (Aegis sends strings as str, never bin)",
        M::FixArray(_) | M::Array16 | M::Array32 => "array",
        M::FixMap(_) | M::Map16 | M::Map32 => "map",
        M::FixExt1
        | M::FixExt2
        | M::FixExt4
        | M::FixExt8
        | M::FixExt16
        | M::Ext8
        | M::Ext16
        | M::Ext32 => "extension value",
        M::Reserved => "reserved byte 0xc1",
    }
}

/// A value that could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode as {format}: {source}")]
pub struct EncodeError {
    format: Format,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl EncodeError {
    pub(super) fn new(
        format: Format,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            format,
            source: Box::new(source),
        }
    }

    /// The encoding that failed.
    pub fn format(&self) -> Format {
        self.format
    }
}

#[cfg(test)]
mod tests {
    use super::abridge;

    #[test]
    fn a_long_message_keeps_its_start_and_its_end() {
        let long = format!(
            "invalid type: string \"{}\", expected struct X at line 1",
            "é".repeat(5000)
        );
        let short = abridge(long);
        assert!(short.len() < 700, "{}", short.len());
        assert!(short.starts_with("invalid type: string"));
        assert!(short.ends_with("expected struct X at line 1"));
        assert_eq!(abridge("short".to_owned()), "short");
    }
}
