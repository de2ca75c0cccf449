//! What the dashboard shows, kept current by two KV watches (the registry and the
//! election), never by listing the registry again: every change arrives as one watch entry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aegis_runtime::codec::{self, Timestamp};
use aegis_runtime::election::LeaderRecord;
use aegis_runtime::instance::{EntryOrigin, ServiceInstance};
use aegis_runtime::runner::DEFAULT_REGISTRY_TTL;
use aegis_runtime::subject::{self, python_sdk};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// How many events a page that opens now is shown.
const RECENT_EVENTS: usize = 100;
/// The longest wait before a lost (or not yet created) bucket is opened again.
const REOPEN_MAX: Duration = Duration::from_secs(2);
/// How often a watch checks that the connection was not re-established meanwhile (after a
/// server restart a watch may be silently gone).
const RECONNECT_CHECK: Duration = Duration::from_secs(1);

/// One instance, as its registry entry says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct InstanceView {
    pub(crate) service: String,
    pub(crate) instance_id: String,
    pub(crate) version: String,
    /// `ACTIVE`, `UNHEALTHY`, …: what the instance last wrote.
    pub(crate) status: String,
    pub(crate) group: Option<String>,
    /// `ACTIVE` or `STANDBY` in its group; `None` outside sticky-active groups.
    pub(crate) role: Option<String>,
    /// Its last heartbeat, in seconds since the epoch.
    pub(crate) last_heartbeat: f64,
    /// The TTL it registered with: a heartbeat older than that means the instance is gone.
    pub(crate) ttl_seconds: f64,
    /// Whether the last heartbeat is older than the TTL (as of the snapshot).
    pub(crate) stale: bool,
    /// `aegis`, or `python-sdk` for an entry under one of the Python SDK's keys.
    pub(crate) origin: &'static str,
}

impl InstanceView {
    fn of(entry: &ServiceInstance) -> Self {
        let upper = |text: String| text.to_uppercase();
        Self {
            service: entry.service_name.to_string(),
            instance_id: entry.instance_id.to_string(),
            version: entry.version.clone(),
            status: upper(format!("{:?}", entry.status)),
            group: entry.sticky_active_group.as_ref().map(ToString::to_string),
            role: entry.sticky_active_status.map(|r| upper(format!("{r:?}"))),
            last_heartbeat: entry.last_heartbeat.as_epoch_seconds(),
            ttl_seconds: entry
                .heartbeat_ttl()
                .unwrap_or(DEFAULT_REGISTRY_TTL)
                .as_secs_f64(),
            stale: false,
            origin: match entry.origin {
                EntryOrigin::Aegis => "aegis",
                EntryOrigin::PythonSdk => "python-sdk",
            },
        }
    }

    /// Same instance, same everything but the heartbeat: a renewal, not news.
    fn same_but_heartbeat(&self, other: &Self) -> bool {
        Self {
            last_heartbeat: other.last_heartbeat,
            ..self.clone()
        } == *other
    }
}

/// The leader of one group, as its election key says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LeaderView {
    pub(crate) service: String,
    pub(crate) group: String,
    pub(crate) leader: String,
    /// The fencing term; `None` for a record of a writer that does not keep one.
    pub(crate) term: Option<u64>,
    /// When it was elected and last renewed, in seconds since the epoch.
    pub(crate) elected_at: f64,
    pub(crate) renewed_at: f64,
}

/// One line of the event log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    /// Seconds since the epoch.
    pub(crate) at: f64,
    /// `instance_joined`, `instance_changed`, `instance_left`, `instance_expired`,
    /// `leader_elected`, `leader_lost`.
    pub(crate) kind: &'static str,
    pub(crate) service: String,
    pub(crate) instance: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) term: Option<u64>,
    /// The event in words.
    pub(crate) text: String,
}

impl Event {
    fn new(kind: &'static str, service: &str, text: String) -> Self {
        Self {
            at: Timestamp::now().as_epoch_seconds(),
            kind,
            service: service.to_owned(),
            instance: None,
            group: None,
            term: None,
            text,
        }
    }
}

/// The two buckets the dashboard follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Registry,
    Election,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Self::Registry => subject::REGISTRY_BUCKET,
            Self::Election => subject::STICKY_ACTIVE_BUCKET,
        }
    }
}

