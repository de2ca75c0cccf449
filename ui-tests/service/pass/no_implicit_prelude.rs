#![no_implicit_prelude]

extern crate aegis_runtime;
extern crate std;

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn ping(&self) -> ::std::string::String {
        ::std::string::String::new()
    }

    #[exclusive_rpc]
    async fn count(&self, items: u32) -> ::std::result::Result<u32, ::std::string::String> {
        ::std::result::Result::Ok(items)
    }

    #[subscribe("events.a.b")]
    async fn on_event(&self, _value: u32) {}

    #[command]
    async fn work(&self) {}
}

fn main() {}
