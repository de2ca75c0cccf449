struct Svc;

impl Svc {
    #[aegis_runtime::on_start]
    async fn warm_up(&self) {}
}

fn main() {}
