//! Which instance takes the next call.

use std::sync::Mutex;

use crate::instance::ServiceInstance;
use crate::subject::InstanceId;

/// How a client picks an instance among those discovery found.
///
/// ```
/// use aegis_runtime::client::Selection;
/// use aegis_runtime::subject::InstanceId;
///
/// let spread = Selection::RoundRobin;
/// let pinned = Selection::Sticky(InstanceId::new("orders-1").unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Selection {
    /// Each instance in turn. The turn starts over when the set of instances changes.
    #[default]
    RoundRobin,
    /// An instance at random, uniformly.
    Random,
    /// The given instance while it is there; round robin over the others when it is not.
    Sticky(InstanceId),
}

/// A [`Selection`] and the state it needs: what a client uses to pick the instance of
/// each call, for code that calls instances itself (or measures the cost of a pick).
///
/// A round-robin pick over the list a [`WatchDiscovery`](crate::discovery::WatchDiscovery)
/// hands out costs the same with 3 or 10,000 instances: the list is shared until the set
/// changes, and an unchanged list is recognised by its address.
///
/// ```
/// use aegis_runtime::client::{Selection, Selector};
/// use aegis_runtime::instance::ServiceInstance;
/// use aegis_runtime::subject::{InstanceId, ServiceName};
///
/// let service = ServiceName::new("echo")?;
/// let instances: Vec<ServiceInstance> = ["a", "b"]
///     .into_iter()
///     .map(|id| ServiceInstance::new(service.clone(), InstanceId::new(id).unwrap(), "1.0.0").unwrap())
///     .collect();
/// let selector = Selector::new(Selection::RoundRobin);
/// let first = selector.pick(&instances, &[]).unwrap().instance_id.clone();
/// let second = selector.pick(&instances, &[]).unwrap().instance_id.clone();
/// assert_ne!(first, second);
/// // Excluded instances (say, one that just failed) are skipped.
/// assert_eq!(selector.pick(&instances, &[first.clone()]).unwrap().instance_id, second);
/// # Ok::<(), aegis_runtime::subject::InvalidName>(())
/// ```
#[derive(Debug, Default)]
pub struct Selector {
    selection: Selection,
    turn: Mutex<Turn>,
}

/// Round-robin state: the set it was made for and the next position.
#[derive(Debug, Default)]
struct Turn {
    ids: Vec<InstanceId>,
    /// Where the list of the set lives and how long it is: a watch discovery hands out
    /// the same shared list until the set changes, so an unchanged address means an
    /// unchanged set and the ids need no comparing (a pick stays O(1) with 10,000
    /// instances). A list at a new address is compared id by id.
    list: (usize, usize),
    next: usize,
}

impl Selector {
    /// A selector for `selection`, with no turn taken yet.
    pub fn new(selection: Selection) -> Self {
        Self {
            selection,
            turn: Mutex::default(),
        }
    }

    /// Picks one of `instances` not in `excluded`; `None` when there is none.
    pub fn pick<'a>(
        &self,
        instances: &'a [ServiceInstance],
        excluded: &[InstanceId],
    ) -> Option<&'a ServiceInstance> {
        let allowed = |instance: &&ServiceInstance| !excluded.contains(&instance.instance_id);
        match &self.selection {
            Selection::Random if excluded.is_empty() => {
                instances.get(fastrand::usize(..instances.len().max(1)))
            }
            Selection::Random => {
                let count = instances.iter().filter(allowed).count();
                if count == 0 {
                    return None;
                }
                instances
                    .iter()
                    .filter(allowed)
                    .nth(fastrand::usize(..count))
            }
            Selection::Sticky(preferred) => instances
                .iter()
                .filter(allowed)
                .find(|instance| instance.instance_id == *preferred)
                .or_else(|| self.next_in_turn(instances, allowed)),
            Selection::RoundRobin => self.next_in_turn(instances, allowed),
        }
    }

    /// The next allowed instance in round-robin order over the whole set `instances`.
    fn next_in_turn<'a>(
        &self,
        instances: &'a [ServiceInstance],
        allowed: impl Fn(&&ServiceInstance) -> bool,
    ) -> Option<&'a ServiceInstance> {
        if instances.is_empty() {
            return None;
        }
        let Ok(mut turn) = self.turn.lock() else {
            return instances.iter().find(|i| allowed(i));
        };
        let list = (instances.as_ptr() as usize, instances.len());
        if turn.list != list {
            turn.list = list;
            if !turn
                .ids
                .iter()
                .eq(instances.iter().map(|instance| &instance.instance_id))
            {
                turn.ids = instances.iter().map(|i| i.instance_id.clone()).collect();
                turn.next = 0;
            }
        }
        // Walk the whole set from the turn's position; skip the excluded.
        for offset in 0..instances.len() {
            let position = (turn.next + offset) % instances.len();
            let instance = &instances[position];
            if allowed(&instance) {
                turn.next = position + 1;
                return Some(instance);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::ServiceName;

    fn instances(ids: &[&str]) -> Vec<ServiceInstance> {
        ids.iter()
            .map(|id| {
                ServiceInstance::new(
                    ServiceName::new("svc").expect("name"),
                    InstanceId::new(*id).expect("id"),
                    "1.0.0",
                )
                .expect("entry")
            })
            .collect()
    }

    fn id(id: &str) -> InstanceId {
        InstanceId::new(id).expect("id")
    }

    fn picks(selector: &Selector, set: &[ServiceInstance], n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                selector
                    .pick(set, &[])
                    .expect("one")
                    .instance_id
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns_and_starts_over_when_the_set_changes() {
        let selector = Selector::new(Selection::RoundRobin);
        let set = instances(&["a", "b", "c"]);
        assert_eq!(picks(&selector, &set, 4), ["a", "b", "c", "a"]);
        let grown = instances(&["a", "b", "c", "d"]);
        assert_eq!(picks(&selector, &grown, 5), ["a", "b", "c", "d", "a"]);
    }

    #[test]
    fn round_robin_skips_excluded_instances() {
        let selector = Selector::new(Selection::RoundRobin);
        let set = instances(&["a", "b", "c"]);
        let excluded = [id("b")];
        let got: Vec<String> = (0..4)
            .map(|_| {
                selector
                    .pick(&set, &excluded)
                    .expect("one")
                    .instance_id
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["a", "c", "a", "c"]);
        assert!(selector.pick(&set, &[id("a"), id("b"), id("c")]).is_none());
    }

    #[test]
    fn sticky_prefers_its_instance_and_falls_back_to_round_robin() {
        let selector = Selector::new(Selection::Sticky(id("b")));
        let set = instances(&["a", "b", "c"]);
        assert_eq!(picks(&selector, &set, 3), ["b", "b", "b"]);
        let without = instances(&["a", "c"]);
        assert_eq!(picks(&selector, &without, 3), ["a", "c", "a"]);
    }

    #[test]
    fn random_picks_every_instance_eventually() {
        let selector = Selector::new(Selection::Random);
        let set = instances(&["a", "b", "c"]);
        let seen: std::collections::BTreeSet<String> =
            picks(&selector, &set, 300).into_iter().collect();
        assert_eq!(seen.len(), 3);
    }
}
