//! Starting and completing a login: [`AtprotoAuth::start_login`] and
//! [`AtprotoAuth::complete_login`].

use http::{HeaderMap, HeaderValue};

use super::errors::{LoginError, LoginErrorCode};
use super::{AtprotoAuth, binding, local_path};
use crate::ErrorChain;
use crate::app::{CreateOptions, NewSession};
use crate::oauth::{AuthorizeOptions, CallbackParams, OAuthError, Prompt, Url};
use crate::syntax::{Did, Handle};

/// The handle recorded when the DID document names none that resolves back to the DID
/// (the atproto convention).
pub const INVALID_HANDLE: &str = "handle.invalid";

/// What a login asks for: the account, where to go afterwards, and the authorization
/// server's options. Usually read from the login route's query
/// ([`from_query`](Self::from_query)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoginRequest {
    /// A handle, DID or PDS URL.
    pub identifier: String,
    /// The local path to send the browser to after login (anything else is replaced by the
    /// configured [`after_login`](super::WebConfig::after_login)).
    pub redirect_to: Option<String>,
    /// `prompt` for the authorization server.
    pub prompt: Option<Prompt>,
    /// `login_hint` for the authorization server.
    pub login_hint: Option<String>,
}

impl LoginRequest {
    /// A login of `identifier` (a handle, DID or PDS URL).
    pub fn new(identifier: impl Into<String>) -> Self {
        Self {
            identifier: identifier.into(),
            ..Self::default()
        }
    }

    /// Reads the login route's query: `identifier` (or its alias `handle`), `redirect_to`,
    /// `prompt` (`login`, `none`, `consent`, `select_account`, `create`) and `login_hint`.
    ///
    /// ```
    /// use atsession::auth::{LoginErrorCode, LoginRequest};
    ///
    /// let r = LoginRequest::from_query("identifier=alice.bsky.social&redirect_to=%2Fhome").unwrap();
    /// assert_eq!(r.identifier, "alice.bsky.social");
    /// assert_eq!(r.redirect_to.as_deref(), Some("/home"));
    /// let e = LoginRequest::from_query("redirect_to=/home").unwrap_err();
    /// assert_eq!(e.code, LoginErrorCode::MissingIdentifier);
    /// ```
    pub fn from_query(query: &str) -> Result<Self, LoginError> {
        let (mut identifier, mut handle, mut redirect_to, mut prompt, mut login_hint) =
            (None, None, None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "identifier" => &mut identifier,
                "handle" => &mut handle,
                "redirect_to" => &mut redirect_to,
                "prompt" => &mut prompt,
                "login_hint" => &mut login_hint,
                _ => continue,
            };
            if slot.is_some() {
                return Err(LoginError::new(
                    LoginErrorCode::BadRequest,
                    format!("`{k}` is given twice"),
                ));
            }
            *slot = Some(v.into_owned());
        }
        let Some(identifier) = identifier
            .or(handle)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        else {
            return Err(LoginError::new(
                LoginErrorCode::MissingIdentifier,
                "missing `identifier` (a handle, DID or PDS URL)",
            ));
        };
        let prompt = match prompt.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(Prompt::parse(p).ok_or_else(|| {
                LoginError::new(
                    LoginErrorCode::BadRequest,
                    "unknown `prompt` (login, none, consent, select_account or create)",
                )
            })?),
        };
        Ok(Self {
            identifier,
            redirect_to,
            prompt,
            login_hint: login_hint.filter(|h| !h.trim().is_empty()),
        })
    }
}

/// A login under way: send the browser to [`authorization_url`](Self::authorization_url)
/// with [`binding_cookie`](Self::binding_cookie) set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoginStarted {
    /// The authorization server's page.
    pub authorization_url: Url,
    /// The `Set-Cookie` that binds the login to this browser (login CSRF; see the
    /// [module docs](super)).
    pub binding_cookie: HeaderValue,
}

/// A login completed: the app session exists.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoggedIn {
    /// The account.
    pub did: Did,
    /// Its handle, checked both ways ([`INVALID_HANDLE`] when it does not resolve back).
    pub handle: Handle,
    /// The new app session and its tokens.
    pub session: NewSession,
    /// The session cookie's `Set-Cookie`.
    pub set_cookie: HeaderValue,
    /// The local path the login asked to come back to (or the configured default).
    pub redirect_to: String,
}

