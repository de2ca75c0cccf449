struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc(name = "ping")]
    async fn first(&self) {}

    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
