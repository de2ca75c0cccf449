#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
