use aegis_runtime::Service;

struct HTTPGateway;

#[aegis_runtime::service]
impl HTTPGateway {
    #[rpc]
    async fn ping(&self) {}
}

fn main() {
    let definition = HTTPGateway::definition();
    assert_eq!(definition.name, "http-gateway");
    assert_eq!(definition.version, env!("CARGO_PKG_VERSION"));
}
