//! Envelope timestamps: RFC 3339 strings as Python's `datetime.isoformat()` writes them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with microsecond precision, written as the Python SDK writes it:
/// `2026-11-22T19:18:57.531619+00:00` (no fraction when it is zero, as `isoformat()` does).
///
/// Parsing accepts `Z`, any offset (converted to UTC) and naive timestamps (taken as UTC).
/// Digits beyond microseconds are truncated, so what is parsed is what is written.
///
/// ```
/// use aegis_runtime::codec::Timestamp;
///
/// let t: Timestamp = "2026-11-22T20:18:57.5316Z".parse()?;
/// assert_eq!(t.to_string(), "2026-11-22T20:18:57.531600+00:00");
/// let t: Timestamp = "2026-11-22T21:18:57+01:00".parse()?;
/// assert_eq!(t.to_string(), "2026-11-22T20:18:57+00:00");
/// # Ok::<(), aegis_runtime::codec::InvalidTimestamp>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// A string that is not an RFC 3339 / ISO 8601 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {value:?}: expected RFC 3339 such as \
     \"2026-11-22T19:18:57.531619+00:00\" (`Z`, an offset or none are accepted)"
)]
pub struct InvalidTimestamp {
    /// The rejected text.
    pub value: String,
}

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Wraps a UTC time, truncated to microseconds.
    pub fn from_datetime(time: DateTime<Utc>) -> Self {
        Self(time.trunc_subsecs(6))
    }

    /// The time as a chrono UTC datetime.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Seconds since the Unix epoch, as the Python SDK writes epoch floats.
    pub fn as_epoch_seconds(&self) -> f64 {
        self.0.timestamp() as f64 + f64::from(self.0.timestamp_subsec_micros()) / 1e6
    }
}

impl From<Timestamp> for std::time::SystemTime {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0.into()
    }
}

impl From<std::time::SystemTime> for Timestamp {
    /// The time, truncated to microseconds.
    fn from(time: std::time::SystemTime) -> Self {
        Self::from_datetime(time.into())
    }
}

impl Timestamp {
    /// The time as pydantic writes a datetime inside a JSON payload (the Python SDK's
    /// event payloads): RFC 3339 with microseconds and `Z`, where envelopes use `+00:00`.
    ///
    /// ```
    /// use aegis_runtime::codec::Timestamp;
    ///
    /// let at: Timestamp = "2026-11-22T19:15:47.757566+00:00".parse()?;
    /// assert_eq!(at.to_zulu(), "2026-11-22T19:15:47.757566Z");
    /// # Ok::<(), aegis_runtime::codec::InvalidTimestamp>(())
    /// ```
    pub fn to_zulu(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precision = if self.0.timestamp_subsec_micros() == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Micros
        };
        // `use_z = false` writes `+00:00`, as Python does.
        f.write_str(&self.0.to_rfc3339_opts(precision, false))
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    fn from_str(s: &str) -> Result<Self, InvalidTimestamp> {
        let parsed = DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .map(|time| time.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
            });
        match parsed {
            Ok(time) => Ok(Self::from_datetime(time)),
            Err(_) => Err(InvalidTimestamp {
                value: s.to_owned(),
            }),
        }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self::from_datetime(time)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> String {
        s.parse::<Timestamp>().expect(s).to_string()
    }

    #[test]
    fn python_isoformat_round_trips() {
        for s in [
            "2026-11-22T19:18:57.531619+00:00",
            "2026-11-22T19:18:57+00:00",
            "2026-11-22T19:18:57.000001+00:00",
        ] {
            assert_eq!(parse(s), s);
        }
    }

    #[test]
    fn z_offsets_and_naive_are_accepted() {
        assert_eq!(
            parse("2026-11-22T19:18:57.5Z"),
            "2026-11-22T19:18:57.500000+00:00"
        );
        assert_eq!(
            parse("2026-11-22T21:18:57.5+02:00"),
            "2026-11-22T19:18:57.500000+00:00"
        );
        assert_eq!(
            parse("2026-11-22T18:18:57-0100"),
            "2026-11-22T19:18:57+00:00"
        );
        assert_eq!(
            parse("2026-11-22T19:18:57.531619"),
            "2026-11-22T19:18:57.531619+00:00"
        );
        assert_eq!(parse("2026-11-22T19:18:57"), "2026-11-22T19:18:57+00:00");
        assert_eq!(
            parse("2026-11-22T19:18:57.123456789Z"),
            "2026-11-22T19:18:57.123456+00:00"
        );
    }

    #[test]
    fn garbage_is_rejected_with_the_value() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-22",
            "1795375137.5",
        ] {
            let err = bad.parse::<Timestamp>().expect_err(bad);
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains("RFC 3339"));
        }
    }

    #[test]
    fn now_has_microsecond_precision() {
        let now = Timestamp::now();
        assert_eq!(now.as_datetime().timestamp_subsec_nanos() % 1000, 0);
        assert_eq!(now.to_string().parse::<Timestamp>(), Ok(now));
    }
}
