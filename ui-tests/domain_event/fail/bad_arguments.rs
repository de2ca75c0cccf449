#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
#[event(domain = "orders")]
struct NoType {
    order_id: String,
}

#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
#[event(domain = "orders", event_type = "created", subject = "events.orders.created")]
struct UnknownKey {
    order_id: String,
}

#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
#[event(domain = "orders", domain = "billing", event_type = "created")]
struct Twice {
    order_id: String,
}

fn main() {}
