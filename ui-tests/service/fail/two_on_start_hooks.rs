struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[on_start]
    async fn first(&self) {}

    #[on_start]
    async fn second(&self) {}
}

fn main() {}
