//! Scope upgrade in place: ask the same account for its current scope plus more, and on
//! the callback give the *same* grant the new tokens, so the app session stays signed in.

use url::Url;

use super::authorize::{AuthorizeOptions, PendingRequest, check_app_state};
use super::client_metadata::ClientAuth;
use super::error::{CallbackError, OAuthError};
use super::grant::Grant;
use super::oauth_client::OAuthClient;
use super::server::Agent;
use super::state::UpgradeTarget;
use super::token::TokenSet;
use crate::clock::truncate_ms;
use crate::oauth::wire::dpop::DpopKey;
use crate::store::Cas;
use crate::store::oauth::{GrantId, GrantStore, StateStore};

/// How many times a scope upgrade retries its compare-and-swap when the grant changes.
const UPGRADE_ATTEMPTS: usize = 5;

/// Scope upgrade in place: ask the same account for its current scope plus more, and on
/// the callback give the *same* grant the new tokens, so the app session stays signed in.
///
/// 1. [`OAuthClient::authorize_upgrade`] loads the grant, asks its authorization server
///    for the grant's current scope (the parts the client metadata declares) plus the
///    scopes to add, with `login_hint` = the grant's DID, and seals the grant id and DID
///    into the pending state.
/// 2. [`OAuthClient::callback`] (or [`SessionGetter::callback`](crate::oauth::SessionGetter::callback), which also sends the
///    event) exchanges the code as for any login; then, instead of making a new grant:
///    - a callback signed in as another account (`sub` is not the grant's DID) touches
///      nothing: the new tokens are revoked and the error is
///      [`CallbackError::UpgradeAccountMismatch`];
///    - otherwise the grant's token set, DPoP key and client auth are replaced by
///      compare-and-swap on its version (retried if a refresh stored a newer version
///      meanwhile), and the old tokens are revoked at the server. A grant signed out
///      meanwhile is not brought back: the new tokens are revoked.
/// 3. [`SessionGetter::callback`](crate::oauth::SessionGetter::callback) sends [`SessionEvent::Updated`](crate::oauth::SessionEvent::Updated) whose
///    [`previous_scope`](crate::oauth::TokenSetInfo::previous_scope) says the scope changed. The
///    getter's opened-session cache sees the new row (its sealed bytes differ) on the next
///    read.
///
/// ```no_run
/// use atsession::oauth::{AuthorizeOptions, CallbackParams, SessionGetter};
/// use atsession::store::oauth::GrantId;
/// use atsession::store::sqlite::SqliteStore;
///
/// # async fn demo(getter: SessionGetter<SqliteStore>, grant_id: GrantId, query: &str) -> Result<(), Box<dyn std::error::Error>> {
/// // The app wants to post now: ask for one more permission, same account, same grant.
/// let url = getter
///     .client()
///     .authorize_upgrade(&grant_id, "repo:app.bsky.feed.post", AuthorizeOptions::default())
///     .await?;
/// println!("approve at {url}");
/// // Back from the server:
/// let done = getter.callback(&CallbackParams::from_query(query)?).await?;
/// assert_eq!(done.grant.grant_id, grant_id);
/// println!("scope was `{}`, now `{}`", done.upgrade.unwrap().previous_scope, done.grant.token_set.scope);
/// # Ok(()) }
/// ```
///
/// What a completed scope upgrade changed: the fields below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeUpgrade {
    /// The scope granted before.
    pub previous_scope: String,
    /// The grant's version after the update.
    pub version: u64,
}

