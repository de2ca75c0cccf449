// The runtime reached through another path (a facade that re-exports it), with the macro
// told where to find it.
mod facade {
    pub use aegis_runtime::*;
}

use facade::Service;

#[derive(serde::Serialize, schemars::JsonSchema, facade::DomainEvent)]
#[event(crate = "crate::facade", domain = "renamed", event_type = "pinged")]
struct Pinged;

struct Svc;

#[facade::service(crate = "crate::facade", name = "renamed", publishes = [Pinged])]
impl Svc {
    #[facade::rpc]
    async fn ping(&self) -> u32 {
        1
    }
}

fn main() {
    assert_eq!(Svc::definition().name, "renamed");
    let _ = SvcClient::SERVICE;
    assert_eq!(<Pinged as facade::DomainEvent>::EVENT_TYPE, "pinged");
}
