//! The echo service: plain RPC, any instance answers.

use aegis_runtime::{RpcContext, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to echo.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Say {
    /// The text; must not be empty.
    pub text: String,
}

/// The echo, and who sent it back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Echoed {
    /// The text received.
    pub text: String,
    /// The instance that answered.
    pub instance_id: String,
}

/// How long [`Echo`]'s `delay` method takes before it answers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Delay {
    /// Milliseconds to wait.
    pub millis: u64,
}

/// Echoes text back.
#[derive(Debug, Default)]
pub struct Echo;

#[service(name = "echo", version = "1.0.0")]
impl Echo {
    /// Sends the text back, with the id of the instance that answered.
    #[rpc(idempotent)]
    async fn say(&self, ctx: &RpcContext, request: Say) -> Result<Echoed, String> {
        if request.text.is_empty() {
            return Err("there is nothing to echo".to_owned());
        }
        Ok(Echoed {
            text: request.text,
            instance_id: ctx.instance_id().to_owned(),
        })
    }

    /// Answers with `millis` after waiting that long: a call that stays in flight, to see
    /// what a stop does with it.
    #[rpc]
    async fn delay(&self, request: Delay) -> u64 {
        tokio::time::sleep(std::time::Duration::from_millis(request.millis)).await;
        request.millis
    }
}
