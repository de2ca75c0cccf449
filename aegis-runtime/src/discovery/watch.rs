//! Discovery kept current by a watch on the registry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backoff::{Backoff, Exponential, jittered};
use crate::codec::Timestamp;
use crate::service::BoxFuture;
use crate::subject::ServiceName;

use super::membership::Membership;
use super::reader::{Change, FeedError, RegistryFeed};

/// Why a watch of the registry was given up (and is opened again).
#[derive(Debug, thiserror::Error)]
enum WatchLost {
    /// The feed failed or ended.
    #[error(transparent)]
    Feed(FeedError),
    /// The bucket's advisory said it was deleted.
    #[error("the registry bucket was deleted")]
    BucketDeleted,
    /// The connection is a new one: the feed's consumer may be gone with the old one.
    #[error("the connection to NATS was re-established")]
    Reconnected,
}
use super::{CachedDiscovery, Discovery, DiscoveryError, Instances};

/// How long the first lookup of a service waits for its watch to catch up.
const FIRST_LOOKUP_WAIT: Duration = Duration::from_secs(2);
/// How long lookups cache what they read while the watch is down: short, since the
/// watch is usually back soon and then sees every change at once.
const FALLBACK_TTL: Duration = Duration::from_secs(1);
/// Backoff between attempts to reopen a failed watch.
const REOPEN: Exponential =
    Exponential::doubling(Duration::from_millis(100), Duration::from_secs(5));

/// Keeps the instances of each service it was asked about current with a KV watch on the
/// registry: a new instance shows within milliseconds, one that stops or expires (its
/// registry TTL after a crash) vanishes as soon as the server says so, and a lookup is a
/// read from memory.
///
/// The watch of a service starts on its first lookup. While it is down (server restart,
/// bucket deleted) it is reopened with backoff, and lookups fall back to a
/// [`CachedDiscovery`] (TTL caching of 1 s, stale lists served while the registry cannot
/// be read). A deleted registry bucket (told by the server's stream advisory) and a
/// re-established connection end the watch at once, so it never vouches for entries it
/// can no longer follow; a re-created bucket reopens it at once.
///
/// ```no_run
/// use aegis_runtime::ServiceClient;
/// use aegis_runtime::discovery::WatchDiscovery;
///
/// # async fn run(nats: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
/// // One discovery per connection, shared by every client.
/// let discovery = WatchDiscovery::new(nats.clone());
/// let orders = ServiceClient::new(nats.clone(), "order-processor")?.with_discovery(discovery.clone());
/// let billing = ServiceClient::new(nats, "billing")?.with_discovery(discovery);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WatchDiscovery {
    nats: async_nats::Client,
    /// By service. Looked up on every call: a few name comparisons cost less than hashing.
    watches: Arc<Mutex<BTreeMap<ServiceName, Arc<ServiceWatch>>>>,
    fallback: CachedDiscovery,
}

/// The live view of one service and the task that keeps it.
#[derive(Debug)]
struct ServiceWatch {
    view: watch::Receiver<View>,
    task: tokio::task::JoinHandle<()>,
    /// Lookups answered from the live view ([`DISCOVERY_HITS`](crate::metrics::DISCOVERY_HITS)),
    /// registered once: lookups are on every call's path.
    hits: metrics::Counter,
}

impl Drop for ServiceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watch of a service knows.
#[derive(Debug, Clone, Default)]
struct View {
    /// Whether the watch is caught up with the registry and running.
    live: bool,
    /// Whether the first attempt to open the watch is over (caught up, or failed): until
    /// then the first lookups wait rather than fall back.
    settled: bool,
    /// The usable instances (or why there are none), computed by the watch when they
    /// change: a lookup clones a reference.
    usable: Option<Result<Instances, DiscoveryError>>,
}

