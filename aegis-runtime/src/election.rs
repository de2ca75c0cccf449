//! Leader election per (service, group): one key in the KV bucket `sticky_active`, taken
//! with a create, kept with compare-and-set renewals under a per-message TTL, released with
//! a revision-checked delete. The revision at acquisition is the fencing term.
//!
//! Against another writer of the key (an operator's tool, a client with too many rights):
//! the leader watches its key and steps down at once when it is deleted, purged or names
//! someone else (module `guard`); a standby removes a key that has not been rewritten for
//! longer than `leader_ttl` + a margin by the server's clock (module `staleness`), so a forged
//! key cannot stall the group.

mod guard;
mod python_sdk;
mod staleness;

use python_sdk::SdkLook;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::JetStreamError;
use crate::codec::{self, Event, Timestamp};
use crate::leadership::Leadership;
use crate::python_sdk::PythonSdk;
use crate::registry::{self, Registration, TtlWriteError};
use crate::subject::{self, EventToken, GroupId, InstanceId, ServiceName};

/// Default lifetime of the leader key without a renewal.
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(2);
/// Shortest allowed leader TTL (NATS TTLs are whole seconds).
pub const MIN_LEADER_TTL: Duration = Duration::from_secs(1);

/// The value of the leader key, as the Python SDK writes it (times in epoch seconds).
///
/// Aegis adds the fencing term to `metadata` (`{"term": 7}`) from the first renewal on, so
/// every reader shows the number handlers see; the four fields stay as the Python SDK
/// reads them. [`LeaderRecord::term`] finds the term of any record.
///
/// ```
/// use aegis_runtime::election::LeaderRecord;
///
/// let created = LeaderRecord::new("orders-1", 100.0, 100.0, None);
/// // A fresh create: the term is the key's revision.
/// assert_eq!(created.term(7), Some(7));
/// let renewed = LeaderRecord::new("orders-1", 100.0, 100.7, Some(7));
/// assert_eq!(renewed.term(9), Some(7));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leader's instance id.
    pub instance_id: String,
    /// When it was elected.
    pub elected_at: f64,
    /// When it last renewed.
    pub last_heartbeat: f64,
    /// Free-form data.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl LeaderRecord {
    /// The key of `metadata` that holds the fencing term.
    pub const TERM: &'static str = "term";

    /// A record of `instance_id`, elected at `elected_at`, renewed at `last_heartbeat`
    /// (epoch seconds), with its `term` once known.
    pub fn new(
        instance_id: impl Into<String>,
        elected_at: f64,
        last_heartbeat: f64,
        term: Option<u64>,
    ) -> Self {
        let mut metadata = Map::new();
        if let Some(term) = term {
            metadata.insert(Self::TERM.to_owned(), term.into());
        }
        Self {
            instance_id: instance_id.into(),
            elected_at,
            last_heartbeat,
            metadata,
        }
    }

    /// The fencing term of the leader this record names, read at KV `revision`: the term
    /// it carries, else `revision` when the record is the one written at election (a
    /// create writes `elected_at` = `last_heartbeat`; the term is the create's revision).
    /// `None` for a renewed record without a term (written by another SDK).
    pub fn term(&self, revision: u64) -> Option<u64> {
        match self.metadata.get(Self::TERM).and_then(Value::as_u64) {
            Some(term) => Some(term),
            #[allow(clippy::float_cmp)] // both are the one `now` the creator wrote
            None if self.elected_at == self.last_heartbeat => Some(revision),
            None => None,
        }
    }
}

/// What the leader holds: its term and the key's current revision.
#[derive(Debug, Clone, Copy)]
struct Held {
    term: u64,
    revision: u64,
    elected_at: f64,
}

/// What a look at the leader key found.
#[derive(Debug)]
enum Look {
    /// The key was free and this instance took it: the term.
    Won(u64),
    /// Another holder has the key (or won the race): look again after this long, when
    /// the key would turn stale, unless the watch sees it go first.
    Held(Duration),
    /// The key was stale and this instance removed it: look again at once.
    Removed,
    /// The key, seen held before, is gone without a delete or expiry marker: the stream
    /// was purged (or the bucket deleted) under a leader that has not noticed yet.
    Vanished,
}

/// The longest a new leader waits for its shared exclusive subscriptions before it
/// announces itself anyway.
const SUBSCRIBE_BEFORE_ANNOUNCE: Duration = Duration::from_secs(1);

