//! The session's opt-in scope pre-check: a call the grant's stored scope plainly does not
//! permit is refused before anything is sent.

use super::getter::{GrantError, Refresh};
use super::oauth_session::OAuthSession;
use crate::oauth::scope::{ScopeSet, precheck_xrpc};
use crate::store::oauth::{GrantStore, StateStore};

impl<S> OAuthSession<S>
where
    S: StateStore + GrantStore + Clone,
{
    /// Checks the grant's stored scope before a call to `nsid` (see [`precheck_xrpc`](crate::oauth::scope::precheck_xrpc)):
    /// `input` is the call's JSON input, `proxy` its `atproto-proxy` header, if any. A
    /// call the scope plainly does not permit is [`GrantError::ScopeMissing`] with no
    /// message (nothing is sent); anything else is left to the PDS. The stored scope is
    /// read as is (no refresh).
    ///
    /// [`xrpc_procedure`](Self::xrpc_procedure) runs this itself when
    /// [`GetterConfig::scope_check`] is on (a query sent without `atproto-proxy` needs no
    /// scope this can judge).
    ///
    /// [`GetterConfig::scope_check`]: super::getter::GetterConfig::scope_check
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::GrantError;
    /// use serde_json::json;
    ///
    /// let (getter, grant_id) = demo_getter().await; // granted "atproto transition:generic"
    /// let session = getter.session(grant_id);
    /// let post = json!({"collection": "app.bsky.feed.post", "record": {}});
    /// assert!(session.check_scope("com.atproto.repo.createRecord", Some(&post), None).await.is_ok());
    /// // transition:generic does not cover chat.bsky.
    /// let refused = session
    ///     .check_scope("chat.bsky.convo.listConvos", None, Some("did:web:api.bsky.chat#bsky_chat"))
    ///     .await;
    /// assert!(matches!(refused, Err(GrantError::ScopeMissing { message: None, .. })));
    /// # }
    /// ```
    pub async fn check_scope(
        &self,
        nsid: &str,
        input: Option<&serde_json::Value>,
        proxy: Option<&str>,
    ) -> Result<(), GrantError> {
        let data = self
            .getter()
            .get(self.grant_id(), Refresh::AcceptStale)
            .await?;
        let Ok(granted) = ScopeSet::parse_granted(&data.token_set.scope) else {
            return Ok(());
        };
        precheck_xrpc(&granted, nsid, input, proxy, None).map_err(|m| GrantError::ScopeMissing {
            scope: m.scope,
            message: None,
        })
    }

    /// [`check_scope`](Self::check_scope) when the getter is configured to check.
    pub(crate) async fn precheck_scope(
        &self,
        nsid: &str,
        body: Option<&[u8]>,
    ) -> Result<(), GrantError> {
        if !self.getter().config().scope_check {
            return Ok(());
        }
        let input: Option<serde_json::Value> = body.and_then(|b| serde_json::from_slice(b).ok());
        self.check_scope(nsid, input.as_ref(), None).await
    }
}
