struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[subscribe("events.orders.created", mode = "fanout")]
    async fn on_created(&self, _event: aegis_runtime::Event<u32>) {}
}

fn main() {}
