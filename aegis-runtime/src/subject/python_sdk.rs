//! The KV buckets and keys of the Python AegisSDK, where they differ from Aegis's own
//! (docs/python-interop.md): its registry keys use underscores instead of dots, and its
//! leader keys live in one bucket per service.
//!
//! | what | Python SDK | Aegis |
//! | --- | --- | --- |
//! | registry entry | `service_registry` / `service-instances__{service}__{instance}` (1.0.1), `service-instances_{service}_{instance}` (f30dbd3) | `service_registry` / `service-instances.{service}.{instance}` |
//! | leader key | `election_{service, - → _}` / `sticky-active_{service}_{group}_leader` | `sticky_active` / `sticky-active.{service}.{group}.leader` |
//!
//! ```
//! use aegis_runtime::subject::{python_sdk, GroupId, InstanceId, ServiceName};
//!
//! let service = ServiceName::new("order-svc")?;
//! assert_eq!(python_sdk::election_bucket(&service), "election_order_svc");
//! assert_eq!(
//!     python_sdk::leader_key(&service, &GroupId::default()),
//!     "sticky-active_order-svc_default_leader"
//! );
//! let instance = InstanceId::new("order-svc-a")?;
//! assert_eq!(
//!     python_sdk::registry_key(&service, &instance),
//!     "service-instances__order-svc__order-svc-a"
//! );
//! # Ok::<(), aegis_runtime::subject::InvalidName>(())
//! ```

use super::{GroupId, InstanceId, ServiceName};

/// What every registry key of the SDK starts with (both of its forms).
pub const REGISTRY_KEY_PREFIX: &str = "service-instances_";

/// The SDK's leader-election bucket of `service`: `election_{service}` with every `-`
/// replaced by `_` (so `order-svc` and `order_svc` share one).
pub fn election_bucket(service: &ServiceName) -> String {
    format!("election_{}", service.replace('-', "_"))
}

/// The SDK's leader key of (`service`, `group`) in [`election_bucket`]:
/// `sticky-active_{service}_{group}_leader` (the form the SDK writes on a real server).
pub fn leader_key(service: &ServiceName, group: &GroupId) -> String {
    format!("sticky-active_{service}_{group}_leader")
}

/// The group a leader key of `service` in [`election_bucket`] is for; `None` for another
/// key (the SDK's per-instance `election-state_…` keys share the bucket).
///
/// ```
/// use aegis_runtime::subject::{python_sdk, ServiceName};
///
/// let service = ServiceName::new("order-svc")?;
/// assert_eq!(python_sdk::group_of_leader_key(&service, "sticky-active_order-svc_default_leader"), Some("default"));
/// assert_eq!(python_sdk::group_of_leader_key(&service, "election-state_order-svc_a_default"), None);
/// # Ok::<(), aegis_runtime::subject::InvalidName>(())
/// ```
pub fn group_of_leader_key<'k>(service: &ServiceName, key: &'k str) -> Option<&'k str> {
    let group = key
        .strip_prefix("sticky-active_")?
        .strip_prefix(service.as_str())?
        .strip_prefix('_')?
        .strip_suffix("_leader")?;
    (!group.is_empty()).then_some(group)
}

/// The registry key the SDK 1.0.1 writes for an instance:
/// `service-instances__{service}__{instance}`.
pub fn registry_key(service: &ServiceName, instance: &InstanceId) -> String {
    format!("service-instances__{service}__{instance}")
}

/// Both registry keys the SDK may have written for an instance: the 1.0.1 form and the
/// older single-underscore form (`service-instances_{service}_{instance}`).
pub fn registry_keys(service: &ServiceName, instance: &InstanceId) -> [String; 2] {
    [
        registry_key(service, instance),
        format!("service-instances_{service}_{instance}"),
    ]
}

/// The instance a registry key of the SDK names, if the key is one of `service`'s (either
/// form). The service is needed: names may hold `_`, so a key alone is ambiguous.
///
/// ```
/// use aegis_runtime::subject::{python_sdk, ServiceName};
///
/// let service = ServiceName::new("order-svc")?;
/// assert_eq!(python_sdk::instance_of(&service, "service-instances__order-svc__a-1"), Some("a-1"));
/// assert_eq!(python_sdk::instance_of(&service, "service-instances_order-svc_a-1"), Some("a-1"));
/// assert_eq!(python_sdk::instance_of(&service, "service-instances__billing__b-1"), None);
/// # Ok::<(), aegis_runtime::subject::InvalidName>(())
/// ```
pub fn instance_of<'k>(service: &ServiceName, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(REGISTRY_KEY_PREFIX)?;
    let rest = rest.strip_prefix('_').unwrap_or(rest);
    let instance = rest.strip_prefix(service.as_str())?.strip_prefix('_')?;
    let instance = instance.strip_prefix('_').unwrap_or(instance);
    (!instance.is_empty()).then_some(instance)
}