/// The scope an upgrade asks for: the scopes of `granted` that `declared` lists (what the
/// client may ask for; the server's expansions of `include:` sets are not), then those of
/// `add`, each once, in that order.
///
/// ```
/// use atsession::oauth::upgrade_scope;
///
/// let declared = "atproto repo:com.example.note?action=create repo:app.bsky.feed.post";
/// assert_eq!(
///     upgrade_scope("atproto repo:com.example.note?action=create", "repo:app.bsky.feed.post", declared),
///     "atproto repo:com.example.note?action=create repo:app.bsky.feed.post"
/// );
/// // Already granted: asked once.
/// assert_eq!(upgrade_scope("atproto", "atproto", declared), "atproto");
/// ```
#[must_use]
pub fn upgrade_scope(granted: &str, add: &str, declared: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let declared: Vec<&str> = declared.split(' ').collect();
    for s in granted.split(' ').filter(|s| declared.contains(s)) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    for s in add.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// Starts a scope upgrade of the grant `grant_id`: an authorization at the grant's
    /// server for the same account (`login_hint` = its DID unless `options` says
    /// otherwise) asking for [`upgrade_scope`] of its current scope and `add` (or exactly
    /// `options.scope` when given), checked against the client metadata like any
    /// [`authorize`](Self::authorize). The callback then updates this grant in place (see
    /// [`ScopeUpgrade`]).
    pub async fn authorize_upgrade(
        &self,
        grant_id: &GrantId,
        add: &str,
        options: AuthorizeOptions,
    ) -> Result<Url, OAuthError> {
        check_app_state(options.app_state.as_deref())?;
        let data = self
            .grant(grant_id)
            .await?
            .ok_or_else(|| OAuthError::UnknownGrant(grant_id.clone()))?;
        let scope = options
            .scope
            .unwrap_or_else(|| upgrade_scope(&data.token_set.scope, add, &self.metadata().scope));
        let scope = self.asked_scope(Some(&scope))?;
        let redirect_uri = self.redirect_uri(options.redirect_uri)?;
        let auth = self.client_auth()?;
        let server = self
            .core()
            .servers
            .server(&data.token_set.iss, auth.kind(), false)
            .await?;
        let login_hint = options
            .login_hint
            .or_else(|| Some(data.token_set.sub.as_str().to_owned()));
        self.send_authorization(
            &server,
            PendingRequest {
                auth,
                scope,
                redirect_uri,
                login_hint,
                prompt: options.prompt,
                app_state: options.app_state,
                upgrade: Some(UpgradeTarget {
                    grant_id: grant_id.clone(),
                    did: data.token_set.sub.clone(),
                }),
                binding: options.browser_binding.map(|h| h.to_hex()),
            },
        )
        .await
    }

    /// Stores the new tokens of a scope upgrade into the grant (compare-and-swap), then
    /// revokes the old ones. On any failure the new tokens are revoked.
    pub(crate) async fn finish_upgrade(
        &self,
        target: &UpgradeTarget,
        token_set: TokenSet,
        dpop_key: &DpopKey,
        auth: &ClientAuth,
        agent: &Agent<'_>,
    ) -> Result<(Grant, ScopeUpgrade), OAuthError> {
        let revoke_new = || async {
            let _ = agent.revoke(token_set.access_token.expose()).await;
            if let Some(r) = &token_set.refresh_token {
                let _ = agent.revoke(r.expose()).await;
            }
        };
        let keyring = &self.core().keyring;
        for _ in 0..UPGRADE_ATTEMPTS {
            let stored = match self.store().load_grant(&target.grant_id).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    revoke_new().await;
                    return Err(OAuthError::UnknownGrant(target.grant_id.clone()));
                }
                Err(e) => {
                    revoke_new().await;
                    return Err(e.into());
                }
            };
            let old = match Grant::open(&stored, keyring) {
                Ok(o) => o,
                Err(e) => {
                    revoke_new().await;
                    return Err(e);
                }
            };
            if old.token_set.sub != token_set.sub {
                revoke_new().await;
                return Err(CallbackError::UpgradeAccountMismatch {
                    expected: old.token_set.sub.clone(),
                    found: token_set.sub.clone(),
                }
                .into());
            }
            let new = Grant {
                grant_id: old.grant_id.clone(),
                token_set: token_set.clone(),
                dpop_key: dpop_key.clone(),
                auth: auth.clone(),
                created_at: old.created_at,
            };
            let version = stored.version + 1;
            let now = truncate_ms(self.core().clock.now());
            let saved = match new.seal(keyring, now, version) {
                Ok(g) => self
                    .store()
                    .update_grant(stored.version, &g)
                    .await
                    .map_err(OAuthError::from),
                Err(e) => Err(e),
            };
            match saved {
                Ok(Cas::Updated) => {
                    if let Err(e) = self.revoke_tokens(&old).await {
                        tracing::warn!(grant = %old.grant_id, error = %e, "revoking the tokens replaced by a scope upgrade failed");
                    }
                    let upgrade = ScopeUpgrade {
                        previous_scope: old.token_set.scope.clone(),
                        version,
                    };
                    return Ok((new, upgrade));
                }
                Ok(Cas::Conflict) => {}
                Ok(Cas::Missing) => {
                    revoke_new().await;
                    return Err(OAuthError::UnknownGrant(target.grant_id.clone()));
                }
                Err(e) => {
                    revoke_new().await;
                    return Err(e);
                }
            }
        }
        revoke_new().await;
        Err(OAuthError::UpgradeConflict(target.grant_id.clone()))
    }
}