/// The shortest wait before looking at a held key again.
const MIN_RECHECK: Duration = Duration::from_millis(20);

/// One instance's part in the election of its group.
#[derive(Debug)]
pub(crate) struct Election {
    js: jetstream::Context,
    store: kv::Store,
    key: String,
    service: ServiceName,
    instance: InstanceId,
    group: GroupId,
    ttl: Duration,
    leadership: Leadership,
    registration: Arc<Registration>,
    held: Mutex<Option<Held>>,
    /// The Python SDK's key of the same group, held beside this one when the group may
    /// have SDK members ([`PythonSdk::share_leadership`]).
    sdk: Option<python_sdk::SdkLeaderKey>,
}

impl Election {
    pub(crate) async fn open(
        nats: async_nats::Client,
        service: ServiceName,
        instance: InstanceId,
        leadership: Leadership,
        registration: Arc<Registration>,
        ttl: Duration,
        python: &PythonSdk,
    ) -> Result<Self, JetStreamError> {
        let js = jetstream::new(nats.clone());
        let store = registry::ttl_bucket(&js, subject::STICKY_ACTIVE_BUCKET).await?;
        let group = leadership.group().clone();
        let ttl = registry::whole_seconds(ttl);
        let sdk = match python.shares_leadership() {
            true => Some(
                python_sdk::SdkLeaderKey::open(
                    js.clone(),
                    service.clone(),
                    &group,
                    instance.clone(),
                    ttl,
                    python.sdk_registry_ttl(),
                )
                .await?,
            ),
            false => None,
        };
        Ok(Self {
            key: subject::leader_key(&service, &group),
            js,
            store,
            service,
            instance,
            group,
            ttl,
            leadership,
            registration,
            held: Mutex::new(None),
            sdk,
        })
    }

    /// How long before the key could expire the leader stops serving by itself.
    fn lease_margin(&self) -> Duration {
        self.ttl / 4
    }

