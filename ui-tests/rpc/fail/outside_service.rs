struct Svc;

impl Svc {
    #[aegis_runtime::rpc]
    async fn handler(&self) {}
}

fn main() {}
