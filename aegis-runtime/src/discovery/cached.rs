//! Discovery that caches what another discovery found.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::service::BoxFuture;
use crate::subject::ServiceName;

use super::{BasicDiscovery, Discovery, DiscoveryError, Instances};

/// How long a cached list is used before the registry is read again: 10 s.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);
/// How many services a cache holds before it evicts the least recently used: 1024.
pub const DEFAULT_MAX_SERVICES: usize = 1024;

/// Caches the instances another discovery (by default [`BasicDiscovery`]) found, per
/// service, for a TTL.
///
/// - At most `max_services` services are kept; the least recently used goes first.
/// - When the registry cannot be read, the last list is served even if expired (a registry
///   outage does not stop calls to instances that are still there).
/// - [`invalidate`](Discovery::invalidate) (done by clients when a call finds an
///   instance gone) makes the next lookup read again; the old list stays as a fallback.
///
/// ```no_run
/// use std::time::Duration;
/// use aegis_runtime::discovery::CachedDiscovery;
///
/// # fn run(nats: async_nats::Client) {
/// let discovery = CachedDiscovery::new(nats).with_ttl(Duration::from_secs(2));
/// // … use it in clients; later:
/// let stats = discovery.stats();
/// println!("hit ratio {:.2}", stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CachedDiscovery {
    inner: Arc<dyn Discovery>,
    ttl: Duration,
    cache: Arc<Mutex<LruCache<ServiceName, Cached>>>,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct Cached {
    instances: Instances,
    fetched: Instant,
    valid: bool,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

/// What a [`CachedDiscovery`] did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read the registry.
    pub misses: u64,
    /// Lookups answered with an expired list because the registry could not be read.
    pub stale_served: u64,
}

impl CachedDiscovery {
    /// A cache over [`BasicDiscovery`] on `nats`, with the default TTL and size.
    pub fn new(nats: async_nats::Client) -> Self {
        Self::over(BasicDiscovery::new(nats))
    }

    /// A cache over `inner`.
    pub fn over(inner: impl Discovery) -> Self {
        Self {
            inner: Arc::new(inner),
            ttl: DEFAULT_CACHE_TTL,
            cache: Arc::new(Mutex::new(LruCache::new(max_services(
                DEFAULT_MAX_SERVICES,
            )))),
            counters: Arc::default(),
        }
    }

    /// Sets how long a list is used before the registry is read again.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how many services are kept (at least 1).
    #[must_use]
    pub fn with_max_services(self, max: usize) -> Self {
        if let Ok(mut cache) = self.cache.lock() {
            cache.resize(max_services(max));
        }
        self
    }

    /// Hits, misses and stale answers so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            stale_served: self.counters.stale.load(Ordering::Relaxed),
        }
    }

    /// The cached list of `service` if it is still fresh.
    fn fresh(&self, service: &ServiceName) -> Option<Instances> {
        let mut cache = self.cache.lock().ok()?;
        let cached = cache.get(service)?;
        (cached.valid && cached.fetched.elapsed() < self.ttl).then(|| cached.instances.clone())
    }

    /// The cached list of `service`, however old.
    fn stale(&self, service: &ServiceName) -> Option<Instances> {
        let mut cache = self.cache.lock().ok()?;
        cache.get(service).map(|cached| cached.instances.clone())
    }

    fn store(&self, service: &ServiceName, instances: &Instances) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(
                service.clone(),
                Cached {
                    instances: instances.clone(),
                    fetched: Instant::now(),
                    valid: true,
                },
            );
        }
    }
}

fn max_services(max: usize) -> NonZeroUsize {
    NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN)
}

impl Discovery for CachedDiscovery {
    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Instances, DiscoveryError>> {
        Box::pin(async move {
            if let Some(instances) = self.fresh(service) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                crate::metrics::discovery_lookup(service, true);
                return Ok(instances);
            }
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            crate::metrics::discovery_lookup(service, false);
            let began = Instant::now();
            let read = self.inner.instances(service).await;
            crate::metrics::discovery_read(service, began.elapsed());
            match read {
                Ok(instances) => {
                    self.store(service, &instances);
                    Ok(instances)
                }
                Err(DiscoveryError::Registry(err)) => match self.stale(service) {
                    Some(instances) => {
                        self.counters.stale.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%service, %err, "registry unreachable: using the last known instances");
                        Ok(instances)
                    }
                    None => Err(DiscoveryError::Registry(err)),
                },
                Err(unavailable) => {
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.pop(service);
                    }
                    Err(unavailable)
                }
            }
        })
    }

    fn invalidate(&self, service: &ServiceName) {
        if let Ok(mut cache) = self.cache.lock()
            && let Some(cached) = cache.get_mut(service)
        {
            cached.valid = false;
        }
        self.inner.invalidate(service);
    }
}
