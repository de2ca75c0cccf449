struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    #[exclusive_rpc]
    async fn ping(&self) {}
}

fn main() {}