impl AtprotoAuth {
    /// Starts a login: resolves the account, sends the pushed authorization request, and
    /// binds the login to the browser whose request `headers` are (keeping its binding when
    /// it already holds one, so that logins started in two tabs both come back).
    pub async fn start_login(
        &self,
        login: &LoginRequest,
        headers: &HeaderMap,
    ) -> Result<LoginStarted, LoginError> {
        let config = self.config();
        let (value, hash) = binding::current_or_generate(headers, self.secure());
        let options = AuthorizeOptions {
            app_state: Some(local_path(
                login.redirect_to.as_deref(),
                &local_path(Some(&config.after_login), "/"),
            )),
            redirect_uri: config.redirect_uri.clone(),
            prompt: login.prompt,
            login_hint: login.login_hint.clone(),
            browser_binding: Some(hash),
            ..AuthorizeOptions::default()
        };
        match self.client().authorize(&login.identifier, options).await {
            Ok(authorization_url) => Ok(LoginStarted {
                authorization_url,
                binding_cookie: binding::set_cookie(&value, self.secure(), config.login_ttl),
            }),
            Err(e) => {
                tracing::info!(error = %ErrorChain(&e), "login could not start");
                Err(LoginError::from_oauth(&e))
            }
        }
    }

    /// Completes a login from the callback's query string, in the browser whose request
    /// `headers` are: checks the browser binding and the authorization server's answer,
    /// stores the grant, checks the handle both ways, and creates the app session. If the
    /// session cannot be created, the new grant is signed out (revoked at its server), so
    /// that no grant is left that nobody holds.
    ///
    /// The browser binding cookie is left in place, whatever the outcome, so that another
    /// login started in the same browser can still come back (it expires on its own).
    pub async fn complete_login(
        &self,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<LoggedIn, LoginError> {
        let mut params = CallbackParams::from_query(query)
            .map_err(|e| LoginError::from_oauth(&OAuthError::from(e)))?;
        params.browser_binding = binding::from_headers(headers, self.secure());
        let done = match self.client().callback(&params).await {
            Ok(done) => done,
            Err(e) => {
                tracing::info!(error = %ErrorChain(&e), "login callback refused");
                return Err(LoginError::from_oauth(&e));
            }
        };
        let grant = done.grant.grant_id.clone();
        let did = done.grant.token_set.sub.clone();
        let handle = self.verified_handle(&did).await;
        let created = self
            .sessions()
            .create_with(
                &did,
                &handle,
                serde_json::json!({}),
                CreateOptions::new().grant_id(grant.clone()),
            )
            .await;
        let session = match created {
            Ok(new) => new,
            Err(e) => {
                // Nobody would hold the grant: sign it out (revoked at the server, deleted).
                tracing::error!(error = %e, "could not create the app session; signing the grant out");
                if let Err(r) = self.getter().sign_out(&grant).await {
                    tracing::warn!(error = %r, "signing the orphaned grant out failed");
                }
                return Err(LoginError::new(
                    LoginErrorCode::Internal,
                    "could not create the session",
                ));
            }
        };
        tracing::info!(did = %did, session = %session.session.id, "logged in");
        let redirect_to = local_path(
            done.app_state.as_deref(),
            &local_path(Some(&self.config().after_login), "/"),
        );
        Ok(LoggedIn {
            set_cookie: self.sessions().set_cookie(&session),
            did,
            handle,
            session,
            redirect_to,
        })
    }

    /// The handle the DID document names, if it resolves back to the DID; else
    /// [`INVALID_HANDLE`].
    pub async fn verified_handle(&self, did: &Did) -> Handle {
        let identity = self.client().identity();
        let claimed = match identity.resolve_did(did, false).await {
            Ok(doc) => doc.handle(),
            Err(_) => None,
        };
        if let Some(h) = claimed
            && identity.resolve_handle(&h).await.ok().as_ref() == Some(did)
        {
            return h;
        }
        Handle::new(INVALID_HANDLE).unwrap_or_else(|_| unreachable!("a valid handle"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_queries() {
        let r = LoginRequest::from_query("handle=%20alice.test%20&prompt=login&login_hint=%20")
            .unwrap();
        assert_eq!(r.identifier, "alice.test");
        assert_eq!(r.prompt, Some(Prompt::Login));
        assert_eq!(r.login_hint, None);
        for (q, code) in [
            ("", LoginErrorCode::MissingIdentifier),
            ("identifier=%20", LoginErrorCode::MissingIdentifier),
            ("identifier=a.test&prompt=never", LoginErrorCode::BadRequest),
            (
                "identifier=a.test&identifier=b.test",
                LoginErrorCode::BadRequest,
            ),
        ] {
            assert_eq!(LoginRequest::from_query(q).unwrap_err().code, code, "{q}");
        }
    }
}
