//! The registry entry of a live service instance (the value under
//! `service-instances.{service}.{instance}` in the `service_registry` bucket).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::codec::{Timestamp, WireMessage};
use crate::subject::{GroupId, InstanceId, ServiceName};

/// Health of an instance as it reports it in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Serving.
    Active,
    /// Up, but its heartbeats or dependencies are failing.
    Unhealthy,
    /// Up and not serving (the Python SDK's idle state).
    Standby,
}

/// Role of an instance in its sticky-active group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StickyActiveStatus {
    /// The leader: runs the exclusive methods.
    Active,
    /// Not the leader; watches for the leader to go.
    Standby,
    /// Trying to become leader right now.
    Electing,
}

/// One live instance of a service, as stored in the registry: camelCase JSON, compatible
/// with the Python SDK.
///
/// Every field is validated when decoded (names by their rules, `version` as
/// `MAJOR.MINOR.PATCH`, timestamps with `Z`, an offset or naive). Keys this version does not
/// know are ignored, so entries written by a newer SDK still list.
///
/// ```
/// use aegis_runtime::instance::{InstanceStatus, ServiceInstance};
///
/// let json = br#"{"serviceName":"order-svc","instanceId":"order-svc-a","version":"1.0.0",
///     "status":"ACTIVE","lastHeartbeat":"2026-11-22T19:18:47.773875Z",
///     "stickyActiveGroup":null,"metadata":{}}"#;
/// let instance = ServiceInstance::from_json(json)?;
/// assert_eq!(instance.status, InstanceStatus::Active);
/// assert_eq!(instance.instance_id, "order-svc-a");
/// # Ok::<(), aegis_runtime::codec::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstance {
    /// The service this instance serves.
    pub service_name: ServiceName,
    /// The instance's id, unique within the service.
    pub instance_id: InstanceId,
    /// The service version, `MAJOR.MINOR.PATCH` with optional pre-release and build.
    #[serde(deserialize_with = "deserialize_version")]
    pub version: String,
    /// Health as reported by the instance.
    pub status: InstanceStatus,
    /// When the instance last refreshed its entry.
    pub last_heartbeat: Timestamp,
    /// The sticky-active group it takes part in, if any.
    #[serde(default)]
    pub sticky_active_group: Option<GroupId>,
    /// Its role in that group, if any.
    #[serde(default)]
    pub sticky_active_status: Option<StickyActiveStatus>,
    /// Free-form data (the Python SDK writes `start_time`).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Which form of registry key the entry was read from (not stored in the value):
    /// only Aegis instances serve the per-instance subjects
    /// `rpc.{service}.{instance}.{method}`, so a client calls a Python SDK instance through
    /// the shared subject.
    #[serde(skip)]
    pub origin: EntryOrigin,
}

/// Who wrote a registry entry, as its key's form tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryOrigin {
    /// An Aegis instance: `service-instances.{service}.{instance}`.
    #[default]
    Aegis,
    /// A Python AegisSDK instance: `service-instances__{service}__{instance}` or
    /// `service-instances_{service}_{instance}`.
    PythonSdk,
}

impl ServiceInstance {
    /// A fresh entry for an instance that is starting: ACTIVE, heartbeat now, no group.
    ///
    /// # Errors
    /// [`InvalidVersion`], naming the rule, when `version` is not `MAJOR.MINOR.PATCH`.
    pub fn new(
        service_name: ServiceName,
        instance_id: InstanceId,
        version: impl Into<String>,
    ) -> Result<Self, InvalidVersion> {
        let version = version.into();
        InvalidVersion::check(&version)?;
        Ok(Self {
            service_name,
            instance_id,
            version,
            status: InstanceStatus::Active,
            last_heartbeat: Timestamp::now(),
            sticky_active_group: None,
            sticky_active_status: None,
            metadata: Map::new(),
            origin: EntryOrigin::Aegis,
        })
    }

