//! Finishing a login: [`OAuthClient::callback`] takes the pending state, checks the
//! issuer, exchanges the code and stores the grant.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use url::Url;

use super::error::{CallbackError, OAuthError};
use super::grant::Grant;
use super::oauth_client::OAuthClient;
use super::server::Agent;
use super::state::AuthState;
use super::token::TokenSet;
use super::upgrade::ScopeUpgrade;
use crate::clock::truncate_ms;
use crate::oauth::discovery::metadata::ServiceMetadata;
use crate::oauth::wire::dpop::DpopKey;
use crate::secret::TokenHash;
use crate::store::oauth::{GrantId, GrantStore, StateStore};
use crate::syntax::Did;

/// The query parameters of an authorization response. Its `Debug` output hides `code` and
/// `state`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CallbackParams {
    /// `state`.
    pub state: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
    /// The browser's binding value (from its cookie, never from the query), for logins
    /// started with [`AuthorizeOptions::browser_binding`](crate::oauth::AuthorizeOptions::browser_binding).
    #[serde(skip)]
    pub browser_binding: Option<crate::secret::SecretString>,
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("CallbackParams")
            .field("state", &hidden(&self.state))
            .field("iss", &self.iss)
            .field("code", &hidden(&self.code))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

impl CallbackParams {
    /// Parses a query string (with or without the leading `?`). A parameter that appears
    /// twice is refused.
    pub fn from_query(query: &str) -> Result<Self, CallbackError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut p.state,
                "iss" => &mut p.iss,
                "code" => &mut p.code,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                _ => continue,
            };
            if seen.insert(k.to_string(), ()).is_some() {
                return Err(CallbackError::DuplicateParameter(k.into_owned()));
            }
            *slot = Some(v.into_owned());
        }
        Ok(p)
    }
}

