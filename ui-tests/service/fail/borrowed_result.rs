struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn greeting(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
