struct Svc;

impl Svc {
    #[aegis_runtime::command]
    async fn handler(&self) {}
}

fn main() {}