impl WatchDiscovery {
    /// Discovery over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            fallback: CachedDiscovery::new(nats.clone()).with_ttl(FALLBACK_TTL),
            nats,
            watches: Arc::default(),
        }
    }

    /// The watch of `service`, started if it is not running yet.
    fn watch_of(&self, service: &ServiceName) -> Option<Arc<ServiceWatch>> {
        let mut watches = self.watches.lock().ok()?;
        if let Some(watch) = watches.get(service) {
            return Some(watch.clone());
        }
        let (sender, view) = watch::channel(View::default());
        let task = tokio::spawn(keep_watching(self.nats.clone(), service.clone(), sender));
        let watch = Arc::new(ServiceWatch {
            view,
            task,
            hits: metrics::counter!(crate::metrics::DISCOVERY_HITS, "service" => service.to_string()),
        });
        watches.insert(service.clone(), watch.clone());
        Some(watch)
    }

    /// Whether the watch of `service` is open and caught up, so lookups are current (else
    /// they fall back to TTL caching). Starts the watch if it is not running.
    pub fn is_watching(&self, service: &ServiceName) -> bool {
        self.watch_of(service)
            .is_some_and(|watch| watch.view.borrow().live)
    }

    /// Waits until something changes in the instances of `service` (an instance came,
    /// changed or left), or `within` passes; returns whether something changed.
    pub async fn changed(&self, service: &ServiceName, within: Duration) -> bool {
        let Some(watch) = self.watch_of(service) else {
            return false;
        };
        let mut view = watch.view.clone();
        view.borrow_and_update();
        tokio::time::timeout(within, view.changed())
            .await
            .is_ok_and(|changed| changed.is_ok())
    }
}

impl ServiceWatch {
    /// The usable instances of `service` from the live view; `None` while the watch is not
    /// live (the fallback answers then).
    fn current(&self) -> Option<Result<Instances, DiscoveryError>> {
        let known = {
            let view = self.view.borrow();
            view.live.then(|| view.usable.clone()).flatten()?
        };
        self.hits.increment(1);
        Some(known)
    }
}

impl Discovery for WatchDiscovery {
    fn instances<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Instances, DiscoveryError>> {
        Box::pin(async move {
            let Some(watch) = self.watch_of(service) else {
                return self.fallback.instances(service).await;
            };
            if !watch.view.borrow().settled {
                let began = Instant::now();
                let mut view = watch.view.clone();
                let _ = tokio::time::timeout(FIRST_LOOKUP_WAIT, view.wait_for(|view| view.settled))
                    .await;
                crate::metrics::discovery_read(service, began.elapsed());
            }
            match watch.current() {
                Some(known) => known,
                None => self.fallback.instances(service).await,
            }
        })
    }

    fn instances_now(&self, service: &ServiceName) -> Option<Result<Instances, DiscoveryError>> {
        self.watch_of(service)?.current()
    }

    fn invalidate(&self, service: &ServiceName) {
        // The watch is current by construction; only the fallback may hold an old list.
        self.fallback.invalidate(service);
    }
}

/// How often a feed checks that its connection was not re-established meanwhile.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);

