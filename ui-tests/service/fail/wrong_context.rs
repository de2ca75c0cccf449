use aegis_runtime::EventContext;

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn ping(&self, _ctx: &EventContext) {}
}

fn main() {}
