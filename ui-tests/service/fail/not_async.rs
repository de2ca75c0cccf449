struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    fn ping(&self) {}
}

fn main() {}
