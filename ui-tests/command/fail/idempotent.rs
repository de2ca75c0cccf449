struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[command(idempotent)]
    async fn reindex(&self) {}

    #[rpc(idempotent, idempotent)]
    async fn ping(&self) {}
}

fn main() {}
