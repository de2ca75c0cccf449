struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn ping(self) {}
}

fn main() {}
