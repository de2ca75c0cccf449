//! Names, NATS subjects and KV keys of the Aegis protocol: the one place where their formats
//! live.
//!
//! | what | format |
//! | --- | --- |
//! | RPC (any instance) | `rpc.{service}.{method}`, queue group `rpc.{service}` |
//! | RPC (one instance) | `rpc.{service}.{instance}.{method}` |
//! | event | `events.{domain}.{event_type}` |
//! | command | `commands.{service}.{command}` |
//! | command progress | `commands.progress.{command_id}` |
//! | command completion | `commands.callback.{command_id}` |
//! | registry entry | bucket `service_registry`, key `service-instances.{service}.{instance}` |
//! | leader key | bucket `sticky_active`, key `sticky-active.{service}.{group}.leader` |
//! | micro (ADR-32) `PING`, `INFO`, `STATS` | `$SRV.{VERB}`, `$SRV.{VERB}.{service}`, `$SRV.{VERB}.{service}.{instance}` |
//!
//! Every builder takes validated names ([`ServiceName`], [`MethodName`], ...), so a subject
//! built here never has an empty token, a stray dot or a wildcard in it.
//!
//! ```
//! use aegis_runtime::subject::{self, MethodName, ServiceName};
//!
//! let service = ServiceName::new("order-processor")?;
//! let method = MethodName::new("process_order")?;
//! assert_eq!(subject::rpc(&service, &method), "rpc.order-processor.process_order");
//! assert_eq!(subject::rpc_queue_group(&service), "rpc.order-processor");
//! # Ok::<(), aegis_runtime::subject::InvalidName>(())
//! ```

mod names;
pub mod python_sdk;
/// The naming rules, as pure functions over `&str` (the crate `aegis-names`, shared with
/// the macros).
pub use aegis_names as rules;

pub use names::{
    EventPattern, EventToken, GroupId, InstanceId, InvalidName, MethodName, ServiceName,
};

/// Name of the KV bucket that holds one entry per live service instance.
pub const REGISTRY_BUCKET: &str = "service_registry";
/// Name of the KV bucket that holds one leader key per (service, group).
pub const STICKY_ACTIVE_BUCKET: &str = "sticky_active";
/// Name of the JetStream stream that stores events (`events.>`).
pub const EVENTS_STREAM: &str = "EVENTS";
/// Name of the JetStream work-queue stream that stores commands (`commands.>`).
pub const COMMANDS_STREAM: &str = "COMMANDS";

/// `tokens` joined by dots. Subjects are built on every call, and `format!` costs several
/// times more than this exact-size copy.
fn join(tokens: &[&str]) -> String {
    tokens.join(".")
}

