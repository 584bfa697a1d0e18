//! XRPC errors: what a PDS's non-2xx answer says (its `error` name and `message`, or a
//! missing scope), read from a [`PdsResponse`] or a buffered answer.

use serde::de::DeserializeOwned;

use super::getter::GrantError;
use crate::oauth::discovery::metadata::truncate;
use crate::oauth::wire::pds_response::PdsResponse;

/// How much of an error answer is read to find the XRPC error name and message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

impl PdsResponse {
    /// The response itself if its status is 2xx; otherwise [`GrantError::Xrpc`] with the
    /// XRPC error name and the server's message (read from the first 64 KiB of the body).
    pub async fn error_for_status(mut self) -> Result<Self, GrantError> {
        if self.status().is_success() {
            return Ok(self);
        }
        let status = self.status().as_u16();
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match self.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) | Err(_) => break,
            }
        }
        Err(xrpc_error(status, &body))
    }

    /// The JSON answer as `T` (2xx), or [`GrantError::Xrpc`].
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, GrantError> {
        let body = self.error_for_status().await?.bytes().await;
        let body = body.map_err(|e| GrantError::OAuth(e.into()))?;
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(GrantError::InvalidResponse)
    }
}

/// The error of a non-2xx XRPC answer: its status, the `error` name and the `message`.
pub(crate) fn xrpc_error(status: u16, body: &[u8]) -> GrantError {
    let body: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(|v| v.as_str())
            .map(truncate)
    };
    let raw = |k: &str| body.as_ref().and_then(|b| b.get(k)?.as_str());
    if let Some(scope) =
        crate::oauth::scope::scope_missing(status, raw("error").unwrap_or_default(), raw("message"))
    {
        return GrantError::ScopeMissing {
            scope,
            message: field("message"),
        };
    }
    GrantError::Xrpc {
        status,
        error: field("error").unwrap_or_else(|| "unknown".to_owned()),
        message: field("message"),
    }
}
