struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn echo<T>(&self, value: T) -> T {
        value
    }
}

fn main() {}
