struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn add(&self, a: u32, b: u32) -> u32 {
        a + b
    }
}

fn main() {}
