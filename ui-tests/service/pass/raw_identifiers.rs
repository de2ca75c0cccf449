use aegis_runtime::Service;

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[rpc]
    async fn r#type(&self) -> u32 {
        1
    }

    #[rpc]
    async fn r#match(&self, r#in: u32) -> u32 {
        r#in
    }
}

fn main() {
    let names: Vec<&str> = Svc::definition().rpcs.iter().map(|r| r.name).collect();
    assert_eq!(names, ["type", "match"]);
}
