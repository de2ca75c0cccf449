struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[subscribe("events.orders.created")]
    async fn on_created(&self) {}
}

fn main() {}
