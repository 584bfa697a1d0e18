//! A grant's tokens at its authorization server: refresh and revocation.

use super::error::OAuthError;
use super::grant::Grant;
use super::oauth_client::OAuthClient;
use super::server::Agent;
use super::token::TokenSet;
use crate::clock::truncate_ms;
use crate::oauth::discovery::metadata::AuthorizationServer;
use crate::store::oauth::{GrantId, GrantStore, StateStore};

impl<S: StateStore + GrantStore> OAuthClient<S> {
    async fn agent_server(&self, grant: &Grant) -> Result<AuthorizationServer, OAuthError> {
        Ok(self
            .core
            .servers
            .server(&grant.token_set.iss, grant.auth.kind(), false)
            .await?)
    }

    /// Sends a refresh for `session` and checks the answer (the account must not change).
    /// Stores nothing: the session layer decides what to do with the result.
    pub async fn refresh(&self, grant: &Grant) -> Result<TokenSet, OAuthError> {
        let refresh = grant
            .token_set
            .refresh_token
            .as_ref()
            .ok_or(OAuthError::NoRefreshToken)?;
        let server = self.agent_server(grant).await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &grant.auth,
            key: &grant.dpop_key,
        };
        let r = agent.refresh(refresh.expose()).await?;
        if r.sub != grant.token_set.sub {
            // Tokens for another account: nobody may hold them.
            let _ = agent.revoke(r.access_token.expose()).await;
            return Err(OAuthError::SubjectChanged);
        }
        Ok(TokenSet {
            iss: grant.token_set.iss.clone(),
            sub: r.sub,
            aud: grant.token_set.aud.clone(),
            scope: r.scope,
            access_token: r.access_token,
            // A server that does not rotate keeps the old refresh token valid.
            refresh_token: r
                .refresh_token
                .or_else(|| grant.token_set.refresh_token.clone()),
            expires_at: r.expires_at.map(truncate_ms),
        })
    }

    /// Revokes `session`'s tokens at its authorization server (the access token, then the
    /// refresh token). Stores nothing.
    pub async fn revoke_tokens(&self, grant: &Grant) -> Result<(), OAuthError> {
        let server = self.agent_server(grant).await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &grant.auth,
            key: &grant.dpop_key,
        };
        let first = agent.revoke(grant.token_set.access_token.expose()).await;
        let second = match &grant.token_set.refresh_token {
            Some(r) => agent.revoke(r.expose()).await,
            None => Ok(()),
        };
        first.and(second)
    }

    /// Logs a grant out: revokes its tokens at the server, then deletes it, even when
    /// revoking failed (that error is returned after the delete). `Ok(false)` if there was
    /// no such grant.
    pub async fn revoke(&self, grant: &GrantId) -> Result<bool, OAuthError> {
        let Some(stored) = self.store.load_grant(grant).await? else {
            return Ok(false);
        };
        let revoked = match Grant::open(&stored, &self.core.keyring) {
            Ok(session) => self.revoke_tokens(&session).await,
            Err(e) => Err(e),
        };
        self.store.delete_grant(grant).await?;
        revoked.map(|()| true)
    }
}
