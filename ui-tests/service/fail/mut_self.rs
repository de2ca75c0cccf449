struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[exclusive_rpc]
    async fn ping(&mut self) {}
}

fn main() {}
