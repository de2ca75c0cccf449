//! Validated name types. Holding one proves the name follows its rule in [`rules`](super::rules).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::rules::{self, NameKind, RuleViolation};

/// A name that failed validation: the offending value, what was wrong and the rule.
///
/// ```
/// use aegis_runtime::subject::ServiceName;
///
/// let err = ServiceName::new("orders.v2").unwrap_err();
/// assert!(err.to_string().contains("'.' at position 6 is not allowed"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{violation} (got {value:?})")]
pub struct InvalidName {
    /// The rejected value.
    pub value: String,
    /// Which rule it broke and how.
    pub violation: RuleViolation,
}

impl InvalidName {
    /// The kind of name that was rejected.
    pub fn kind(&self) -> NameKind {
        self.violation.kind
    }
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`InvalidName`] naming the rule when `value` breaks it.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
                let value = value.into();
                match $check(&value) {
                    Ok(()) => Ok(Self(value)),
                    Err(violation) => Err(InvalidName { value, violation }),
                }
            }

            /// Wraps a name already checked against the rule (by the macro, at compile time).
            #[allow(dead_code)]
            pub(crate) fn from_checked(value: impl Into<String>) -> Self {
                let value = value.into();
                debug_assert!($check(&value).is_ok(), "{value:?} was not checked");
                Self(value)
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidName;
            fn try_from(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A service name such as `order-processor`: a letter first, then letters, digits, `_` or
    /// `-`, not ending in `_` or `-`, at most 64 characters, no dots.
    ///
    /// ```
    /// use aegis_runtime::subject::ServiceName;
    ///
    /// let name = ServiceName::new("order-processor")?;
    /// assert_eq!(name.as_str(), "order-processor");
    /// assert!(ServiceName::new("order-processor-").is_err());
    /// # Ok::<(), aegis_runtime::subject::InvalidName>(())
    /// ```
    ServiceName,
    rules::check_service_name
);

validated_name!(
    /// A method (RPC or command) name such as `process_order`: `^[a-z][a-z0-9_]*$`.
    ///
    /// ```
    /// use aegis_runtime::subject::MethodName;
    ///
    /// assert!(MethodName::new("process_order").is_ok());
    /// assert!(MethodName::new("processOrder").is_err());
    /// ```
    MethodName,
    rules::check_method_name
);

validated_name!(
    /// An instance id such as `order-processor-1a2b3c4d`: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
    ///
    /// ```
    /// use aegis_runtime::subject::{InstanceId, ServiceName};
    ///
    /// let service = ServiceName::new("orders")?;
    /// let id = InstanceId::generate(&service);
    /// assert!(id.as_str().starts_with("orders-"));
    /// assert!(InstanceId::new("a.b").is_err());
    /// # Ok::<(), aegis_runtime::subject::InvalidName>(())
    /// ```
    InstanceId,
    rules::check_instance_id
);

validated_name!(
    /// A sticky-active group id such as `default`: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`, at most 64
    /// characters.
    ///
    /// ```
    /// use aegis_runtime::subject::GroupId;
    ///
    /// assert_eq!(GroupId::default().as_str(), "default");
    /// assert!(GroupId::new("eu.west").is_err());
    /// ```
    GroupId,
    rules::check_group_id
);

validated_name!(
    /// One token of an event subject: the domain (`orders`) or the event type (`created`).
    ///
    /// ```
    /// use aegis_runtime::subject::EventToken;
    ///
    /// assert!(EventToken::new("LeaderElected").is_ok());
    /// assert!(EventToken::new("orders.created").is_err());
    /// ```
    EventToken,
    rules::check_event_token
);

validated_name!(
    /// An event subscription pattern: `events.` then tokens, `*` for one token and a final
    /// `>` for the rest, e.g. `events.orders.*` or `events.>`.
    ///
    /// ```
    /// use aegis_runtime::subject::EventPattern;
    ///
    /// assert!(EventPattern::new("events.orders.*").is_ok());
    /// assert!(EventPattern::new("events.>.created").is_err());
    /// ```
    EventPattern,
    rules::check_event_pattern
);

impl InstanceId {
    /// A fresh default instance id for `service`: `{service}-{8 hex digits}`.
    pub fn generate(service: &ServiceName) -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        // A valid service name followed by `-` and hex digits is always a valid instance id.
        Self(format!("{service}-{}", &random[..8]))
    }
}

impl GroupId {
    /// The group used when none is configured.
    pub const DEFAULT: &'static str = "default";
}

impl Default for GroupId {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl EventPattern {
    /// Whether the concrete subject `subject` matches this pattern (NATS wildcard rules).
    ///
    /// ```
    /// use aegis_runtime::subject::EventPattern;
    ///
    /// let pattern = EventPattern::new("events.orders.*")?;
    /// assert!(pattern.matches("events.orders.created"));
    /// assert!(!pattern.matches("events.orders.created.v2"));
    /// # Ok::<(), aegis_runtime::subject::InvalidName>(())
    /// ```
    pub fn matches(&self, subject: &str) -> bool {
        super::matches(&self.0, subject)
    }
}
