struct Svc;

impl Svc {
    #[aegis_runtime::schedule(every = "1s")]
    async fn tick(&self) {}
}

fn main() {}
