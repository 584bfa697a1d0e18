//! The pending authorization between `authorize` and `callback`: what the callback needs
//! (PKCE verifier, DPoP key, issuer, client auth, redirect URI, app state), sealed at rest
//! under the SHA-256 of the `state` parameter.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::client_metadata::ClientAuth;
use super::error::OAuthError;
use crate::crypto::AtRestKeyring;
use crate::oauth::wire::jose::Jwk;
use crate::secret::TokenHash;
use crate::store::oauth::{GrantId, StoredAuthState};
use crate::syntax::Did;

/// A pending authorization.
#[derive(Serialize, Deserialize)]
pub(crate) struct AuthState {
    pub(crate) issuer: String,
    pub(crate) dpop_key: Jwk,
    pub(crate) auth: ClientAuth,
    pub(crate) verifier: String,
    pub(crate) redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) app_state: Option<String>,
    /// Hex SHA-256 of the browser binding value, if the login was bound to a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) binding: Option<String>,
    /// Set when this authorization upgrades the scope of an existing grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upgrade: Option<UpgradeTarget>,
}

/// The grant a scope upgrade is for, and its account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpgradeTarget {
    pub(crate) grant_id: GrantId,
    pub(crate) did: Did,
}

impl Drop for AuthState {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.verifier.zeroize();
    }
}

fn row_key(key: &TokenHash) -> Vec<u8> {
    let mut k = b"atsession/oauth-state/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl AuthState {
    /// Checks the browser binding of a bound login (in constant time).
    pub(crate) fn check_binding(
        &self,
        given: Option<&crate::secret::SecretString>,
    ) -> Result<(), super::error::CallbackError> {
        use super::error::CallbackError;
        let Some(expected) = &self.binding else {
            return Ok(());
        };
        let given = given.ok_or(CallbackError::NoBrowserBinding)?;
        let hash = TokenHash::of(given.expose().as_bytes()).to_hex();
        if crate::secret::ct_eq(hash.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(CallbackError::OtherBrowser)
        }
    }

    pub(crate) fn seal(
        &self,
        keyring: &AtRestKeyring,
        key: TokenHash,
        expires_at: OffsetDateTime,
    ) -> Result<StoredAuthState, OAuthError> {
        let json = Zeroizing::new(
            serde_json::to_vec(self).map_err(|_| OAuthError::Corrupt("cannot serialize"))?,
        );
        Ok(StoredAuthState {
            key,
            sealed: keyring.seal(&row_key(&key), &json)?,
            expires_at,
        })
    }

    pub(crate) fn open(
        stored: &StoredAuthState,
        keyring: &AtRestKeyring,
    ) -> Result<Self, OAuthError> {
        let json = keyring.open(&row_key(&stored.key), &stored.sealed)?;
        serde_json::from_slice(&json).map_err(|_| OAuthError::Corrupt("the state does not parse"))
    }
}
