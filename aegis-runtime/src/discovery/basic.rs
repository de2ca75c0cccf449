//! Discovery that reads the registry on every lookup.

use crate::service::BoxFuture;
use crate::subject::ServiceName;

use super::reader::{BatchHint, RegistryFeed};
use super::{Discovery, DiscoveryError, Instances, usable};

/// Reads the registry on every lookup: always current, one JetStream round trip per call
/// (about a millisecond on a local server). Wrap it in a [`CachedDiscovery`](super::CachedDiscovery)
/// or use a [`WatchDiscovery`](super::WatchDiscovery) for calls on a hot path.
///
/// ```no_run
/// use aegis_runtime::discovery::{BasicDiscovery, Discovery};
/// use aegis_runtime::subject::ServiceName;
///
/// # async fn run(nats: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let discovery = BasicDiscovery::new(nats);
/// let instances = discovery.instances(&ServiceName::new("echo")?).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BasicDiscovery {
    nats: async_nats::Client,
    /// Which services need a feed rather than a batched read (shared by clones).
    sizes: std::sync::Arc<BatchHint>,
}

impl BasicDiscovery {
    /// Discovery over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            nats,
            sizes: std::sync::Arc::default(),
        }
    }
}

impl Discovery for BasicDiscovery {
    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Instances, DiscoveryError>> {
        Box::pin(async move {
            let entries = RegistryFeed::snapshot(&self.nats, service, &self.sizes)
                .await
                .map_err(|err| DiscoveryError::Registry(err.into_registry_error()))?;
            usable(service, entries)
        })
    }
}
