//! The naming rules of the Aegis wire protocol, as pure functions over `&str`.
//!
//! A crate of its own, without dependencies, because the same rules are applied at run time
//! by `aegis-runtime` (as `aegis_runtime::subject::rules`) and at compile time by
//! `aegis-macros`: a name the macro accepts is a name the runtime accepts. Use it through
//! `aegis-runtime`.
//!
//! ```
//! use aegis_names::{NameKind, check_service_name};
//!
//! assert!(check_service_name("order-processor").is_ok());
//! let violation = check_service_name("Orders!").unwrap_err();
//! assert_eq!(violation.kind, NameKind::Service);
//! ```

use std::fmt;

/// Longest accepted service name, in bytes.
pub const MAX_SERVICE_NAME_LEN: usize = 64;
/// Longest accepted group id, in bytes.
pub const MAX_GROUP_ID_LEN: usize = 64;

/// Which kind of name a [`RuleViolation`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A service name, e.g. `order-processor`.
    Service,
    /// A method (RPC or command) name, e.g. `process_order`.
    Method,
    /// An instance id, e.g. `order-processor-1a2b3c4d`.
    Instance,
    /// A sticky-active group id, e.g. `default`.
    Group,
    /// An event domain or event type, one token of an event subject.
    EventToken,
    /// An event subscription pattern, e.g. `events.orders.*`.
    EventPattern,
}

impl NameKind {
    /// The rule of this kind of name, as shown in error messages and docs.
    pub const fn rule(self) -> &'static str {
        match self {
            NameKind::Service => {
                "^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$, at most 64 characters: a letter first, \
                 then letters, digits, '_' or '-', not ending in '_' or '-' (no dots)"
            }
            NameKind::Method => {
                "^[a-z][a-z0-9_]*$: a lowercase letter first, then lowercase letters, digits or '_'"
            }
            NameKind::Instance => {
                "^[a-zA-Z0-9][a-zA-Z0-9_-]*$: a letter or digit first, then letters, digits, '_' or '-'"
            }
            NameKind::Group => {
                "^[a-zA-Z0-9][a-zA-Z0-9_-]*$, at most 64 characters: a letter or digit first, \
                 then letters, digits, '_' or '-'"
            }
            NameKind::EventToken => "^[a-zA-Z0-9_-]+$: letters, digits, '_' or '-' (no dots)",
            NameKind::EventPattern => {
                "`events.` followed by dot-separated tokens of letters, digits, '_' or '-'; \
                 a token may be the wildcard `*`, and the last token may be `>`"
            }
        }
    }

    /// The name of this kind in prose, e.g. "service name".
    pub const fn noun(self) -> &'static str {
        match self {
            NameKind::Service => "service name",
            NameKind::Method => "method name",
            NameKind::Instance => "instance id",
            NameKind::Group => "group id",
            NameKind::EventToken => "event domain or type",
            NameKind::EventPattern => "event pattern",
        }
    }
}

/// What exactly is wrong with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The name is empty.
    Empty,
    /// The name is longer than allowed.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A character that may not appear where it does.
    BadChar {
        /// The character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
    /// The first character is not allowed to start the name.
    BadStart(char),
    /// The last character is not allowed to end the name.
    BadEnd(char),
    /// An event pattern has an empty token (`events..x`, trailing `.`).
    EmptyToken {
        /// Zero-based index of the token.
        index: usize,
    },
    /// `>` appears somewhere other than as the whole last token.
    FullWildcardNotLast,
    /// A `*` or `>` shares its token with other characters (`ord*`).
    PartialWildcard {
        /// Zero-based index of the token.
        index: usize,
    },
    /// An event pattern does not begin with `events.`.
    NotEventsPrefix,
    /// An event pattern has too few tokens to name `events.{domain}.{type}`.
    TooFewTokens,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("it is empty"),
            Problem::TooLong { len, max } => write!(f, "it is {len} characters long (max {max})"),
            Problem::BadChar { ch, at } => write!(f, "{ch:?} at position {at} is not allowed"),
            Problem::BadStart(ch) => write!(f, "it may not start with {ch:?}"),
            Problem::BadEnd(ch) => write!(f, "it may not end with {ch:?}"),
            Problem::EmptyToken { index } => write!(f, "token {index} is empty"),
            Problem::FullWildcardNotLast => f.write_str("`>` may only be the last token"),
            Problem::PartialWildcard { index } => {
                write!(f, "token {index} mixes a wildcard with other characters")
            }
            Problem::NotEventsPrefix => f.write_str("it does not start with `events.`"),
            Problem::TooFewTokens => {
                f.write_str("it needs `events.{domain}.{event_type}` (or end in `>`)")
            }
        }
    }
}