    /// Decodes an entry from its registry value.
    ///
    /// # Errors
    /// [`DecodeError`](crate::codec::DecodeError) saying which field is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        crate::codec::decode(bytes)
    }

    /// The registry value: camelCase JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Every field serializes infallibly to JSON (strings, enums, a string-keyed map).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The entry as the Python SDK writes it: exactly its 7 keys (`serviceName`,
    /// `instanceId`, `version`, `status`, `lastHeartbeat` with `+00:00`,
    /// `stickyActiveGroup`, `metadata`), since the SDK refuses an entry with any other
    /// (`extra="forbid"`). `metadata` keeps only `start_time` when there is one.
    ///
    /// ```
    /// use aegis_runtime::instance::ServiceInstance;
    /// use aegis_runtime::subject::{InstanceId, ServiceName};
    ///
    /// let entry = ServiceInstance::new(ServiceName::new("order-svc")?, InstanceId::new("a-1")?, "1.0.0")?;
    /// let sdk: serde_json::Value = serde_json::from_slice(&entry.to_sdk_json())?;
    /// assert_eq!(sdk.as_object().map(|o| o.len()), Some(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_sdk_json(&self) -> Vec<u8> {
        let metadata: Map<String, Value> = self
            .metadata
            .get("start_time")
            .map(|start| (String::from("start_time"), start.clone()))
            .into_iter()
            .collect();
        let heartbeat = self
            .last_heartbeat
            .as_datetime()
            .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            .to_string();
        serde_json::to_vec(&serde_json::json!({
            "serviceName": self.service_name.as_str(),
            "instanceId": self.instance_id.as_str(),
            "version": self.version,
            // The SDK has no SHUTDOWN entries either; a Rust STANDBY is the SDK's.
            "status": self.status,
            "lastHeartbeat": heartbeat,
            "stickyActiveGroup": self.sticky_active_group.as_ref().map(GroupId::as_str),
            "metadata": metadata,
        }))
        .unwrap_or_default()
    }

    /// How long the registry keeps this entry without a heartbeat, as the instance wrote
    /// it in `metadata.ttl_seconds` (Aegis instances do; Python SDK ones do not).
    pub fn heartbeat_ttl(&self) -> Option<Duration> {
        self.metadata
            .get(TTL_METADATA_KEY)
            .and_then(Value::as_f64)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
    }

    /// Records the entry's TTL in `metadata.ttl_seconds`, so readers know when its
    /// heartbeat is too old.
    pub fn set_heartbeat_ttl(&mut self, ttl: Duration) {
        self.metadata
            .insert(TTL_METADATA_KEY.into(), Value::from(ttl.as_secs()));
    }

    /// Whether `other` says the same as this entry but for the time of the heartbeat: a
    /// renewal, nothing a selector or a watcher needs to hear about.
    pub(crate) fn same_apart_from_heartbeat(&self, other: &Self) -> bool {
        self.service_name == other.service_name
            && self.instance_id == other.instance_id
            && self.version == other.version
            && self.status == other.status
            && self.sticky_active_group == other.sticky_active_group
            && self.sticky_active_status == other.sticky_active_status
            && self.metadata == other.metadata
            && self.origin == other.origin
    }

    /// Whether the last heartbeat is older than `ttl` at `now`: such an entry belongs to an
    /// instance that is gone, even if the registry still holds it.
    pub fn is_stale(&self, ttl: Duration, now: Timestamp) -> bool {
        let age = now.as_datetime() - self.last_heartbeat.as_datetime();
        age.to_std().is_ok_and(|age| age > ttl)
    }
}

/// The metadata key under which an entry records its TTL in whole seconds.
pub const TTL_METADATA_KEY: &str = "ttl_seconds";

impl WireMessage for ServiceInstance {
    const NAME: &'static str = "registry entry";
}

pub use crate::subject::rules::check_version;

/// A service version that is not `MAJOR.MINOR.PATCH` (with optional pre-release and
/// build), as [`check_version`] says.
///
/// ```
/// use aegis_runtime::instance::ServiceInstance;
/// use aegis_runtime::subject::{InstanceId, ServiceName};
///
/// let err = ServiceInstance::new(ServiceName::new("orders")?, InstanceId::new("orders-1")?, "1.0")
///     .unwrap_err();
/// assert!(err.to_string().contains("\"1.0\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidVersion {
    /// The rule's words.
    message: String,
}

