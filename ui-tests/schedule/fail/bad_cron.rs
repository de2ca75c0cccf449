struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[schedule(cron = "every five minutes")]
    async fn words(&self) {}

    #[schedule(cron = "0 61 * * * *")]
    async fn minute_out_of_range(&self) {}
}

fn main() {}
