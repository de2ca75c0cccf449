//! Finding the instances of a service in the registry (bucket `service_registry`).
//!
//! Three implementations of [`Discovery`], from simplest to fastest:
//!
//! | | reads the registry | sees changes | registry down |
//! |---|---|---|---|
//! | [`BasicDiscovery`] | on every call | at once | calls fail over to the shared subject |
//! | [`CachedDiscovery`] | once per TTL (10 s) per service | after the TTL, or at once after a failed call | serves the stale list |
//! | [`WatchDiscovery`] | once, then a live KV watch | within milliseconds, expiries included | TTL caching until the watch is back |
//!
//! Every one lists only usable instances: neither UNHEALTHY nor with a heartbeat older
//! than the entry's TTL. A service nobody registered is an empty list; a service whose
//! entries are all unusable is [`DiscoveryError::Unavailable`]; a registry that cannot be
//! read (no bucket, no JetStream, server unreachable) is [`DiscoveryError::Registry`], and
//! clients then call the service's shared subject, where NATS picks an instance.
//!
//! ```no_run
//! use aegis_runtime::discovery::{Discovery, WatchDiscovery};
//! use aegis_runtime::subject::ServiceName;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let discovery = WatchDiscovery::new(nats);
//! let service = ServiceName::new("order-processor")?;
//! for instance in discovery.instances(&service).await?.iter() {
//!     println!("{} {:?}", instance.instance_id, instance.sticky_active_status);
//! }
//! # Ok(())
//! # }
//! ```

mod basic;
mod cached;
mod membership;
mod reader;
mod watch;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Timestamp;
use crate::instance::{InstanceStatus, ServiceInstance};
use crate::service::BoxFuture;
use crate::subject::ServiceName;

pub use basic::BasicDiscovery;
pub use cached::{CacheStats, CachedDiscovery, DEFAULT_CACHE_TTL, DEFAULT_MAX_SERVICES};
pub use watch::WatchDiscovery;

/// The usable instances of a service, shared without copying.
pub type Instances = Arc<[ServiceInstance]>;

/// Finds the usable instances of a service.
///
/// Implementations are shared by every client of a connection (`Arc<dyn Discovery>`).
pub trait Discovery: Send + Sync + std::fmt::Debug + 'static {
    /// The instances of `service` that may take calls: healthy, with a fresh heartbeat.
    ///
    /// # Errors
    /// [`DiscoveryError::Unavailable`] when every registered instance is unusable;
    /// [`DiscoveryError::Registry`] when the registry cannot be read.
    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Instances, DiscoveryError>>;

    /// The instances of `service` if they are known without waiting for I/O (a live
    /// watch, say); `None` when [`Discovery::instances`] has to be awaited. Clients ask this
    /// first, so that the common lookup costs no future. The default knows nothing.
    ///
    /// ```
    /// use aegis_runtime::discovery::{Discovery, DiscoveryError, Instances};
    /// use aegis_runtime::service::BoxFuture;
    /// use aegis_runtime::subject::ServiceName;
    ///
    /// /// Always the same instances, known at once.
    /// #[derive(Debug)]
    /// struct Fixed(Instances);
    ///
    /// impl Discovery for Fixed {
    ///     fn instances<'a>(
    ///         &'a self,
    ///         service: &'a ServiceName,
    ///     ) -> BoxFuture<'a, Result<Instances, DiscoveryError>> {
    ///         let known = self.instances_now(service);
    ///         Box::pin(async move { known.unwrap_or_else(|| Ok(Instances::from([]))) })
    ///     }
    ///
    ///     fn instances_now(&self, _: &ServiceName) -> Option<Result<Instances, DiscoveryError>> {
    ///         Some(Ok(self.0.clone()))
    ///     }
    /// }
    ///
    /// let fixed = Fixed(Instances::from([]));
    /// let service = ServiceName::new("order-processor").unwrap();
    /// assert_eq!(fixed.instances_now(&service).unwrap().unwrap().len(), 0);
    /// ```
    fn instances_now(&self, service: &ServiceName) -> Option<Result<Instances, DiscoveryError>> {
        let _ = service;
        None
    }

    /// Forgets what is known about `service`, because a call to one of its instances
    /// found it gone. The next lookup reads the registry again.
    fn invalidate(&self, service: &ServiceName) {
        let _ = service;
    }
}

/// Why the instances of a service are not known.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Instances are registered, but none is usable.
    #[error(
        "{service} has {registered} registered instance(s), but none is usable (UNHEALTHY or heartbeat older than its TTL)"
    )]
    Unavailable {
        /// The service.
        service: String,
        /// How many instances are registered.
        registered: usize,
    },
    /// The registry could not be read (no bucket yet: no instance ever registered;
    /// JetStream missing; the server unreachable); the [`RegistryError`] holds the cause.
    #[error("cannot read the service registry: {0}")]
    Registry(#[source] RegistryError),
    /// The first lookup of the service did not answer in time (a client's call waits for it
    /// until its deadline). Often a user that may not read the registry: the server drops
    /// its requests instead of refusing them.
    #[error(
        "the discovery of {service} did not answer within {waited:?} (can this user read the registry? see docs/security.md, \"Permissions\")"
    )]
    TimedOut {
        /// The service.
        service: String,
        /// How long the lookup was waited for.
        waited: std::time::Duration,
    },
}

