struct Svc;

#[aegis_runtime::service(version = "1.0")]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
