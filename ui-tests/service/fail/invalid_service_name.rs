struct Svc;

#[aegis_runtime::service(name = "orders.v2")]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