/// Why the registry could not be read: its [`source`](std::error::Error::source) is the
/// cause, a [`JetStreamError`](crate::JetStreamError) when JetStream failed. Cheap to clone,
/// as discovery shares its results.
///
/// ```
/// use aegis_runtime::JetStreamError;
/// use aegis_runtime::discovery::DiscoveryError;
///
/// fn jetstream_missing(err: &DiscoveryError) -> bool {
///     match err {
///         DiscoveryError::Registry(registry) => matches!(
///             registry.inner().downcast_ref::<JetStreamError>(),
///             Some(JetStreamError::NotEnabled { .. })
///         ),
///         _ => false,
///     }
/// }
/// # let _ = jetstream_missing;
/// ```
#[derive(Debug, Clone)]
pub struct RegistryError {
    inner: Arc<dyn std::error::Error + Send + Sync + 'static>,
}

impl RegistryError {
    /// Wraps `error`, for a [`Discovery`] of your own.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            inner: Arc::from(error.into()),
        }
    }

    /// The cause, to downcast.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.inner.as_ref()
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

/// The TTL assumed for entries that do not say theirs (the Python SDK's): 30 s.
pub const DEFAULT_ENTRY_TTL: Duration = crate::registry::DEFAULT_REGISTRY_TTL;

/// Keeps the usable entries of `service`, or says why there are none.
pub(crate) fn usable(
    service: &ServiceName,
    entries: impl IntoIterator<Item = ServiceInstance>,
) -> Result<Instances, DiscoveryError> {
    let now = Timestamp::now();
    usable_unless_stale(
        service,
        entries.into_iter().map(|entry| {
            let stale = is_stale(&entry, now);
            (Cow::Owned(entry), stale)
        }),
    )
}

/// Keeps the entries of `service` that are neither unhealthy nor marked stale, sorted by
/// instance id, or says why there are none. A one-off read judges staleness by the clock;
/// a watch by what its last sweep found.
/// Entries come owned (a one-off read: moved into the list) or borrowed (a watch's map:
/// only the usable ones are cloned).
pub(crate) fn usable_unless_stale<'a>(
    service: &ServiceName,
    entries: impl IntoIterator<Item = (Cow<'a, ServiceInstance>, bool)>,
) -> Result<Instances, DiscoveryError> {
    let mut registered = 0;
    let mut instances: Vec<ServiceInstance> = entries
        .into_iter()
        .inspect(|_| registered += 1)
        .filter(|(entry, stale)| entry.status != InstanceStatus::Unhealthy && !stale)
        .map(|(entry, _)| entry.into_owned())
        .collect();
    if instances.is_empty() && registered > 0 {
        return Err(DiscoveryError::Unavailable {
            service: service.to_string(),
            registered,
        });
    }
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(instances.into())
}

/// Whether the last heartbeat of `entry` is older than its TTL (or, when it does not say
/// one, [`DEFAULT_ENTRY_TTL`]); the watch's `Membership` judges the same way.
fn is_stale(entry: &ServiceInstance, now: Timestamp) -> bool {
    entry.is_stale(entry.heartbeat_ttl().unwrap_or(DEFAULT_ENTRY_TTL), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::InstanceId;

    fn entry(id: &str, status: InstanceStatus, age: Duration) -> ServiceInstance {
        let mut entry = ServiceInstance::new(
            ServiceName::new("svc").expect("name"),
            InstanceId::new(id).expect("id"),
            "1.0.0",
        )
        .expect("entry");
        entry.status = status;
        entry.last_heartbeat = Timestamp::from_datetime(
            chrono::Utc::now() - chrono::Duration::from_std(age).expect("age"),
        );
        entry.set_heartbeat_ttl(Duration::from_secs(5));
        entry
    }

    #[test]
    fn unhealthy_and_stale_entries_are_left_out_and_the_rest_sorted() {
        let service = ServiceName::new("svc").expect("name");
        let entries = vec![
            entry("c", InstanceStatus::Active, Duration::from_secs(1)),
            entry("a", InstanceStatus::Active, Duration::ZERO),
            entry("b", InstanceStatus::Unhealthy, Duration::ZERO),
            entry("d", InstanceStatus::Active, Duration::from_secs(6)),
        ];
        let ids: Vec<String> = usable(&service, entries)
            .expect("usable")
            .iter()
            .map(|e| e.instance_id.to_string())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn nothing_registered_is_an_empty_list_and_nothing_usable_is_unavailable() {
        let service = ServiceName::new("svc").expect("name");
        assert!(usable(&service, vec![]).expect("empty").is_empty());
        let err = usable(
            &service,
            vec![entry("a", InstanceStatus::Unhealthy, Duration::ZERO)],
        )
        .expect_err("unavailable");
        assert!(
            matches!(
                &err,
                DiscoveryError::Unavailable { service, registered: 1 } if service == "svc"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("none is usable"), "{err}");
    }
}
