//! The reply of an exclusive (single-active) method, nested in a successful RPC response.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::check_success_matches_error;
use super::{BrokenRule, WireMessage};

/// What an `#[exclusive_rpc]` method returns inside `RpcResponse::result`, as the Python SDK
/// nests it: the outer response is successful and this says whether the method ran.
///
/// ```
/// use aegis_runtime::codec::ExclusiveReply;
///
/// let standby: ExclusiveReply = ExclusiveReply::not_active("order-svc-b is STANDBY");
/// assert!(standby.is_not_active());
/// let leader = ExclusiveReply::ok(42);
/// assert_eq!(leader.into_result(), Ok(Some(42)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusiveReply<R = Value> {
    /// Whether the method ran and returned normally.
    pub success: bool,
    /// An error code: [`ExclusiveReply::NOT_ACTIVE`] or [`ExclusiveReply::EXECUTION_ERROR`].
    pub error: Option<String>,
    /// A human-readable explanation of the error.
    pub message: Option<String>,
    /// The method's result on success.
    pub result: Option<R>,
}

impl<R> ExclusiveReply<R> {
    /// Error code of a call that reached an instance which is not the active one: the
    /// method did not run.
    pub const NOT_ACTIVE: &'static str = "NOT_ACTIVE";
    /// Error code of a call whose method ran and failed.
    pub const EXECUTION_ERROR: &'static str = "EXECUTION_ERROR";

    /// The method ran and returned `result`.
    pub fn ok(result: R) -> Self {
        Self {
            success: true,
            error: None,
            message: None,
            result: Some(result),
        }
    }

    /// The instance is not active; the method did not run.
    pub fn not_active(message: impl Into<String>) -> Self {
        Self::failure(Self::NOT_ACTIVE, message)
    }

    /// The method ran and failed with `message`.
    pub fn execution_error(message: impl Into<String>) -> Self {
        Self::failure(Self::EXECUTION_ERROR, message)
    }

    fn failure(code: &str, message: impl Into<String>) -> Self {
        Self {
            success: false,
            error: Some(code.to_owned()),
            message: Some(message.into()),
            result: None,
        }
    }

    /// Whether the call was refused because the instance is not active (so it did not run).
    pub fn is_not_active(&self) -> bool {
        self.error.as_deref() == Some(Self::NOT_ACTIVE)
    }

    /// The result on success, else the message (or the code when there is no message).
    ///
    /// # Errors
    /// The failure message when `success` is false.
    pub fn into_result(self) -> Result<Option<R>, String> {
        if self.success {
            Ok(self.result)
        } else {
            Err(self.message.or(self.error).unwrap_or_default())
        }
    }
}

impl<R: DeserializeOwned> WireMessage for ExclusiveReply<R> {
    const NAME: &'static str = "exclusive reply";

    fn check(&self) -> Result<(), BrokenRule> {
        check_success_matches_error(self.success, self.error.as_deref())
    }
}
