//! Outlier ejection: an instance that did not answer a plain call (timed out, or nobody
//! serves its subject) gets no more of this client's plain calls until the registry shows
//! a heartbeat of it newer than the one seen when it failed: a crashed or frozen instance
//! is skipped from its first failure, not on 1/N of the calls until its entry expires.
//!
//! Bounded: when every instance is ejected, none is (a whole service is never skipped).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::codec::Timestamp;
use crate::instance::ServiceInstance;
use crate::subject::{InstanceId, ServiceName};

/// The instances one client skips.
#[derive(Debug, Default)]
pub(super) struct Ejections {
    /// How many are ejected: lets calls skip the lock when none is (the common case).
    count: AtomicUsize,
    ejected: Mutex<Vec<Ejected>>,
}

/// An ejected instance and the heartbeat its entry showed when it failed.
#[derive(Debug)]
struct Ejected {
    instance: InstanceId,
    heartbeat: Timestamp,
}

impl Ejections {
    /// Whether no instance is ejected.
    pub(super) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Ejects `instance`, whose entry showed `heartbeat` when the call was routed to it.
    pub(super) fn eject(&self, service: &ServiceName, instance: &InstanceId, heartbeat: Timestamp) {
        let Ok(mut ejected) = self.ejected.lock() else {
            return;
        };
        if ejected.iter().any(|e| e.instance == *instance) {
            return;
        }
        tracing::info!(%service, %instance, "instance did not answer: ejected from selection until it shows a fresh heartbeat");
        metrics::counter!(crate::metrics::EJECTIONS, "service" => service.to_string()).increment(1);
        ejected.push(Ejected {
            instance: instance.clone(),
            heartbeat,
        });
        self.count.store(ejected.len(), Ordering::Relaxed);
    }

    /// Adds the instances of `instances` still ejected to `avoid`; lifts the ejection of
    /// those with a newer heartbeat, and of those no longer listed (their entry is gone: if
    /// they come back, it is with a fresh heartbeat).
    pub(super) fn still_ejected(&self, instances: &[ServiceInstance], avoid: &mut Vec<InstanceId>) {
        if self.is_empty() {
            return;
        }
        let Ok(mut ejected) = self.ejected.lock() else {
            return;
        };
        ejected.retain(|e| {
            let listed = instances.iter().find(|i| i.instance_id == e.instance);
            let keep = listed.is_some_and(|i| i.last_heartbeat <= e.heartbeat);
            if !keep {
                tracing::debug!(instance = %e.instance, "ejection lifted: fresh heartbeat or entry gone");
            }
            keep
        });
        self.count.store(ejected.len(), Ordering::Relaxed);
        avoid.extend(ejected.iter().map(|e| e.instance.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, heartbeat: Timestamp) -> ServiceInstance {
        let mut entry = ServiceInstance::new(
            ServiceName::new("svc").expect("name"),
            InstanceId::new(id).expect("id"),
            "1.0.0",
        )
        .expect("entry");
        entry.last_heartbeat = heartbeat;
        entry
    }

    #[test]
    fn an_ejection_lasts_until_a_fresh_heartbeat_or_the_entry_goes() {
        let service = ServiceName::new("svc").expect("name");
        let then = Timestamp::now();
        let ejections = Ejections::default();
        let a = InstanceId::new("a").expect("id");
        ejections.eject(&service, &a, then);
        let mut avoid = Vec::new();
        ejections.still_ejected(&[instance("a", then), instance("b", then)], &mut avoid);
        assert_eq!(
            avoid,
            std::slice::from_ref(&a),
            "same heartbeat: still ejected"
        );

        let later = Timestamp::from_datetime(then.as_datetime() + chrono::Duration::seconds(1));
        let mut avoid = Vec::new();
        ejections.still_ejected(&[instance("a", later)], &mut avoid);
        assert!(avoid.is_empty(), "a fresh heartbeat lifts it");

        ejections.eject(&service, &a, then);
        let mut avoid = Vec::new();
        ejections.still_ejected(&[instance("b", then)], &mut avoid);
        assert!(avoid.is_empty(), "an entry that is gone lifts it");
        assert_eq!(ejections.count.load(Ordering::Relaxed), 0);
    }
}