/// Whether the concrete subject `subject` matches the subject filter `pattern` (NATS
/// wildcard rules: `*` one token, `>` one or more at the end).
///
/// ```
/// use aegis_runtime::subject;
///
/// assert!(subject::matches("commands.>", "commands.orders.reindex"));
/// assert!(!subject::matches("commands.*", "commands.orders.reindex"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut tokens = subject.split('.');
    loop {
        match (pattern.next(), tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Subject of an RPC served by any instance of `service`: `rpc.{service}.{method}`.
pub fn rpc(service: &ServiceName, method: &MethodName) -> String {
    join(&["rpc", service, method])
}

/// Queue group shared by all instances of `service` on their RPC subjects: `rpc.{service}`.
pub fn rpc_queue_group(service: &ServiceName) -> String {
    join(&["rpc", service])
}

/// Subject of an RPC addressed to one instance: `rpc.{service}.{instance}.{method}`.
///
/// It cannot collide with [`rpc`]: that subject has three tokens, this one four.
pub fn rpc_instance(service: &ServiceName, instance: &InstanceId, method: &MethodName) -> String {
    join(&["rpc", service, instance, method])
}

/// Subject of an event: `events.{domain}.{event_type}`.
pub fn event(domain: &EventToken, event_type: &EventToken) -> String {
    declared_event(domain, event_type)
}

/// [`event`] of tokens as a descriptor holds them (checked when the descriptor was made,
/// by `#[derive(DomainEvent)]`, not again here).
pub(crate) fn declared_event(domain: &str, event_type: &str) -> String {
    join(&["events", domain, event_type])
}

/// Subject on which `service` receives `command`: `commands.{service}.{command}`.
pub fn command(service: &ServiceName, command: &MethodName) -> String {
    join(&["commands", service, command])
}

/// Subject on which progress of one command is published: `commands.progress.{command_id}`.
///
/// `command_id` is the command envelope's `message_id`, a UUID.
pub fn command_progress(command_id: &str) -> String {
    join(&["commands", "progress", command_id])
}

/// Subject on which the outcome of one command is published: `commands.callback.{command_id}`.
pub fn command_callback(command_id: &str) -> String {
    join(&["commands", "callback", command_id])
}

/// Key of an instance's entry in [`REGISTRY_BUCKET`]: `service-instances.{service}.{instance}`.
pub fn registry_key(service: &ServiceName, instance: &InstanceId) -> String {
    join(&["service-instances", service, instance])
}

/// The service and instance a [`REGISTRY_BUCKET`] key names; `None` for a key of another
/// form (another tool's, or the Python SDK's underscore form) or with invalid names.
///
/// ```
/// use aegis_runtime::subject;
///
/// let (service, instance) = subject::parse_registry_key("service-instances.echo.echo-1").unwrap();
/// assert_eq!((service.as_str(), instance.as_str()), ("echo", "echo-1"));
/// assert!(subject::parse_registry_key("service-instances__echo__echo-1").is_none());
/// ```
pub fn parse_registry_key(key: &str) -> Option<(ServiceName, InstanceId)> {
    match key.split('.').collect::<Vec<_>>().as_slice() {
        ["service-instances", service, instance] => Some((
            ServiceName::new(*service).ok()?,
            InstanceId::new(*instance).ok()?,
        )),
        _ => None,
    }
}

/// Key filter that matches every instance of `service` in [`REGISTRY_BUCKET`].
pub fn registry_service_filter(service: &ServiceName) -> String {
    join(&["service-instances", service, "*"])
}

/// The subject a value of `key` in KV bucket `bucket` is stored on (JetStream's KV layout):
/// `$KV.{bucket}.{key}`. Publishing there is a KV put; `key` may be a filter (`*`, `>`).
///
/// ```
/// use aegis_runtime::subject;
///
/// assert_eq!(subject::kv_key("service_registry", "service-instances.echo.*"),
///            "$KV.service_registry.service-instances.echo.*");
/// ```
pub fn kv_key(bucket: &str, key: &str) -> String {
    format!("{}{key}", kv_bucket_prefix(bucket))
}

/// The JetStream API subject of a direct read of stream `stream` (its messages served by
/// any replica, ADR-31): `$JS.API.DIRECT.GET.{stream}`.
pub fn direct_get(stream: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}")
}

/// What every key subject of KV bucket `bucket` starts with: `$KV.{bucket}.`.
pub fn kv_bucket_prefix(bucket: &str) -> String {
    format!("$KV.{bucket}.")
}

/// Key of the leader of (`service`, `group`) in [`STICKY_ACTIVE_BUCKET`]:
/// `sticky-active.{service}.{group}.leader`.
pub fn leader_key(service: &ServiceName, group: &GroupId) -> String {
    join(&["sticky-active", service, group, "leader"])
}

/// The service and group a [`STICKY_ACTIVE_BUCKET`] leader key names; `None` for a key
/// of another form or with invalid names.
///
/// ```
/// use aegis_runtime::subject;
///
/// let (service, group) = subject::parse_leader_key("sticky-active.orders.default.leader").unwrap();
/// assert_eq!((service.as_str(), group.as_str()), ("orders", "default"));
/// assert!(subject::parse_leader_key("sticky-active.orders.default").is_none());
/// ```
pub fn parse_leader_key(key: &str) -> Option<(ServiceName, GroupId)> {
    match key.split('.').collect::<Vec<_>>().as_slice() {
        ["sticky-active", service, group, "leader"] => {
            Some((ServiceName::new(*service).ok()?, GroupId::new(*group).ok()?))
        }
        _ => None,
    }
}

/// Key filter that matches the leader key of every group of `service` in
/// [`STICKY_ACTIVE_BUCKET`]: `sticky-active.{service}.*.leader`.
pub fn leader_filter(service: &ServiceName) -> String {
    join(&["sticky-active", service, "*", "leader"])
}

/// The requests of the NATS micro protocol (ADR-32) every instance answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MicroVerb {
    /// `PING`: who is there.
    Ping,
    /// `INFO`: the endpoints and their metadata.
    Info,
    /// `STATS`: per-endpoint counters.
    Stats,
}

impl MicroVerb {
    /// All three.
    pub const ALL: [MicroVerb; 3] = [MicroVerb::Ping, MicroVerb::Info, MicroVerb::Stats];

    /// The verb's token in the subject.
    pub fn token(self) -> &'static str {
        match self {
            MicroVerb::Ping => "PING",
            MicroVerb::Info => "INFO",
            MicroVerb::Stats => "STATS",
        }
    }
}