/// Everything known, by KV key.
#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, InstanceView>,
    leaders: BTreeMap<String, LeaderView>,
    events: VecDeque<Event>,
    /// Whether each bucket has been read once (its first contents are the starting
    /// point, not events).
    loaded: BTreeSet<&'static str>,
}

/// The services, instances and leaders of one server, live.
#[derive(Debug)]
pub(crate) struct Live {
    state: Mutex<State>,
    /// Bumped at every change: pages wait on it for a fresh snapshot.
    changed: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
}

/// What `/api/events` and the page start from: every service with its instances and
/// leaders, and the recent events.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    /// The dashboard's clock, in seconds since the epoch: the page computes heartbeat ages
    /// against it, not against the browser's clock.
    pub(crate) now: f64,
    pub(crate) services: Vec<ServiceView>,
    pub(crate) events: Vec<Event>,
}

/// One service in a [`Snapshot`].
#[derive(Debug, Serialize)]
pub(crate) struct ServiceView {
    pub(crate) name: String,
    pub(crate) instances: Vec<InstanceView>,
    pub(crate) leaders: Vec<LeaderView>,
}

impl Live {
    /// Starts following `nats`'s registry and election buckets; the watches run until
    /// the returned tasks are aborted.
    pub(crate) fn start(nats: async_nats::Client) -> (Arc<Self>, tokio::task::JoinSet<()>) {
        let live = Arc::new(Self {
            state: Mutex::default(),
            changed: watch::Sender::new(0),
            events: broadcast::Sender::new(RECENT_EVENTS),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for bucket in [Bucket::Registry, Bucket::Election] {
            tasks.spawn(follow(nats.clone(), bucket, live.clone()));
        }
        (live, tasks)
    }

    /// A receiver that wakes at every change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A receiver of every event from now on.
    pub(crate) fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Everything, as of now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        let now = Timestamp::now().as_epoch_seconds();
        let mut services: BTreeMap<String, ServiceView> = BTreeMap::new();
        for instance in state.instances.values() {
            let mut instance = instance.clone();
            instance.stale = now - instance.last_heartbeat > instance.ttl_seconds;
            ServiceView::in_map(&mut services, &instance.service)
                .instances
                .push(instance);
        }
        for leader in state.leaders.values() {
            ServiceView::in_map(&mut services, &leader.service)
                .leaders
                .push(leader.clone());
        }
        Snapshot {
            now,
            services: services.into_values().collect(),
            events: state.events.iter().cloned().collect(),
        }
    }

    /// The service `name`, if the registry or the election knows it.
    pub(crate) fn service(&self, name: &str) -> Option<ServiceView> {
        self.snapshot()
            .services
            .into_iter()
            .find(|service| service.name == name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the bucket's whole contents (its first read, or a read after the watch was
    /// lost): what appeared or went meanwhile becomes events, except on the first read.
    fn replace(&self, bucket: Bucket, entries: Vec<kv::Entry>) {
        let mut state = self.lock();
        let first = state.loaded.insert(bucket.name());
        let mut seen = BTreeSet::new();
        let mut events = Vec::new();
        for entry in entries {
            seen.insert(entry.key.clone());
            events.extend(apply(&mut state, bucket, &entry));
        }
        let known: Vec<&String> = match bucket {
            Bucket::Registry => state.instances.keys().collect(),
            Bucket::Election => state.leaders.keys().collect(),
        };
        let gone: Vec<String> = known
            .into_iter()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            events.extend(remove(&mut state, bucket, &key, "went while unwatched"));
        }
        if first {
            events.clear();
        }
        self.publish(state, events);
    }

    /// Takes one change of the bucket.
    fn update(&self, bucket: Bucket, entry: &kv::Entry) {
        let mut state = self.lock();
        let events = apply(&mut state, bucket, entry);
        self.publish(state, events);
    }

    fn publish(&self, mut state: std::sync::MutexGuard<'_, State>, events: Vec<Event>) {
        for event in &events {
            if state.events.len() == RECENT_EVENTS {
                state.events.pop_front();
            }
            state.events.push_back(event.clone());
        }
        drop(state);
        for event in events {
            // No page open: nobody to tell.
            let _ = self.events.send(event);
        }
        self.changed.send_modify(|generation| *generation += 1);
    }
}

impl ServiceView {
    /// The view of service `name` in `services`, added empty when missing.
    fn in_map<'m>(services: &'m mut BTreeMap<String, Self>, name: &str) -> &'m mut Self {
        services.entry(name.to_owned()).or_insert_with(|| Self {
            name: name.to_owned(),
            instances: Vec::new(),
            leaders: Vec::new(),
        })
    }
}