/// Follows the registry entries of `service` into `view` until the discovery is dropped,
/// reopening the watch with backoff whenever it fails.
///
/// A feed is dropped, and the view not live until a new one has caught up, when the
/// registry bucket is deleted (the server's advisory says so at once; the feed's own
/// consumer would only notice after missing heartbeats, about 10 s during which it would
/// vouch for entries that no longer exist) and when the connection was re-established
/// (changes made meanwhile may be missed, and the consumer may be gone with a restarted
/// server). A bucket created again, or a connection back, ends the wait before a reopen.
async fn keep_watching(nats: async_nats::Client, service: ServiceName, view: watch::Sender<View>) {
    let mut reopen = Backoff::new(REOPEN);
    // Without advisories (no permission, say) deletions are noticed as before: late.
    let mut advisories = match nats.subscribe(bucket_advisories()).await {
        Ok(advisories) => Some(advisories),
        Err(err) => {
            tracing::debug!(%err, "cannot follow the registry bucket's advisories");
            None
        }
    };
    let mut check = tokio::time::interval(RECONNECT_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let opened = Instant::now();
        let connected = connects(&nats);
        match RegistryFeed::open(&nats, &service).await {
            Ok(Some(mut feed)) => {
                let mut members = Membership::default();
                if feed.initial == 0 {
                    publish(&view, &service, &members);
                }
                let err = loop {
                    let change = tokio::select! {
                        change = feed.next() => match change {
                            Ok(change) => change,
                            Err(err) => break WatchLost::Feed(err),
                        },
                        Some(advisory) = next_advisory(&mut advisories) => {
                            if advisory == "DELETED" {
                                break WatchLost::BucketDeleted;
                            }
                            continue;
                        }
                        _ = check.tick() => {
                            if connects(&nats) != connected {
                                break WatchLost::Reconnected;
                            }
                            // Entries whose writers stopped beating without a trace.
                            if members.sweep(Timestamp::now()) && feed.initial == 0 {
                                publish(&view, &service, &members);
                            }
                            continue;
                        }
                    };
                    let news = match change {
                        Change::Put(entry) => members.put(*entry, Timestamp::now()),
                        Change::Removed(key) => members.remove(&key),
                    };
                    // While catching up, the first publish comes with the last entry; a
                    // heartbeat that changes nothing wakes nobody.
                    if feed.initial == 0 && (news || !view.borrow().live) {
                        publish(&view, &service, &members);
                    }
                };
                tracing::warn!(%service, %err, "registry watch lost; falling back to cached lookups until it is back");
            }
            Ok(None) => {
                tracing::debug!(%service, "no registry bucket yet; will watch once it exists");
            }
            Err(err) => tracing::warn!(%service, %err, "cannot watch the registry"),
        }
        view.send_modify(|view| {
            view.live = false;
            view.settled = true;
        });
        if opened.elapsed() > REOPEN.max {
            reopen.reset(); // it ran for a while: start over with short waits
        }
        let wait = tokio::time::sleep(jittered(reopen.next(), 0.5));
        tokio::pin!(wait);
        let connected = connects(&nats);
        loop {
            tokio::select! {
                () = &mut wait => break,
                Some(advisory) = next_advisory(&mut advisories) => {
                    if advisory == "CREATED" {
                        reopen.reset();
                        break;
                    }
                }
                _ = check.tick() => {
                    if connects(&nats) != connected {
                        reopen.reset();
                        break;
                    }
                }
            }
        }
    }
}

/// The subject of the server's advisories about the registry bucket's stream:
/// `$JS.EVENT.ADVISORY.STREAM.{CREATED,DELETED,UPDATED}.KV_service_registry`.
fn bucket_advisories() -> String {
    format!(
        "$JS.EVENT.ADVISORY.STREAM.*.KV_{}",
        crate::subject::REGISTRY_BUCKET
    )
}

/// What happened to the stream, as the advisory's subject says (`CREATED`, `DELETED`,
/// `UPDATED`); never resolves without a subscription.
async fn next_advisory(advisories: &mut Option<async_nats::Subscriber>) -> Option<String> {
    use futures_util::StreamExt;
    match advisories {
        Some(subscriber) => match subscriber.next().await {
            Some(message) => Some(message.subject.split('.').nth(4).unwrap_or("").to_owned()),
            None => {
                *advisories = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// How many times the connection was established so far.
fn connects(nats: &async_nats::Client) -> u64 {
    nats.statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes the usable list of `members` the live view: every waiting lookup and
/// [`WatchDiscovery::changed`] wakes.
fn publish(view: &watch::Sender<View>, service: &ServiceName, members: &Membership) {
    view.send_replace(View {
        live: true,
        settled: true,
        usable: Some(members.usable(service)),
    });
}
