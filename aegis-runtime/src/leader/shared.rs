//! One leader watch per (connection, service, group), shared by everyone on the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::LeaderWatch;
use crate::subject::{GroupId, ServiceName};

/// A connection, told apart by its statistics block: every clone of an
/// `async_nats::Client` shares it, and it lives as long as any clone (each watch keeps one,
/// so the address cannot be reused while its entry here can still be upgraded).
type Connection = usize;

type Watches = HashMap<(Connection, ServiceName, GroupId), Weak<LeaderWatch>>;

fn watches() -> &'static Mutex<Watches> {
    static WATCHES: OnceLock<Mutex<Watches>> = OnceLock::new();
    WATCHES.get_or_init(Mutex::default)
}

pub(super) fn get_or_start(
    nats: &async_nats::Client,
    service: &ServiceName,
    group: &GroupId,
) -> Arc<LeaderWatch> {
    let connection = Arc::as_ptr(&nats.statistics()) as usize;
    let key = (connection, service.clone(), group.clone());
    let Ok(mut watches) = watches().lock() else {
        return Arc::new(LeaderWatch::new(nats, service, group));
    };
    if let Some(watch) = watches.get(&key).and_then(Weak::upgrade) {
        return watch;
    }
    // Forget the watches nobody holds any more before adding one.
    watches.retain(|_, watch| watch.strong_count() > 0);
    let watch = Arc::new(LeaderWatch::new(nats, service, group));
    watches.insert(key, Arc::downgrade(&watch));
    watch
}
