//! What a client keeps of each method it calls: made on the first call, so that later calls
//! neither validate, format subjects nor register metrics.

use std::sync::{Arc, Mutex};

use crate::metrics::CallMetrics;
use crate::subject::{self, InstanceId, MethodName, ServiceName};

/// At most this many instance subjects are kept per method; instances come and go, so
/// the list starts over when it is full.
const MAX_INSTANCE_TARGETS: usize = 64;

/// Where one attempt goes.
#[derive(Debug)]
pub(super) struct Target {
    /// Shared bytes: each attempt sends it without a copy.
    pub(super) subject: async_nats::Subject,
    /// The instance addressed, or `None` for the service's shared subject.
    pub(super) instance: Option<InstanceId>,
}

/// A method a client has called.
#[derive(Debug)]
pub(crate) struct KnownMethod {
    pub(super) name: MethodName,
    pub(super) metrics: CallMetrics,
    service: ServiceName,
    /// `rpc.{service}.{method}`, served by the service's queue group.
    shared: Arc<Target>,
    /// `rpc.{service}.{instance}.{method}` of the instances called so far.
    by_instance: Mutex<Vec<Arc<Target>>>,
}

impl KnownMethod {
    pub(super) fn new(service: &ServiceName, name: MethodName) -> Self {
        Self {
            metrics: CallMetrics::new(service, name.as_str()),
            shared: Arc::new(Target {
                subject: subject::rpc(service, &name).into(),
                instance: None,
            }),
            service: service.clone(),
            by_instance: Mutex::default(),
            name,
        }
    }

    /// The service's shared subject for this method.
    pub(super) fn shared(&self) -> Arc<Target> {
        self.shared.clone()
    }

    /// The subject of this method on `instance`.
    pub(super) fn on_instance(&self, instance: &InstanceId) -> Arc<Target> {
        let Ok(mut known) = self.by_instance.lock() else {
            return Arc::new(self.make(instance));
        };
        if let Some(target) = known.iter().find(|t| t.instance.as_ref() == Some(instance)) {
            return target.clone();
        }
        if known.len() >= MAX_INSTANCE_TARGETS {
            known.clear();
        }
        let target = Arc::new(self.make(instance));
        known.push(target.clone());
        target
    }

    fn make(&self, instance: &InstanceId) -> Target {
        Target {
            subject: subject::rpc_instance(&self.service, instance, &self.name).into(),
            instance: Some(instance.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_made_once_per_instance_and_bounded() {
        let service = ServiceName::new("orders").expect("name");
        let method = KnownMethod::new(&service, MethodName::new("place").expect("name"));
        assert_eq!(method.shared().subject.as_str(), "rpc.orders.place");
        let a = InstanceId::new("orders-a").expect("id");
        let first = method.on_instance(&a);
        assert_eq!(first.subject.as_str(), "rpc.orders.orders-a.place");
        assert!(Arc::ptr_eq(&first, &method.on_instance(&a)), "made once");
        for n in 0..2 * MAX_INSTANCE_TARGETS {
            let other = InstanceId::new(format!("orders-{n}")).expect("id");
            assert_eq!(method.on_instance(&other).instance.as_ref(), Some(&other));
        }
        let kept = method.by_instance.lock().map(|k| k.len()).unwrap_or(0);
        assert!(kept <= MAX_INSTANCE_TARGETS, "{kept}");
    }
}
