struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[schedule(every = "1s", mode = "leader")]
    async fn mode(&self) {}

    #[schedule(every = "1s", missed = "burst")]
    async fn missed(&self) {}
}

fn main() {}
