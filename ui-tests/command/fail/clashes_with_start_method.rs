struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[command]
    async fn reindex(&self) {}

    #[rpc]
    async fn start_reindex(&self) {}
}

fn main() {}
