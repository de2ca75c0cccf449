struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn echo(&self, s: &str) -> String {
        s.to_owned()
    }
}

fn main() {}
