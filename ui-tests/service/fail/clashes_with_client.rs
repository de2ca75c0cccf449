struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn new(&self) {}
}

fn main() {}
