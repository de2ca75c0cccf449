#[derive(serde::Serialize, serde::Deserialize)]
struct Created {
    id: String,
}

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[subscribe("events.orders.*")]
    async fn on_created(&self, _event: aegis_runtime::Event<Created>) {}
}

fn main() {}
