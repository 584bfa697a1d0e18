//! Deleting the pending authorizations of logins that were never finished.
//!
//! Every `authorize` stores a state that only its callback takes. A login abandoned in the
//! browser (or a flood of `/oauth/login` requests) leaves its state behind until it expires;
//! [`OAuthClient::delete_expired_states`] removes the expired ones and
//! [`OAuthClient::spawn_cleanup`] does it periodically, next to
//! [`SessionManager::spawn_cleanup`](crate::app::SessionManager::spawn_cleanup).

use std::time::Duration;

use super::error::OAuthError;
use super::oauth_client::OAuthClient;
use crate::app::CleanupTask;
use crate::store::oauth::{GrantStore, StateStore};

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// Deletes every pending authorization that has expired; returns how many.
    pub async fn delete_expired_states(&self) -> Result<u64, OAuthError> {
        let now = self.core().clock.now();
        Ok(self.store().delete_expired_states(now).await?)
    }
}

impl<S: StateStore + GrantStore + Clone> OAuthClient<S> {
    /// Runs [`delete_expired_states`](Self::delete_expired_states) every `period` on the
    /// current tokio runtime until the returned handle is dropped. `period` is taken between
    /// 1 ms and [`MAX_DURATION`](crate::clock::MAX_DURATION).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::{ClientMetadata, OAuthClient, OAuthClientConfig};
    /// use atsession::store::MemoryStore;
    ///
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::generate("k1")?);
    /// let client = OAuthClient::new(OAuthClientConfig::new(metadata, keyring), MemoryStore::new())?;
    /// let cleanup = client.spawn_cleanup(Duration::from_secs(300));
    /// // … serve; the cleanup stops when `cleanup` is dropped.
    /// # drop(cleanup); Ok(()) }
    /// ```
    #[must_use = "the cleanup task stops when the handle is dropped"]
    pub fn spawn_cleanup(&self, period: Duration) -> CleanupTask {
        let client = self.clone();
        CleanupTask::spawn(period, "oauth states", move || {
            let client = client.clone();
            async move {
                client
                    .delete_expired_states()
                    .await
                    .map_err(|e| e.to_string())
            }
        })
    }
}
