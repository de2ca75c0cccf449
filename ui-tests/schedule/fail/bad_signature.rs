use aegis_runtime::{RpcContext, ScheduleContext};

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[schedule(every = "1s")]
    async fn with_payload(&self, _count: u32) {}

    #[schedule(every = "1s")]
    async fn wrong_context(&self, _ctx: &RpcContext) {}

    #[schedule(every = "1s")]
    async fn returns_a_value(&self, _ctx: &ScheduleContext) -> u32 {
        1
    }

    #[schedule(every = "1s")]
    fn not_async(&self) {}
}

fn main() {}
