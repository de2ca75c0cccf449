struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[subscribe("events.orders.created")]
    async fn on_created(&self, event: aegis_runtime::Event<u32>) -> u32 {
        event.payload
    }
}

fn main() {}
