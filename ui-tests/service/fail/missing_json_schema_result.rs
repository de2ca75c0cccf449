#[derive(serde::Serialize, serde::Deserialize)]
struct Receipt {
    id: String,
}

struct Svc;

#[aegis_runtime::service]
impl Svc {
    #[command]
    async fn place(&self) -> Result<Receipt, String> {
        Ok(Receipt { id: String::new() })
    }
}

fn main() {}
