//! The entries of one service as a registry watch follows them, and which of them are
//! usable: what a change costs is proportional to the change, not to the service's size.
//!
//! A heartbeat rewrites an instance's entry every few seconds with nothing new in it but
//! the time. Applying one is a map update, and it changes the usable list only when it
//! brings a stale entry back; staleness itself (an entry whose writer stopped beating
//! without deleting it, as a Python SDK instance that was killed) is found by a periodic
//! [`Membership::sweep`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::codec::Timestamp;
use crate::instance::{EntryOrigin, ServiceInstance};
use crate::subject::ServiceName;

use super::reader::EntryKey;
use super::{DEFAULT_ENTRY_TTL, DiscoveryError, Instances};

/// The entries of one service, by instance id, and which of them are stale.
#[derive(Debug, Default)]
pub(super) struct Membership {
    entries: BTreeMap<EntryKey, Tracked>,
    /// No fresh entry turns stale before this, so a sweep before it has nothing to do:
    /// with heartbeats every 10 s and a TTL of 30 s, one pass over the entries every
    /// ~20 s, not one per sweep. Only ever earlier than the true time (a heartbeat moves
    /// an entry's time later without moving this), which costs at most an idle pass.
    next_stale_at: Option<Timestamp>,
}

/// An entry and when it turns stale.
#[derive(Debug)]
struct Tracked {
    entry: ServiceInstance,
    /// Its last heartbeat plus its TTL.
    stale_at: Timestamp,
    /// Whether it was stale at the last put or sweep.
    stale: bool,
}

impl Membership {
    /// Applies a written entry; whether the usable list changed.
    pub(super) fn put(&mut self, entry: ServiceInstance, now: Timestamp) -> bool {
        let stale_at = stale_at(&entry);
        let stale = stale_at < now;
        if !stale {
            self.next_stale_at = Some(self.next_stale_at.map_or(stale_at, |t| t.min(stale_at)));
        }
        let key = EntryKey::of(&entry);
        match self.entries.get_mut(&key) {
            Some(known) if known.entry.same_apart_from_heartbeat(&entry) => {
                known.entry.last_heartbeat = entry.last_heartbeat;
                known.stale_at = stale_at;
                std::mem::replace(&mut known.stale, stale) != stale
            }
            _ => {
                self.entries.insert(
                    key,
                    Tracked {
                        entry,
                        stale_at,
                        stale,
                    },
                );
                true
            }
        }
    }

    /// Removes the entry under `key` (deleted, purged or expired); whether there was one.
    pub(super) fn remove(&mut self, key: &EntryKey) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Marks the entries that went stale since the last look; whether any did. Costs
    /// nothing until the earliest entry could be stale.
    pub(super) fn sweep(&mut self, now: Timestamp) -> bool {
        if self.next_stale_at.is_none_or(|next| now <= next) {
            return false;
        }
        let mut changed = false;
        let mut next = None::<Timestamp>;
        for tracked in self.entries.values_mut().filter(|tracked| !tracked.stale) {
            if tracked.stale_at < now {
                tracked.stale = true;
                changed = true;
            } else {
                next = Some(next.map_or(tracked.stale_at, |t| t.min(tracked.stale_at)));
            }
        }
        self.next_stale_at = next;
        changed
    }

    /// The usable instances (not stale, not unhealthy), sorted by id, or why there are
    /// none.
    pub(super) fn usable(&self, service: &ServiceName) -> Result<Instances, DiscoveryError> {
        // An instance with entries in both forms is listed once, as its Aegis entry (the
        // map's order puts the Aegis forms first).
        let has_aegis_entry = |id: &str| {
            self.entries.contains_key(&EntryKey {
                origin: EntryOrigin::Aegis,
                id: id.to_owned(),
            })
        };
        super::usable_unless_stale(
            service,
            self.entries
                .iter()
                .filter(|(key, _)| key.origin == EntryOrigin::Aegis || !has_aegis_entry(&key.id))
                .map(|(_, tracked)| (Cow::Borrowed(&tracked.entry), tracked.stale)),
        )
    }
}

/// When `entry` turns stale: its last heartbeat plus its TTL (or, when it does not say
/// one, [`DEFAULT_ENTRY_TTL`]), as a one-off read judges.
fn stale_at(entry: &ServiceInstance) -> Timestamp {
    let ttl = entry.heartbeat_ttl().unwrap_or(DEFAULT_ENTRY_TTL);
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    Timestamp::from_datetime(
        entry
            .last_heartbeat
            .as_datetime()
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::instance::InstanceStatus;
    use crate::subject::InstanceId;

    fn service() -> ServiceName {
        ServiceName::new("svc").expect("name")
    }

    fn entry(id: &str, age: Duration) -> ServiceInstance {
        let mut entry = ServiceInstance::new(service(), InstanceId::new(id).expect("id"), "1.0.0")
            .expect("entry");
        entry.last_heartbeat = Timestamp::from_datetime(
            chrono::Utc::now() - chrono::Duration::from_std(age).expect("age"),
        );
        entry
    }

    fn ids(membership: &Membership) -> Vec<String> {
        membership
            .usable(&service())
            .map(|list| list.iter().map(|e| e.instance_id.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_heartbeat_that_changes_nothing_else_is_no_news() {
        let mut membership = Membership::default();
        assert!(membership.put(entry("a", Duration::ZERO), Timestamp::now()));
        assert!(!membership.put(entry("a", Duration::ZERO), Timestamp::now()));
        let mut unhealthy = entry("a", Duration::ZERO);
        unhealthy.status = InstanceStatus::Unhealthy;
        assert!(
            membership.put(unhealthy, Timestamp::now()),
            "a status change is news"
        );
        assert!(membership.usable(&service()).is_err());
    }

    #[test]
    fn a_sweep_finds_entries_gone_quiet_and_a_heartbeat_brings_them_back() {
        let mut membership = Membership::default();
        membership.put(entry("a", Duration::ZERO), Timestamp::now());
        membership.put(entry("b", Duration::from_secs(29)), Timestamp::now());
        assert_eq!(ids(&membership), ["a", "b"]);
        let later = Timestamp::from_datetime(chrono::Utc::now() + chrono::Duration::seconds(2));
        assert!(membership.sweep(later), "b is past its 30 s");
        assert!(!membership.sweep(later), "and only once");
        assert_eq!(ids(&membership), ["a"]);
        assert!(membership.put(entry("b", Duration::ZERO), Timestamp::now()));
        assert_eq!(ids(&membership), ["a", "b"]);
    }

    #[test]
    fn removing_is_news_only_for_a_known_entry() {
        let mut membership = Membership::default();
        membership.put(entry("a", Duration::ZERO), Timestamp::now());
        let key = |id: &str| EntryKey {
            origin: EntryOrigin::Aegis,
            id: id.to_owned(),
        };
        assert!(!membership.remove(&key("z")));
        assert!(membership.remove(&key("a")));
        assert_eq!(ids(&membership), Vec::<String>::new());
    }
}
