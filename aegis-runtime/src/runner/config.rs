//! What the runner checks of its settings before it connects anything.

use std::time::Duration;

use crate::instance::InvalidVersion;

/// A runner setting out of range, or a service version that breaks the rule: the instance
/// does not start. The message names the setting and its allowed range.
///
/// ```
/// use std::time::Duration;
/// use aegis_runtime::runner::InvalidConfig;
///
/// let err = InvalidConfig::HeartbeatNotShorterThanTtl {
///     heartbeat: Duration::from_secs(30),
///     ttl: Duration::from_secs(30),
/// };
/// assert!(err.to_string().contains("must be shorter than the registry TTL"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// The service's version is not `MAJOR.MINOR.PATCH` (`#[service(version = "…")]`).
    #[error("{0}")]
    Version(#[from] InvalidVersion),
    /// A zero heartbeat interval (`ServiceRunner::heartbeat_interval`).
    #[error("the heartbeat interval must not be zero")]
    ZeroHeartbeat,
    /// The heartbeat interval is not shorter than the registry TTL, so the entry would
    /// expire between heartbeats.
    #[error(
        "the heartbeat interval ({heartbeat:?}) must be shorter than the registry TTL ({ttl:?}), or the entry expires between heartbeats"
    )]
    HeartbeatNotShorterThanTtl {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The registry TTL, in whole seconds as NATS keeps it.
        ttl: Duration,
    },
    /// The leader TTL is under [`MIN_LEADER_TTL`](crate::election::MIN_LEADER_TTL).
    #[error("the leader TTL ({0:?}) must be at least 1 s (NATS TTLs are whole seconds)")]
    LeaderTtlTooShort(Duration),
}

/// Checks the timing settings: a heartbeat shorter than the registry TTL, and (when the
/// service elects a leader) a leader TTL of at least a second.
pub(super) fn check_timing(
    heartbeat: Duration,
    registry_ttl: Duration,
    leader_ttl: Option<Duration>,
) -> Result<(), InvalidConfig> {
    if heartbeat.is_zero() {
        return Err(InvalidConfig::ZeroHeartbeat);
    }
    if heartbeat >= registry_ttl {
        return Err(InvalidConfig::HeartbeatNotShorterThanTtl {
            heartbeat,
            ttl: registry_ttl,
        });
    }
    match leader_ttl {
        Some(ttl) if ttl < crate::election::MIN_LEADER_TTL => {
            Err(InvalidConfig::LeaderTtlTooShort(ttl))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_heartbeat_shorter_than_the_ttl_and_a_leader_ttl_of_a_second_pass() {
        assert_eq!(check_timing(SECOND, 3 * SECOND, Some(SECOND)), Ok(()));
        assert_eq!(check_timing(SECOND, 3 * SECOND, None), Ok(()));
    }

    #[test]
    fn each_setting_out_of_range_is_named() {
        assert_eq!(
            check_timing(Duration::ZERO, 3 * SECOND, None),
            Err(InvalidConfig::ZeroHeartbeat)
        );
        assert_eq!(
            check_timing(3 * SECOND, 3 * SECOND, None),
            Err(InvalidConfig::HeartbeatNotShorterThanTtl {
                heartbeat: 3 * SECOND,
                ttl: 3 * SECOND
            })
        );
        let short = Duration::from_millis(500);
        assert_eq!(
            check_timing(SECOND, 3 * SECOND, Some(short)),
            Err(InvalidConfig::LeaderTtlTooShort(short))
        );
        // A service that does not elect a leader does not use its TTL.
        assert_eq!(check_timing(SECOND, 3 * SECOND, None), Ok(()));
    }
}
