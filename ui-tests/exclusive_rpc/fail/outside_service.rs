struct Svc;

impl Svc {
    #[aegis_runtime::exclusive_rpc]
    async fn handler(&self) {}
}

fn main() {}
