struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc(name = "processOrder")]
    async fn process_order(&self) {}
}

fn main() {}