impl InvalidVersion {
    /// [`check_version`], with its refusal typed.
    pub(crate) fn check(version: &str) -> Result<(), Self> {
        check_version(version).map_err(|message| Self { message })
    }
}

fn deserialize_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let version = String::deserialize(deserializer)?;
    check_version(&version).map_err(serde::de::Error::custom)?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({
            "serviceName": "order-svc",
            "instanceId": "order-svc-a",
            "version": "1.0.0",
            "status": "ACTIVE",
            "lastHeartbeat": "2026-11-22T19:18:47.773875+00:00",
            "stickyActiveGroup": "default",
            "stickyActiveStatus": "STANDBY",
            "metadata": {"start_time": "2026-11-22T19:18:47.773833+00:00"}
        })
    }

    fn decode(value: &Value) -> Result<ServiceInstance, String> {
        ServiceInstance::from_json(&serde_json::to_vec(value).expect("json"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn round_trips_as_camel_case_json() {
        let instance = decode(&entry()).expect("valid");
        assert_eq!(
            instance.sticky_active_status,
            Some(StickyActiveStatus::Standby)
        );
        let back: Value = serde_json::from_slice(&instance.to_json()).expect("json");
        assert_eq!(back, entry());
    }

    #[test]
    fn every_field_is_validated() {
        let cases = [
            ("serviceName", json!("order.svc"), "invalid service name"),
            ("instanceId", json!("-a"), "invalid instance id"),
            ("version", json!("1.0"), "invalid version \"1.0\""),
            ("version", json!("one.two.three"), "invalid version"),
            ("status", json!("RUNNING"), "unknown variant `RUNNING`"),
            ("lastHeartbeat", json!("noon"), "invalid timestamp \"noon\""),
            ("stickyActiveGroup", json!("a.b"), "invalid group id"),
            (
                "stickyActiveStatus",
                json!("LEADER"),
                "unknown variant `LEADER`",
            ),
            ("metadata", json!([1]), "invalid type: sequence"),
        ];
        for (field, value, expected) in cases {
            let mut bad = entry();
            bad[field] = value;
            let err = decode(&bad).expect_err(field);
            assert!(err.contains(expected), "{field}: {err}");
        }
        let mut missing = entry();
        missing
            .as_object_mut()
            .expect("map")
            .remove("lastHeartbeat");
        assert!(
            decode(&missing)
                .expect_err("missing")
                .contains("missing field `lastHeartbeat`")
        );
    }

    #[test]
    fn versions_follow_semver() {
        for ok in [
            "1.0.0",
            "0.12.3",
            "2.0.0-rc.1",
            "1.2.3+build.5",
            "1.2.3-alpha+001",
        ] {
            assert_eq!(check_version(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "1..3", "1.2.3 ",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn optional_and_unknown_keys_are_tolerated() {
        let mut older = entry();
        let map = older.as_object_mut().expect("map");
        map.remove("stickyActiveStatus");
        map.remove("metadata");
        map.insert("zone".into(), json!("eu-1"));
        let instance = decode(&older).expect("valid");
        assert_eq!(instance.sticky_active_status, None);
        assert!(instance.metadata.is_empty());
    }

    #[test]
    fn staleness_is_measured_from_the_last_heartbeat() {
        let instance = decode(&entry()).expect("valid");
        let at = |s: &str| s.parse::<Timestamp>().expect("timestamp");
        let ttl = Duration::from_secs(30);
        assert!(!instance.is_stale(ttl, at("2026-11-22T19:19:17+00:00")));
        assert!(instance.is_stale(ttl, at("2026-11-22T19:19:18+00:00")));
        assert!(
            !instance.is_stale(ttl, at("2026-11-22T19:18:00+00:00")),
            "clock skew"
        );
    }
}
