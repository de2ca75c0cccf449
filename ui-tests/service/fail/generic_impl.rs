struct Svc<T>(T);

#[aegis_runtime::service]
impl<T: Send + Sync + 'static> Svc<T> {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {}
