struct Svc;

impl Svc {
    #[aegis_runtime::subscribe("events.orders.created")]
    async fn handler(&self) {}
}

fn main() {}
