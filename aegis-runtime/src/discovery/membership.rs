//! The entries of one service as a registry watch follows them, and which of them are
//! usable: what a change costs is proportional to the change, not to the service's size.
//!
//! A heartbeat rewrites an instance's entry every few seconds with nothing new in it but
//! the time. Applying one is a map update, and it changes the usable list only when it
//! brings a stale entry back; staleness itself (an entry whose writer stopped beating
//! without deleting it, as a Python SDK instance that was killed) is found by a periodic
//! [`Membership::sweep`].

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::Timestamp;
use crate::instance::{InstanceStatus, ServiceInstance};
use crate::subject::ServiceName;

use super::{DEFAULT_ENTRY_TTL, DiscoveryError, Instances};

/// The entries of one service, by instance id, and which of them are stale.
#[derive(Debug, Default)]
pub(super) struct Membership {
    entries: BTreeMap<String, ServiceInstance>,
    /// The ids whose last heartbeat is older than their TTL, as of the last put or sweep.
    stale: BTreeSet<String>,
}

impl Membership {
    /// Applies a written entry; whether the usable list changed.
    pub(super) fn put(&mut self, entry: ServiceInstance, now: Timestamp) -> bool {
        let id = entry.instance_id.to_string();
        let stale_now = is_stale(&entry, now);
        let was_stale = if stale_now {
            !self.stale.insert(id.clone())
        } else {
            self.stale.remove(&id)
        };
        match self.entries.get_mut(&id) {
            Some(known) if known.same_apart_from_heartbeat(&entry) => {
                known.last_heartbeat = entry.last_heartbeat;
                was_stale != stale_now
            }
            _ => {
                self.entries.insert(id, entry);
                true
            }
        }
    }

    /// Removes the entry of `id` (deleted, purged or expired); whether there was one.
    pub(super) fn remove(&mut self, id: &str) -> bool {
        self.stale.remove(id);
        self.entries.remove(id).is_some()
    }

    /// Marks the entries that went stale since the last look; whether any did.
    pub(super) fn sweep(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for (id, entry) in &self.entries {
            if !self.stale.contains(id) && is_stale(entry, now) {
                self.stale.insert(id.clone());
                changed = true;
            }
        }
        changed
    }

    /// The usable instances (not stale, not unhealthy), sorted by id, or why there are
    /// none.
    pub(super) fn usable(&self, service: &ServiceName) -> Result<Instances, DiscoveryError> {
        let registered = self.entries.len();
        let instances: Vec<ServiceInstance> = self
            .entries
            .iter()
            .filter(|(id, entry)| {
                entry.status != InstanceStatus::Unhealthy && !self.stale.contains(*id)
            })
            .map(|(_, entry)| entry.clone())
            .collect();
        if instances.is_empty() && registered > 0 {
            return Err(DiscoveryError::Unavailable {
                service: service.to_string(),
                registered,
            });
        }
        // Sorted by id, as a one-off read of the registry gives them: the map's order.
        Ok(instances.into())
    }
}

fn is_stale(entry: &ServiceInstance, now: Timestamp) -> bool {
    entry.is_stale(entry.heartbeat_ttl().unwrap_or(DEFAULT_ENTRY_TTL), now)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
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
        assert!(!membership.remove("z"));
        assert!(membership.remove("a"));
        assert_eq!(ids(&membership), Vec::<String>::new());
    }
}
