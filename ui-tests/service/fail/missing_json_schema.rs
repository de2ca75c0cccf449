#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
}

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn place(&self, _order: Order) {}
}

fn main() {}