    /// Campaigns and leads, forever: standby until the key is free, leader until the key
    /// is lost.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let term = self.campaign().await;
            self.lead(term).await;
        }
    }

    /// Waits for the key to be free (or stale) and takes it; returns the term.
    async fn campaign(&self) -> u64 {
        // Whether a holder was seen since the last wait: a key that then disappears without
        // a marker may still have a leader serving under it.
        let mut seen_held = false;
        loop {
            // Watch before looking, so a release between the look and the watch is seen.
            let watch = self.watch_keys().await;
            let recheck = match self.try_acquire(seen_held).await {
                Ok(Look::Won(term)) => return term,
                Ok(Look::Held(recheck)) => {
                    seen_held = true;
                    recheck
                }
                Ok(Look::Removed) => continue,
                Ok(Look::Vanished) => {
                    // A purge of the stream writes no marker and reaches no watcher: the
                    // old leader notices only at its next renewal, and stops serving at the
                    // latest when its lease ends. Wait that out before taking the key.
                    let lease = self.ttl - self.lease_margin();
                    tracing::warn!(key = %self.key, ?lease, "the leader key vanished without a delete or expiry marker (the election stream was purged?); waiting out the old leader's lease");
                    seen_held = false;
                    lease
                }
                Err(err) => {
                    tracing::warn!(key = %self.key, %err, "cannot campaign for leadership");
                    // The key cannot be read: the bucket may have been deleted. Re-create it
                    // (a no-op when it exists), or no instance could ever lead again.
                    if let Err(err) =
                        registry::ttl_bucket(&self.js, subject::STICKY_ACTIVE_BUCKET).await
                    {
                        tracing::debug!(%err, "cannot re-create the election bucket");
                    }
                    self.ttl
                }
            };
            let recheck = tokio::time::sleep(recheck);
            tokio::pin!(recheck);
            match watch {
                Ok(mut watch) => loop {
                    tokio::select! {
                        change = watch.next() => match change {
                            Some(Ok(entry)) if entry.operation == kv::Operation::Put => continue,
                            // Deleted or expired: try at once. A broken watch: look again.
                            _ => break,
                        },
                        // The key may have turned stale (or the watch missed something).
                        () = &mut recheck => break,
                    }
                },
                Err(err) => {
                    tracing::warn!(key = %self.key, %err, "cannot watch the leader key");
                    recheck.await;
                }
            }
        }
    }

    /// Takes the key if it is free: a create at the revision of whatever marker it holds.
    /// A key that holds a value (even one naming this very instance, left by a previous
    /// run of it) is not taken over: it expires first, or is removed once stale.
    ///
    /// A key with no entry at all after `seen_held` counts as [`Look::Vanished`].
    async fn try_acquire(&self, seen_held: bool) -> Result<Look, JetStreamError> {
        // The SDK's key first: while an SDK instance leads, taking ours would only block
        // the other Rust members.
        let sdk_expected = match &self.sdk {
            None => None,
            Some(sdk) => match sdk.look().await? {
                SdkLook::Free(expected) => Some(expected),
                SdkLook::Held { holder, recheck } => {
                    tracing::debug!(key = sdk.key(), %holder, ?recheck, "the Python SDK leader key is held");
                    return Ok(Look::Held(recheck));
                }
                SdkLook::Removed => return Ok(Look::Removed),
            },
        };
        let expected = match self.store.entry(&self.key).await.map_err(|e| {
            JetStreamError::from_nats(format!("read the leader key {}", self.key), e)
        })? {
            None if seen_held => return Ok(Look::Vanished),
            None => 0,
            Some(entry) if entry.operation != kv::Operation::Put => entry.revision,
            Some(entry) => return Ok(self.judge_held(&entry).await),
        };
        self.leadership.set_electing(true);
        let now = Timestamp::now().as_epoch_seconds();
        let sent = Instant::now();
        let written = match (self.write(now, now, expected, None).await, &self.sdk) {
            (Ok(term), Some(sdk)) => {
                self.take_sdk_key(sdk, sdk_expected.unwrap_or(0), term, now)
                    .await
            }
            (written, _) => written,
        };
        self.leadership.set_electing(false);
        match written {
            Ok(term) => {
                self.hold(Held {
                    term,
                    revision: term,
                    elected_at: now,
                });
                self.leadership
                    .become_active_until(term, sent + self.ttl - self.lease_margin());
                Ok(Look::Won(term))
            }
            Err(TtlWriteError::Conflict) => Ok(Look::Held(MIN_RECHECK)),
            Err(TtlWriteError::Failed(err)) => Err(err),
            Err(err @ TtlWriteError::NoBucket) => Err(JetStreamError::Other {
                action: format!("take the leader key {}", self.key),
                source: Box::new(err),
            }),
        }
    }

    /// Takes the Python SDK's key (at `expected`) after winning this one at `term`; when
    /// that fails (an SDK instance was faster), gives this one back, so that the group is
    /// not left with a Rust member that holds its key without leading.
    async fn take_sdk_key(
        &self,
        sdk: &python_sdk::SdkLeaderKey,
        expected: u64,
        term: u64,
        now: f64,
    ) -> Result<u64, TtlWriteError> {
        let record = LeaderRecord::new(self.instance.as_str(), now, now, Some(term));
        match sdk.take(expected, &record).await {
            Ok(_) => Ok(term),
            Err(err) => {
                tracing::info!(key = sdk.key(), %err, "the Python SDK leader key was not taken; giving ours back");
                if let Err(err) = self
                    .store
                    .delete_expect_revision(&self.key, Some(term))
                    .await
                {
                    tracing::debug!(%err, "leader key not given back; it expires after its TTL");
                }
                Err(err)
            }
        }
    }

    /// A watch of this group's leader key, and of the Python SDK's when it is held too:
    /// either one deleted or expired is a reason to campaign at once.
    async fn watch_keys(
        &self,
    ) -> Result<BoxStream<'static, Result<kv::Entry, kv::WatcherError>>, kv::WatchError> {
        let ours = self.store.watch(&self.key).await?;
        let sdk = match &self.sdk {
            Some(sdk) => sdk.watch().await?.boxed(),
            None => futures_util::stream::pending().boxed(),
        };
        Ok(futures_util::stream::select(ours, sdk).boxed())
    }

    /// Applies the staleness rule to a held key: removes it (revision-checked, so a
    /// renewal that lands first wins) when the server says it is older than
    /// [`staleness::stale_after`], else says when to look again.
    async fn judge_held(&self, entry: &kv::Entry) -> Look {
        let stale_after = staleness::stale_after(self.ttl);
        let age = match staleness::age(&self.js, subject::STICKY_ACTIVE_BUCKET, entry).await {
            Ok(age) => age,
            Err(err) => {
                // Without the server's time nothing can be judged: wait for an expiry.
                tracing::warn!(key = %self.key, %err, "cannot judge whether the leader key is stale");
                return Look::Held(self.ttl);
            }
        };
        if age <= stale_after {
            return Look::Held((stale_after - age).min(self.ttl).max(MIN_RECHECK));
        }
        let holder = staleness::holder_of(&entry.value);
        match staleness::remove_dead(&self.store, &self.key, entry.revision, &self.service).await {
            Ok(()) => {
                tracing::warn!(
                    key = %self.key, %holder, ?age, ?stale_after, revision = entry.revision,
                    "removed a stale leader key: not rewritten for longer than leader_ttl + margin (written without a TTL, or by a writer that stopped)"
                );
                Look::Removed
            }
            Err(err) => {
                // Someone else wrote it first (then it is fresh: look again when it could
                // be stale), removed it first (the watch sees the marker at once), or this
                // user may not delete it: never retry in a tight loop.
                tracing::warn!(key = %self.key, %err, "stale leader key not removed");
                Look::Held(self.ttl)
            }
        }
    }

    /// Writes the record at `expected`: at election (`term` unknown: it is the revision
    /// this create gets) or at a renewal of `term`.
    fn write(
        &self,
        elected_at: f64,
        now: f64,
        expected: u64,
        term: Option<u64>,
    ) -> impl Future<Output = Result<u64, TtlWriteError>> + '_ {
        let record = LeaderRecord::new(self.instance.as_str(), elected_at, now, term);
        let value = serde_json::to_vec(&record).unwrap_or_default();
        registry::put_with_ttl(
            &self.js,
            subject::STICKY_ACTIVE_BUCKET,
            &self.key,
            value,
            self.ttl,
            Some(expected),
        )
    }

    fn hold(&self, held: Held) {
        if let Ok(mut slot) = self.held.lock() {
            *slot = Some(held);
        }
    }

    fn held(&self) -> Option<Held> {
        self.held.lock().ok().and_then(|slot| *slot)
    }

    /// Serves as leader until the key is lost: renews it every third of the TTL and
    /// watches it. Another writer's change stops the serving at once (before anything
    /// else is done), not at the next renewal.
    async fn lead(&self, term: u64) {
        tracing::info!(service = %self.service, group = %self.group, term, "elected leader");
        // Runs beside the renewals: a slow subscription must not delay the first renewal.
        let announced = async {
            self.announce_when_subscribed(term).await;
            std::future::pending::<std::convert::Infallible>().await
        };
        let reason = tokio::select! {
            never = announced => match never {},
            reason = self.renew(term) => reason,
            lost = self.lost() => {
                self.leadership.step_down();
                tracing::warn!(term, key = %self.key, %lost, "another writer changed the leader key; stepped down");
                lost.reason()
            }
        };
        metrics::counter!(
            crate::metrics::LEADER_STEP_DOWNS,
            "service" => self.service.to_string(),
            "reason" => reason
        )
        .increment(1);
        self.lose(reason).await;
    }

    /// Returns when another writer takes this group's key, or the Python SDK's key while
    /// this instance holds it too.
    async fn lost(&self) -> guard::Lost {
        let ours = guard::lost(&self.store, &self.key, &self.instance);
        match &self.sdk {
            None => ours.await,
            Some(sdk) => tokio::select! {
                lost = ours => lost,
                lost = sdk.lost() => lost,
            },
        }
    }

    /// Announces the new leader (the `LeaderElected` event, then ACTIVE in the registry)
    /// once its shared exclusive subjects are subscribed, so a client that reacts to the
    /// announcement finds the leader serving; after [`SUBSCRIBE_BEFORE_ANNOUNCE`] at most,
    /// so a failing subscription never hides the leader.
    async fn announce_when_subscribed(&self, term: u64) {
        if tokio::time::timeout(
            SUBSCRIBE_BEFORE_ANNOUNCE,
            self.leadership.all_subscribed(term),
        )
        .await
        .is_err()
        {
            tracing::warn!(term, timeout = ?SUBSCRIBE_BEFORE_ANNOUNCE, "the exclusive methods are not subscribed yet; announcing the leadership anyway");
        }
        self.announce(
            "LeaderElected",
            json!({"previous_leader_id": null, "elected_at": Timestamp::now().to_zulu(), "term": term}),
        )
        .await;
        self.show_role();
    }

    /// Renews every third of the TTL, extending the local lease after each success;
    /// returns (the reason) when the key changed or the lease ran out.
    async fn renew(&self, term: u64) -> &'static str {
        loop {
            tokio::time::sleep(self.ttl / 3).await;
            let Some(held) = self.held() else {
                return "released";
            };
            let sent = Instant::now();
            let now = Timestamp::now().as_epoch_seconds();
            let renewed = match self
                .write(held.elected_at, now, held.revision, Some(held.term))
                .await
            {
                Ok(revision) => {
                    self.hold(Held { revision, ..held });
                    match &self.sdk {
                        Some(sdk) => {
                            let record = LeaderRecord::new(
                                self.instance.as_str(),
                                held.elected_at,
                                now,
                                Some(held.term),
                            );
                            sdk.renew(&record).await
                        }
                        None => Ok(()),
                    }
                }
                Err(err) => Err(err),
            };
            match renewed {
                Ok(()) => {
                    self.leadership
                        .extend_lease(sent + self.ttl - self.lease_margin());
                }
                Err(TtlWriteError::Conflict) => {
                    tracing::warn!(term, "the leader key changed under us; stepping down");
                    return "renewal_conflict";
                }
                Err(err @ (TtlWriteError::Failed(_) | TtlWriteError::NoBucket)) => {
                    tracing::warn!(term, %err, "cannot renew leadership");
                    if !self.leadership.is_active() {
                        tracing::warn!(term, "the local lease ran out; stepping down");
                        return "lease_expired";
                    }
                }
            }
        }
    }

    async fn lose(&self, reason: &str) {
        if let Ok(mut slot) = self.held.lock() {
            *slot = None;
        }
        self.leadership.step_down();
        if let Some(sdk) = &self.sdk {
            // Whatever took ours, an SDK member may lead next.
            sdk.release().await;
        }
        self.show_role();
        self.announce(
            "LeaderLost",
            json!({"reason": reason, "lost_at": Timestamp::now().to_zulu()}),
        )
        .await;
    }

    /// Gives leadership up (graceful stop): stops serving, then deletes the key at the
    /// revision it holds, so a standby takes over at once. The runner has left the shared
    /// exclusive subjects before (as leader), so only calls addressed to this instance can
    /// still meet it as a standby.
    pub(crate) async fn release(&self) {
        let Some(held) = self.held() else { return };
        self.leadership.step_down();
        let deleted = self
            .store
            .delete_expect_revision(&self.key, Some(held.revision))
            .await;
        if let Err(err) = deleted {
            // A renewal may have landed after the last recorded revision: delete the key
            // only if it still names this instance.
            match self.store.entry(&self.key).await {
                Ok(Some(entry)) if is_ours(&entry.value, &self.instance) => {
                    let _ = self
                        .store
                        .delete_expect_revision(&self.key, Some(entry.revision))
                        .await;
                }
                _ => tracing::debug!(%err, "leader key not deleted; it expires after its TTL"),
            }
        }
        tracing::info!(term = held.term, "released leadership");
        self.lose("released").await;
    }

    /// Shows the role in the registry entry at once.
    fn show_role(&self) {
        let role = self.leadership.role();
        self.registration
            .update(|entry| entry.sticky_active_status = Some(role));
        let registration = self.registration.clone();
        tokio::spawn(async move {
            let _ = registration.beat().await;
        });
    }

    /// Publishes `events.sticky_active.{kind}` as the Python SDK does: a JetStream
    /// publish (stored in `EVENTS` when it exists), so a subscriber that acknowledges what
    /// it receives, as the SDK's core subscribers do, acknowledges into a reply inbox that
    /// exists. The acknowledgement is not awaited: an announcement never delays a
    /// leadership change.
    async fn announce(&self, kind: &str, extra: Value) {
        let mut payload = json!({
            "metadata": {},
            "service_name": self.service.as_str(),
            "instance_id": self.instance.as_str(),
            "group_id": self.group.as_str(),
        });
        if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            payload.extend(extra);
        }
        let event = Event::new("sticky_active", kind, payload).with_source(self.instance.as_str());
        let (Ok(domain), Ok(kind)) = (EventToken::new("sticky_active"), EventToken::new(kind))
        else {
            return;
        };
        if let Ok(bytes) = codec::encode(&event)
            && let Err(err) = self
                .js
                .publish(subject::event(&domain, &kind), bytes.into())
                .await
        {
            tracing::debug!(%err, "cannot publish an election event");
        }
    }
}

impl codec::WireMessage for LeaderRecord {
    const NAME: &'static str = "leader record";
}

fn is_ours(value: &[u8], instance: &InstanceId) -> bool {
    codec::decode::<LeaderRecord>(value).is_ok_and(|record| record.instance_id == instance.as_str())
}
