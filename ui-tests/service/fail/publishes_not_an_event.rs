// A type in `publishes` must be a domain event with a schema; each is blamed on its type.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct NotAnEvent {
    order_id: String,
}

#[derive(serde::Serialize, aegis_runtime::DomainEvent)]
#[event(domain = "orders", event_type = "created")]
struct NoSchema {
    order_id: String,
}

struct Svc;

#[aegis_runtime::service(publishes = [NotAnEvent, NoSchema])]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
