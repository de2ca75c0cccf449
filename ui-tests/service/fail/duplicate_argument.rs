struct Svc;

#[aegis_runtime::service(name = "a", name = "b")]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
