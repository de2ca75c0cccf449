// The runtime reached through another path (a facade that re-exports it), with the macro
// told where to find it.
mod facade {
    pub use aegis_runtime::*;
}

use facade::Service;

struct Svc;

#[facade::service(crate = "crate::facade", name = "renamed")]
impl Svc {
    #[facade::rpc]
    async fn ping(&self) -> u32 {
        1
    }
}

fn main() {
    assert_eq!(Svc::definition().name, "renamed");
    let _ = SvcClient::SERVICE;
}