/// Applies one watch entry to `state`; the events it makes.
fn apply(state: &mut State, bucket: Bucket, entry: &kv::Entry) -> Vec<Event> {
    match entry.operation {
        kv::Operation::Delete => remove(state, bucket, &entry.key, "stopped"),
        kv::Operation::Purge => remove(state, bucket, &entry.key, "expired"),
        kv::Operation::Put => match bucket {
            Bucket::Registry => put_instance(state, entry),
            Bucket::Election => put_leader(state, entry),
        },
    }
}

fn put_instance(state: &mut State, entry: &kv::Entry) -> Vec<Event> {
    let origin = if subject::parse_registry_key(&entry.key).is_some() {
        EntryOrigin::Aegis
    } else if entry.key.starts_with(python_sdk::REGISTRY_KEY_PREFIX) {
        EntryOrigin::PythonSdk
    } else {
        return Vec::new(); // another tool's key (monitor-api's definitions): no instance
    };
    let now = match ServiceInstance::from_json(&entry.value) {
        Ok(mut instance) => {
            instance.origin = origin;
            InstanceView::of(&instance)
        }
        Err(err) => {
            tracing::debug!(key = %entry.key, %err, "a registry entry does not decode");
            return Vec::new();
        }
    };
    // The SDK's key form is ambiguous when names hold `_`: the value names the instance.
    let (service, id) = (now.service.clone(), now.instance_id.clone());
    if origin == EntryOrigin::PythonSdk
        && state.instances.values().any(|known| {
            known.origin == "aegis" && known.service == service && known.instance_id == id
        })
    {
        return Vec::new(); // the SDK copy of an Aegis instance that is visible to the SDK
    }
    if origin == EntryOrigin::Aegis {
        // Its SDK copy, if it came first, is the same instance.
        state.instances.retain(|_, known| {
            known.origin == "aegis" || known.service != service || known.instance_id != id
        });
    }
    let event = match state.instances.get(&entry.key) {
        None => {
            let role = now
                .role
                .as_deref()
                .map_or(String::new(), |r| format!(" {r}"));
            Some((
                "instance_joined",
                format!("{id} joined ({}{role})", now.status),
            ))
        }
        Some(before) if !before.same_but_heartbeat(&now) => {
            let mut changes = Vec::new();
            if before.status != now.status {
                changes.push(format!("status {} → {}", before.status, now.status));
            }
            if before.role != now.role {
                let role = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".to_owned());
                changes.push(format!("role {} → {}", role(&before.role), role(&now.role)));
            }
            if before.version != now.version {
                changes.push(format!("version {} → {}", before.version, now.version));
            }
            (!changes.is_empty())
                .then(|| ("instance_changed", format!("{id}: {}", changes.join(", "))))
        }
        Some(_) => None,
    };
    state.instances.insert(entry.key.clone(), now);
    event
        .map(|(kind, text)| Event {
            instance: Some(id.clone()),
            ..Event::new(kind, &service, text)
        })
        .into_iter()
        .collect()
}

