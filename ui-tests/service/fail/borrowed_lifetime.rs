use std::borrow::Cow;

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn echo(&self, text: Cow<'_, str>) -> String {
        text.into_owned()
    }
}

fn main() {}