/// A completed login.
#[derive(Debug)]
pub struct Callback {
    /// The new grant, stored (for a scope upgrade: the upgraded grant, same id).
    pub grant: Grant,
    /// The app state given to `authorize`.
    pub app_state: Option<String>,
    /// Set when this callback completed a scope upgrade
    /// ([`OAuthClient::authorize_upgrade`]) of an existing grant: the grant id is the one
    /// the app sessions already hold, so an app keeps its session instead of creating one.
    pub upgrade: Option<ScopeUpgrade>,
}

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// Completes a login from the authorization response's query parameters: takes the
    /// pending state (once: a replay is [`CallbackError::UnknownState`]), checks `iss`,
    /// maps `error=` responses to typed errors, exchanges the code, checks the token
    /// response, checks that `sub`'s PDS is protected by this same issuer, and stores the
    /// grant (sealed). If the grant cannot be stored, its tokens are revoked.
    pub async fn callback(&self, params: &CallbackParams) -> Result<Callback, OAuthError> {
        let state = params.state.as_deref().ok_or(CallbackError::MissingState)?;
        if state.is_empty() || state.len() > 1024 {
            return Err(CallbackError::UnknownState.into());
        }
        let now = self.core.clock.now();
        let stored = self
            .store
            .take_state(&TokenHash::of(state.as_bytes()), now)
            .await?
            .ok_or(CallbackError::UnknownState)?;
        let pending = AuthState::open(&stored, &self.core.keyring)?;
        pending.check_binding(params.browser_binding.as_ref())?;
        let app_state = pending.app_state.clone();

        // RFC 9207: the issuer is checked on error responses too.
        match params.iss.as_deref() {
            None => return Err(CallbackError::MissingIss.into()),
            Some(iss) if iss != pending.issuer => {
                return Err(CallbackError::IssuerMismatch {
                    expected: pending.issuer.clone(),
                    found: iss.chars().take(200).collect(),
                }
                .into());
            }
            Some(_) => {}
        }
        if let Some(error) = &params.error {
            let description = params
                .error_description
                .as_deref()
                .map(|d| d.chars().take(200).collect());
            return Err(if error == "access_denied" {
                CallbackError::AccessDenied {
                    description,
                    app_state,
                }
            } else {
                CallbackError::Authorization {
                    error: error.chars().take(100).collect(),
                    description,
                    app_state,
                }
            }
            .into());
        }
        let code = params.code.as_deref().ok_or(CallbackError::MissingCode)?;

        let dpop_key = DpopKey::from_jwk(&pending.dpop_key)?;
        let server = self
            .core
            .servers
            .server(&pending.issuer, pending.auth.kind(), false)
            .await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &pending.auth,
            key: &dpop_key,
        };
        let response = agent
            .exchange_code(code, &pending.verifier, &pending.redirect_uri)
            .await?;
        if let Some(target) = &pending.upgrade
            && response.sub != target.did
        {
            // Another account signed in: nobody may hold these tokens.
            let _ = agent.revoke(response.access_token.expose()).await;
            if let Some(r) = &response.refresh_token {
                let _ = agent.revoke(r.expose()).await;
            }
            return Err(CallbackError::UpgradeAccountMismatch {
                expected: target.did.clone(),
                found: response.sub,
            }
            .into());
        }

        let aud = match self.verify_issuer(&response.sub, &pending.issuer).await {
            Ok(pds) => pds,
            Err(e) => {
                let _ = agent.revoke(response.access_token.expose()).await;
                return Err(e);
            }
        };
        let token_set = TokenSet {
            iss: pending.issuer.clone(),
            sub: response.sub,
            aud: aud.to_string(),
            scope: response.scope,
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            expires_at: response.expires_at.map(truncate_ms),
        };
        if let Some(target) = &pending.upgrade {
            let (session, upgrade) = self
                .finish_upgrade(target, token_set, &dpop_key, &pending.auth, &agent)
                .await?;
            return Ok(Callback {
                grant: session,
                app_state,
                upgrade: Some(upgrade),
            });
        }
        let session = Grant {
            grant_id: GrantId::generate(),
            token_set,
            dpop_key: dpop_key.clone(),
            auth: pending.auth.clone(),
            created_at: truncate_ms(now),
        };
        let saved = match session.seal(&self.core.keyring, truncate_ms(now), 1) {
            Ok(grant) => self
                .store
                .create_grant(&grant)
                .await
                .map_err(OAuthError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            // Never leave a grant that no one holds.
            let _ = agent.revoke(session.token_set.access_token.expose()).await;
            return Err(e);
        }
        Ok(Callback {
            grant: session,
            app_state,
            upgrade: None,
        })
    }

    /// Checks that `sub`'s PDS (resolved afresh) is protected by `issuer`; returns the PDS.
    pub async fn verify_issuer(&self, sub: &Did, issuer: &str) -> Result<Url, OAuthError> {
        let doc = self.core.identity.resolve_did(sub, true).await?;
        let pds = doc.pds(sub, self.core.http.options.dev_mode)?;
        let found = match self.core.servers.issuer_of(&pds, false).await? {
            ServiceMetadata::Pds(i) | ServiceMetadata::Issuer(i) => i,
        };
        if found != issuer {
            return Err(OAuthError::WrongAuthorizationServer {
                sub: sub.clone(),
                expected: issuer.to_owned(),
                found: crate::oauth::discovery::metadata::truncate(&found),
            });
        }
        Ok(pds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_params() {
        let p =
            CallbackParams::from_query("?state=abc&iss=https%3A%2F%2Fx.example&code=c1&other=1")
                .unwrap();
        assert_eq!(p.state.as_deref(), Some("abc"));
        assert_eq!(p.iss.as_deref(), Some("https://x.example"));
        assert_eq!(p.code.as_deref(), Some("c1"));
        assert_eq!(
            CallbackParams::from_query("state=a&iss=x&iss=y"),
            Err(CallbackError::DuplicateParameter("iss".into()))
        );
        let e = CallbackParams::from_query("error=access_denied&state=s").unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
    }
}