fn put_leader(state: &mut State, entry: &kv::Entry) -> Vec<Event> {
    let Some((service, group)) = subject::parse_leader_key(&entry.key) else {
        return Vec::new();
    };
    let record: LeaderRecord = match codec::decode(&entry.value) {
        Ok(record) => record,
        Err(err) => {
            tracing::debug!(key = %entry.key, %err, "a leader record does not decode");
            return Vec::new();
        }
    };
    let now = LeaderView {
        service: service.to_string(),
        group: group.to_string(),
        term: record.term(entry.revision),
        leader: record.instance_id,
        elected_at: record.elected_at,
        renewed_at: record.last_heartbeat,
    };
    let before = state.leaders.insert(entry.key.clone(), now.clone());
    // A renewal rewrites the key with the same leader and term: not news.
    if before.is_some_and(|b| b.leader == now.leader && b.term == now.term) {
        return Vec::new();
    }
    let term = now.term.map_or("unknown".to_owned(), |t| t.to_string());
    vec![Event {
        instance: Some(now.leader.clone()),
        group: Some(now.group.clone()),
        term: now.term,
        ..Event::new(
            "leader_elected",
            &now.service,
            format!("{} leads group {} (term {term})", now.leader, now.group),
        )
    }]
}

fn remove(state: &mut State, bucket: Bucket, key: &str, why: &str) -> Vec<Event> {
    match bucket {
        Bucket::Registry => {
            let Some(gone) = state.instances.remove(key) else {
                return Vec::new();
            };
            let kind = if why == "expired" {
                "instance_expired"
            } else {
                "instance_left"
            };
            vec![Event {
                instance: Some(gone.instance_id.clone()),
                ..Event::new(
                    kind,
                    &gone.service,
                    format!("{} left ({why})", gone.instance_id),
                )
            }]
        }
        Bucket::Election => {
            let Some(gone) = state.leaders.remove(key) else {
                return Vec::new();
            };
            let why = match why {
                "stopped" => "released",
                other => other,
            };
            vec![Event {
                instance: Some(gone.leader.clone()),
                group: Some(gone.group.clone()),
                term: gone.term,
                ..Event::new(
                    "leader_lost",
                    &gone.service,
                    format!("group {} has no leader: {} {why}", gone.group, gone.leader),
                )
            }]
        }
    }
}

/// Follows `bucket` for as long as the task runs: waits for the bucket to exist, reads it
/// whole, then applies each change; opens it again after the watch is lost or the
/// connection was re-established (a restarted server may have dropped the watch).
async fn follow(nats: async_nats::Client, bucket: Bucket, live: Arc<Live>) {
    let js = jetstream::new(nats.clone());
    let mut failures = 0u32;
    loop {
        let connected = connects(&nats);
        match js.get_key_value(bucket.name()).await {
            Ok(store) => match watch_bucket(&nats, &store, bucket, &live, connected).await {
                Ok(()) => failures = 0,
                Err(err) => {
                    tracing::warn!(bucket = bucket.name(), %err, "watch lost; opening it again");
                }
            },
            Err(err) => {
                tracing::debug!(bucket = bucket.name(), %err, "no bucket yet; waiting for it");
            }
        }
        failures = failures.saturating_add(1);
        let wait = Duration::from_millis(100)
            .saturating_mul(1 << failures.min(5))
            .min(REOPEN_MAX);
        tokio::time::sleep(wait).await;
    }
}

/// Reads `store` whole into `live`, then each change, until the watch ends or the
/// connection was re-established (`Ok`), or the watch cannot be opened or fails (`Err`).
async fn watch_bucket(
    nats: &async_nats::Client,
    store: &kv::Store,
    bucket: Bucket,
    live: &Live,
    connected: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut changes = store.watch_with_history(">").await?;
    // An empty bucket sends nothing: then there is nothing to wait for.
    let mut first: Option<Vec<kv::Entry>> = Some(Vec::new());
    if store.status().await?.values() == 0 {
        live.replace(bucket, first.take().unwrap_or_default());
    }
    let mut check = tokio::time::interval(RECONNECT_CHECK);
    loop {
        let entry = tokio::select! {
            entry = changes.next() => match entry {
                Some(entry) => entry?,
                None => return Ok(()),
            },
            _ = check.tick() => {
                if connects(nats) != connected {
                    return Ok(());
                }
                continue;
            }
        };
        match first.as_mut() {
            Some(read) => {
                // `delta`: how many entries of the history are still to come.
                let done = entry.delta == 0;
                read.push(entry);
                if done {
                    live.replace(bucket, first.take().unwrap_or_default());
                }
            }
            None => live.update(bucket, &entry),
        }
    }
}

/// How many times the connection was established so far.
fn connects(nats: &async_nats::Client) -> u64 {
    nats.statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}
