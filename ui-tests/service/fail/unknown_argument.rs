struct Svc;

#[aegis_runtime::service(nmae = "svc")]
impl Svc {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