/// A name that breaks its rule: which kind, what was wrong, and the rule itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The kind of name that was checked.
    pub kind: NameKind,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}: {}; the rule is {}",
            self.kind.noun(),
            self.problem,
            self.kind.rule()
        )
    }
}

type Check = Result<(), RuleViolation>;

fn violation(kind: NameKind, problem: Problem) -> Check {
    Err(RuleViolation { kind, problem })
}

/// Checks `name` against a "first character / rest / last character" rule.
fn check_shape(
    kind: NameKind,
    name: &str,
    max: Option<usize>,
    first_ok: fn(char) -> bool,
    rest_ok: fn(char) -> bool,
    last_ok: fn(char) -> bool,
) -> Check {
    let Some(first) = name.chars().next() else {
        return violation(kind, Problem::Empty);
    };
    if let Some(max) = max.filter(|max| name.len() > *max) {
        return violation(
            kind,
            Problem::TooLong {
                len: name.len(),
                max,
            },
        );
    }
    if !first_ok(first) {
        return violation(
            kind,
            if rest_ok(first) {
                Problem::BadStart(first)
            } else {
                Problem::BadChar { ch: first, at: 0 }
            },
        );
    }
    if let Some((at, ch)) = name.char_indices().skip(1).find(|(_, c)| !rest_ok(*c)) {
        return violation(kind, Problem::BadChar { ch, at });
    }
    match name.chars().last() {
        Some(last) if !last_ok(last) => violation(kind, Problem::BadEnd(last)),
        _ => Ok(()),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn any(_: char) -> bool {
    true
}

/// Checks a service name: `^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$`, at most 64 bytes.
pub fn check_service_name(name: &str) -> Check {
    check_shape(
        NameKind::Service,
        name,
        Some(MAX_SERVICE_NAME_LEN),
        |c| c.is_ascii_alphabetic(),
        is_word_char,
        |c| c.is_ascii_alphanumeric(),
    )
}

/// Checks a method name: `^[a-z][a-z0-9_]*$`.
pub fn check_method_name(name: &str) -> Check {
    check_shape(
        NameKind::Method,
        name,
        None,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        any,
    )
}

/// Checks an instance id: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
pub fn check_instance_id(id: &str) -> Check {
    check_shape(
        NameKind::Instance,
        id,
        None,
        |c| c.is_ascii_alphanumeric(),
        is_word_char,
        any,
    )
}

/// Checks a sticky-active group id: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`, at most 64 bytes.
pub fn check_group_id(id: &str) -> Check {
    check_shape(
        NameKind::Group,
        id,
        Some(MAX_GROUP_ID_LEN),
        |c| c.is_ascii_alphanumeric(),
        is_word_char,
        any,
    )
}

/// Checks one token of an event subject (the domain or the event type): `^[a-zA-Z0-9_-]+$`.
pub fn check_event_token(token: &str) -> Check {
    check_shape(
        NameKind::EventToken,
        token,
        None,
        is_word_char,
        is_word_char,
        any,
    )
}

/// Checks an event subscription pattern such as `events.orders.*` or `events.>`.
///
/// The pattern starts with the literal token `events`; every other token is an event token,
/// `*` (one token) or, as the last token only, `>` (one or more tokens). Without `>` the
/// pattern needs at least three tokens, as every event subject is
/// `events.{domain}.{event_type}`.
pub fn check_event_pattern(pattern: &str) -> Check {
    let kind = NameKind::EventPattern;
    if pattern.is_empty() {
        return violation(kind, Problem::Empty);
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    let last = tokens.len() - 1;
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return violation(kind, Problem::EmptyToken { index });
        }
        match *token {
            ">" if index != last => return violation(kind, Problem::FullWildcardNotLast),
            ">" | "*" => {}
            _ if token.contains('>') && index != last => {
                return violation(kind, Problem::FullWildcardNotLast);
            }
            _ if token.contains(['*', '>']) => {
                return violation(kind, Problem::PartialWildcard { index });
            }
            _ => {
                if let Some((at, ch)) = token.char_indices().find(|(_, c)| !is_word_char(*c)) {
                    let offset = tokens[..index].iter().map(|t| t.len() + 1).sum::<usize>();
                    return violation(
                        kind,
                        Problem::BadChar {
                            ch,
                            at: offset + at,
                        },
                    );
                }
            }
        }
    }
    if tokens[0] != "events" {
        return violation(kind, Problem::NotEventsPrefix);
    }
    let ends_in_full_wildcard = tokens[last] == ">";
    if tokens.len() < 3 && !(ends_in_full_wildcard && tokens.len() == 2) {
        return violation(kind, Problem::TooFewTokens);
    }
    Ok(())
}

/// Checks a service version: `MAJOR.MINOR.PATCH[-pre-release][+build]` (Semantic Versioning
/// 2.0, leniently for the pre-release and build identifiers).
///
/// # Errors
/// A sentence naming the rule.
pub fn check_version(version: &str) -> Result<(), String> {
    let (core, _build) = version.split_once('+').unwrap_or((version, ""));
    let (core, _pre) = core.split_once('-').unwrap_or((core, ""));
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let extras_ok = version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    if parts.len() == 3 && parts.iter().all(numeric) && extras_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version {version:?}: expected MAJOR.MINOR.PATCH such as \"1.0.0\" \
             (optionally with -pre-release and +build)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(result: Check) -> Problem {
        result.expect_err("expected a violation").problem
    }

    #[test]
    fn service_names_follow_the_rule() {
        for ok in ["a", "order-processor", "Order_Svc2", "x1", &"a".repeat(64)] {
            assert_eq!(check_service_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(problem(check_service_name("")), Problem::Empty);
        assert_eq!(problem(check_service_name("svc-")), Problem::BadEnd('-'));
        assert_eq!(problem(check_service_name("svc_")), Problem::BadEnd('_'));
        assert_eq!(problem(check_service_name("1svc")), Problem::BadStart('1'));
        assert_eq!(problem(check_service_name("-svc")), Problem::BadStart('-'));
        assert_eq!(
            problem(check_service_name("order.svc")),
            Problem::BadChar { ch: '.', at: 5 }
        );
        assert_eq!(
            problem(check_service_name("order svc")),
            Problem::BadChar { ch: ' ', at: 5 }
        );
        assert_eq!(
            problem(check_service_name("ordér")),
            Problem::BadChar { ch: 'é', at: 3 }
        );
        assert_eq!(
            problem(check_service_name(&"a".repeat(65))),
            Problem::TooLong { len: 65, max: 64 }
        );
    }

    #[test]
    fn method_names_follow_the_rule() {
        for ok in ["a", "process_order", "health_check", "v2", "a_"] {
            assert_eq!(check_method_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(problem(check_method_name("")), Problem::Empty);
        assert_eq!(
            problem(check_method_name("Process")),
            Problem::BadChar { ch: 'P', at: 0 }
        );
        assert_eq!(problem(check_method_name("_x")), Problem::BadStart('_'));
        assert_eq!(problem(check_method_name("9x")), Problem::BadStart('9'));
        assert_eq!(
            problem(check_method_name("processOrder")),
            Problem::BadChar { ch: 'O', at: 7 }
        );
        assert_eq!(
            problem(check_method_name("process-order")),
            Problem::BadChar { ch: '-', at: 7 }
        );
        assert_eq!(
            problem(check_method_name("a.b")),
            Problem::BadChar { ch: '.', at: 1 }
        );
    }

    #[test]
    fn instance_and_group_ids_follow_the_rule() {
        for ok in ["1", "order-svc-1a2b3c4d", "A_b-", "default"] {
            assert_eq!(check_instance_id(ok), Ok(()), "{ok}");
            assert_eq!(check_group_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(problem(check_instance_id("")), Problem::Empty);
        assert_eq!(problem(check_instance_id("-a")), Problem::BadStart('-'));
        assert_eq!(problem(check_instance_id("_a")), Problem::BadStart('_'));
        assert_eq!(
            problem(check_instance_id("a.b")),
            Problem::BadChar { ch: '.', at: 1 }
        );
        assert_eq!(
            problem(check_instance_id("a*")),
            Problem::BadChar { ch: '*', at: 1 }
        );
        assert_eq!(check_instance_id(&"a".repeat(200)), Ok(()));
        assert_eq!(
            problem(check_group_id(&"g".repeat(65))),
            Problem::TooLong { len: 65, max: 64 }
        );
        assert_eq!(
            problem(check_group_id("a>b")),
            Problem::BadChar { ch: '>', at: 1 }
        );
    }

    #[test]
    fn event_patterns_follow_the_rule() {
        for ok in [
            "events.orders.created",
            "events.orders.*",
            "events.*.created",
            "events.>",
            "events.orders.>",
            "events.sticky_active.LeaderElected",
            "events.a.b.c",
        ] {
            assert_eq!(check_event_pattern(ok), Ok(()), "{ok}");
        }
        assert_eq!(problem(check_event_pattern("")), Problem::Empty);
        assert_eq!(
            problem(check_event_pattern("events..created")),
            Problem::EmptyToken { index: 1 }
        );
        assert_eq!(
            problem(check_event_pattern("events.orders.")),
            Problem::EmptyToken { index: 2 }
        );
        assert_eq!(
            problem(check_event_pattern(".events.orders")),
            Problem::EmptyToken { index: 0 }
        );
        assert_eq!(
            problem(check_event_pattern("events.>.created")),
            Problem::FullWildcardNotLast
        );
        assert_eq!(
            problem(check_event_pattern("events.ord>.x")),
            Problem::FullWildcardNotLast
        );
        assert_eq!(
            problem(check_event_pattern("events.ord*.x")),
            Problem::PartialWildcard { index: 1 }
        );
        assert_eq!(
            problem(check_event_pattern("events.orders.cre>")),
            Problem::PartialWildcard { index: 2 }
        );
        assert_eq!(
            problem(check_event_pattern("orders.created.x")),
            Problem::NotEventsPrefix
        );
        assert_eq!(
            problem(check_event_pattern("*.a.b")),
            Problem::NotEventsPrefix
        );
        assert_eq!(
            problem(check_event_pattern("events.orders")),
            Problem::TooFewTokens
        );
        assert_eq!(
            problem(check_event_pattern("events")),
            Problem::TooFewTokens
        );
        assert_eq!(
            problem(check_event_pattern("events.*")),
            Problem::TooFewTokens
        );
        assert_eq!(
            problem(check_event_pattern("events.or ders.x")),
            Problem::BadChar { ch: ' ', at: 9 }
        );
    }

    #[test]
    fn event_tokens_follow_the_rule() {
        assert_eq!(check_event_token("sticky_active"), Ok(()));
        assert_eq!(check_event_token("LeaderElected"), Ok(()));
        assert_eq!(problem(check_event_token("")), Problem::Empty);
        assert_eq!(
            problem(check_event_token("a.b")),
            Problem::BadChar { ch: '.', at: 1 }
        );
        assert_eq!(
            problem(check_event_token("*")),
            Problem::BadChar { ch: '*', at: 0 }
        );
    }

    #[test]
    fn messages_name_the_kind_the_problem_and_the_rule() {
        let message = check_service_name("svc-").expect_err("invalid").to_string();
        assert!(
            message.starts_with("invalid service name: it may not end with '-'"),
            "{message}"
        );
        assert!(
            message.contains("^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$"),
            "{message}"
        );
    }
}
