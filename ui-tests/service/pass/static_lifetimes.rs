//! `'static` lifetimes own their data: they are not refused as borrowed payloads.
use std::borrow::Cow;

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn echo(&self, text: Cow<'static, str>) -> Cow<'static, str> {
        text
    }
}

fn main() {}
