struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn configured(&self) {}
}

fn main() {}
