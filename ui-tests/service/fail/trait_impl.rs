#[derive(Default)]
struct Svc;

#[aegis_runtime::service]
impl Clone for Svc {
    fn clone(&self) -> Self {
        Svc
    }
}

fn main() {}
