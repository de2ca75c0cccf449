struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[schedule(every = "30 parsecs")]
    async fn unknown_unit(&self) {}

    #[schedule(every = "0s")]
    async fn zero(&self) {}

    #[schedule(every = "1500us")]
    async fn sub_millisecond(&self) {}

    #[schedule(every = "1s", jitter = "2s")]
    async fn jitter_past_the_interval(&self) {}
}

fn main() {}
