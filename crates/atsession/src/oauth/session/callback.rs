//! The getter's callback: the client's callback, and for a scope upgrade the
//! [`SessionEvent::Updated`] that tells the app the grant's scope changed.

use super::events::SessionEvent;
use super::getter::{SessionGetter, token_info};
use crate::oauth::client::error::OAuthError;
use crate::oauth::client::{Callback, CallbackParams};
use crate::store::oauth::{GrantStore, StateStore};

impl<S> SessionGetter<S>
where
    S: StateStore + GrantStore + Clone,
{
    /// [`OAuthClient::callback`](crate::oauth::OAuthClient::callback), and for a scope upgrade, a [`SessionEvent::Updated`]
    /// whose [`previous_scope`](crate::oauth::TokenSetInfo::previous_scope) is the scope before
    /// (when it changed).
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::{CallbackError, CallbackParams, OAuthError};
    ///
    /// let (getter, _) = demo_getter().await;
    /// let params = CallbackParams::from_query("state=unknown&iss=x&code=c").unwrap();
    /// assert!(matches!(
    ///     getter.callback(&params).await,
    ///     Err(OAuthError::Callback(CallbackError::UnknownState))
    /// ));
    /// # }
    /// ```
    pub async fn callback(&self, params: &CallbackParams) -> Result<Callback, OAuthError> {
        let done = self.client().callback(params).await?;
        if let Some(up) = &done.upgrade {
            let mut info = token_info(&done.grant, up.version);
            if info.scope != up.previous_scope {
                info.previous_scope = Some(up.previous_scope.clone());
            }
            self.emit(SessionEvent::Updated(info));
        }
        Ok(done)
    }
}
