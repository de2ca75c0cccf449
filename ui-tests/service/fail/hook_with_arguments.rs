struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[on_start]
    async fn warm_up(&self, _retries: u32) {}
}

fn main() {}
