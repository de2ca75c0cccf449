#[derive(serde::Serialize, schemars::JsonSchema, aegis_runtime::DomainEvent)]
#[event(domain = "orders", event_type = "created")]
struct OrderCreated {
    order_id: String,
}

struct Svc;

#[aegis_runtime::service(publishes = [OrderCreated, OrderCreated])]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