/// The subjects an instance answers `verb` on: every service (`$SRV.{VERB}`), every
/// instance of its service (`$SRV.{VERB}.{service}`), and it alone
/// (`$SRV.{VERB}.{service}.{instance}`).
///
/// ```
/// use aegis_runtime::subject::{self, InstanceId, MicroVerb, ServiceName};
///
/// let service = ServiceName::new("echo")?;
/// let instance = InstanceId::new("echo-1")?;
/// assert_eq!(
///     subject::micro(MicroVerb::Stats, &service, &instance),
///     ["$SRV.STATS", "$SRV.STATS.echo", "$SRV.STATS.echo.echo-1"]
/// );
/// # Ok::<(), aegis_runtime::subject::InvalidName>(())
/// ```
pub fn micro(verb: MicroVerb, service: &ServiceName, instance: &InstanceId) -> [String; 3] {
    [
        join(&["$SRV", verb.token()]),
        join(&["$SRV", verb.token(), service]),
        join(&["$SRV", verb.token(), service, instance]),
    ]
}

/// Subject on which every instance of `service` answers a NATS micro (ADR-32) `INFO`
/// request with its endpoints and their metadata: `$SRV.INFO.{service}`.
pub fn micro_info(service: &ServiceName) -> String {
    join(&["$SRV", MicroVerb::Info.token(), service])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (ServiceName, MethodName, InstanceId, GroupId) {
        (
            ServiceName::new("order-svc").expect("valid"),
            MethodName::new("process_order").expect("valid"),
            InstanceId::new("order-svc-a").expect("valid"),
            GroupId::default(),
        )
    }

    #[test]
    fn subjects_match_the_protocol() {
        let (service, method, instance, group) = names();
        assert_eq!(rpc(&service, &method), "rpc.order-svc.process_order");
        assert_eq!(rpc_queue_group(&service), "rpc.order-svc");
        assert_eq!(
            rpc_instance(&service, &instance, &method),
            "rpc.order-svc.order-svc-a.process_order"
        );
        assert_eq!(
            command(&service, &method),
            "commands.order-svc.process_order"
        );
        assert_eq!(command_progress("c1"), "commands.progress.c1");
        assert_eq!(command_callback("c1"), "commands.callback.c1");
        assert_eq!(
            registry_key(&service, &instance),
            "service-instances.order-svc.order-svc-a"
        );
        assert_eq!(
            registry_service_filter(&service),
            "service-instances.order-svc.*"
        );
        assert_eq!(
            leader_key(&service, &group),
            "sticky-active.order-svc.default.leader"
        );
        assert_eq!(leader_filter(&service), "sticky-active.order-svc.*.leader");
        assert_eq!(micro_info(&service), "$SRV.INFO.order-svc");
        let domain = EventToken::new("sticky_active").expect("valid");
        let kind = EventToken::new("LeaderElected").expect("valid");
        assert_eq!(event(&domain, &kind), "events.sticky_active.LeaderElected");
    }

    #[test]
    fn generated_instance_ids_are_valid_and_distinct() {
        let (service, ..) = names();
        let a = InstanceId::generate(&service);
        let b = InstanceId::generate(&service);
        assert_ne!(a, b);
        for id in [&a, &b] {
            let suffix = id.strip_prefix("order-svc-").expect("prefix");
            assert_eq!(suffix.len(), 8);
            assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert_eq!(InstanceId::new(id.as_str()).as_ref(), Ok(id));
        }
    }

    #[test]
    fn patterns_match_like_nats() {
        let star = EventPattern::new("events.orders.*").expect("valid");
        assert!(star.matches("events.orders.created"));
        assert!(!star.matches("events.orders"));
        assert!(!star.matches("events.users.created"));
        let tail = EventPattern::new("events.orders.>").expect("valid");
        assert!(tail.matches("events.orders.created"));
        assert!(tail.matches("events.orders.created.v2"));
        assert!(!tail.matches("events.orders"));
        let exact = EventPattern::new("events.orders.created").expect("valid");
        assert!(exact.matches("events.orders.created"));
        assert!(!exact.matches("events.orders.created.x"));
    }

    #[test]
    fn names_validate_when_deserialized() {
        let ok: ServiceName = serde_json::from_str("\"order-svc\"").expect("valid");
        assert_eq!(ok, "order-svc");
        let err = serde_json::from_str::<ServiceName>("\"order.svc\"").expect_err("invalid");
        assert!(err.to_string().contains("invalid service name"), "{err}");
    }

    #[test]
    fn invalid_names_report_value_and_rule() {
        let err = MethodName::new("Process").expect_err("invalid");
        assert_eq!(err.kind(), rules::NameKind::Method);
        let message = err.to_string();
        assert!(message.contains("\"Process\""), "{message}");
        assert!(message.contains("^[a-z][a-z0-9_]*$"), "{message}");
    }
}
