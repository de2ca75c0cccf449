struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[schedule]
    async fn no_timing(&self) {}

    #[schedule(mode = "every_instance")]
    async fn still_no_timing(&self) {}

    #[schedule(every = "1s", cron = "0 * * * * *")]
    async fn both(&self) {}

    #[schedule(every = "1s", every = "2s")]
    async fn twice(&self) {}

    #[schedule(at = "noon")]
    async fn unknown_key(&self) {}
}

fn main() {}
