struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[command(name = "re-index")]
    async fn reindex(&self) {}
}

fn main() {}
