// Both names are checked, and both errors reported at once.
#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
#[event(domain = "orders.eu", event_type = "")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
