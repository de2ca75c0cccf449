struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    fn first(&self) {}

    #[exclusive_rpc]
    async fn second(self) {}
}

fn main() {}
