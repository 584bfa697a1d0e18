//! Requests to an authorization server's endpoints (PAR, token, revocation), each with a
//! DPoP proof, the client's authentication, and the nonce retry.

use reqwest::header::CONTENT_TYPE;
use url::Url;

use super::client_metadata::ClientAuth;
use super::error::OAuthError;
use super::oauth_client::Core;
use super::token::{TokenResponse, parse_token_response};
use crate::oauth::discovery::metadata::{AuthorizationServer, truncate};
use crate::oauth::wire::dpop::{self, DpopKey, DpopTarget};
use crate::oauth::wire::http::Fetched;
use crate::oauth::wire::jose::{JoseError, random_id};

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A client assertion's lifetime.
const ASSERTION_TTL_SECS: i64 = 60;

/// One authorization server, as seen by one grant (its DPoP key and client auth).
pub(crate) struct Agent<'a> {
    pub(crate) core: &'a Core,
    pub(crate) server: &'a AuthorizationServer,
    pub(crate) auth: &'a ClientAuth,
    pub(crate) key: &'a DpopKey,
}

impl Agent<'_> {
    /// The client authentication parameters; a fresh assertion each time.
    fn client_auth(&self) -> Result<Vec<(&'static str, String)>, OAuthError> {
        let client_id = self.core.metadata.client_id.clone();
        match self.auth {
            ClientAuth::None => Ok(vec![("client_id", client_id)]),
            ClientAuth::PrivateKeyJwt { kid } => {
                let key = self
                    .core
                    .keyset
                    .as_ref()
                    .and_then(|k| k.get(kid))
                    .ok_or(OAuthError::AuthMethodUnsatisfiable)?;
                let now = self.core.clock.now().unix_timestamp();
                let assertion = key.sign_jwt(
                    &serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
                    &serde_json::json!({
                        "iss": client_id,
                        "sub": client_id,
                        "aud": self.server.endpoints.issuer,
                        "jti": random_id(),
                        "iat": now,
                        "exp": now + ASSERTION_TTL_SECS,
                    }),
                )?;
                Ok(vec![
                    ("client_id", client_id),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()),
                    ("client_assertion", assertion),
                ])
            }
        }
    }

    /// POSTs a form to an endpoint; a non-2xx answer is [`OAuthError::Server`].
    async fn post(
        &self,
        endpoint: &'static str,
        url: &Url,
        params: &[(&str, &str)],
    ) -> Result<Fetched, OAuthError> {
        // The auth method must still be one the server accepts.
        if !self
            .server
            .metadata
            .token_endpoint_auth_methods_supported
            .iter()
            .any(|m| m == self.auth.kind().as_str())
        {
            return Err(OAuthError::AuthMethodUnsatisfiable);
        }
        // Fail early (before any request) if the key is gone.
        self.client_auth()?;
        let build = || {
            let auth = self.client_auth().map_err(|e| match e {
                OAuthError::Jose(j) => j,
                _ => JoseError::KeyMaterial,
            })?;
            let mut form: Vec<(&str, &str)> = params.to_vec();
            form.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
            let body = serde_urlencoded_form(&form);
            Ok(self
                .core
                .http
                .client
                .post(url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body))
        };
        let f = dpop::send(
            &self.core.http,
            &self.core.nonces,
            self.core.clock.as_ref(),
            self.key,
            DpopTarget::AuthorizationServer,
            "POST",
            url,
            None,
            build,
        )
        .await?;
        if f.status.is_success() {
            return Ok(f);
        }
        let body: Option<serde_json::Value> = serde_json::from_slice(&f.body).ok();
        let field = |k: &str| {
            body.as_ref()
                .and_then(|b| b.get(k))
                .and_then(|v| v.as_str())
                .map(truncate)
        };
        Err(OAuthError::Server {
            endpoint,
            status: f.status.as_u16(),
            error: field("error").unwrap_or_else(|| "unknown".to_owned()),
            description: field("error_description"),
        })
    }

    /// A pushed authorization request; returns the `request_uri`.
    pub(crate) async fn par(&self, params: &[(&str, &str)]) -> Result<String, OAuthError> {
        let f = self.post("par", &self.server.endpoints.par, params).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&f.body).map_err(|_| OAuthError::Server {
                endpoint: "par",
                status: f.status.as_u16(),
                error: "invalid_response".into(),
                description: Some("the PAR response is not JSON".into()),
            })?;
        v.get("request_uri")
            .and_then(|r| r.as_str())
            .filter(|r| !r.is_empty() && r.len() <= 2048)
            .map(str::to_owned)
            .ok_or_else(|| OAuthError::Server {
                endpoint: "par",
                status: f.status.as_u16(),
                error: "invalid_response".into(),
                description: Some("the PAR response has no request_uri".into()),
            })
    }

    /// The token request, checked.
    async fn token(&self, params: &[(&str, &str)]) -> Result<TokenResponse, OAuthError> {
        let now = self.core.clock.now();
        let f = self
            .post("token", &self.server.endpoints.token, params)
            .await?;
        Ok(parse_token_response(&f.body, now)?)
    }

    /// Exchanges an authorization code.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenResponse, OAuthError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Refreshes.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, OAuthError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Revokes a token (RFC 7009).
    pub(crate) async fn revoke(&self, token: &str) -> Result<(), OAuthError> {
        let url = self
            .server
            .endpoints
            .revocation
            .as_ref()
            .ok_or(OAuthError::NoRevocationEndpoint)?;
        self.post("revocation", url, &[("token", token)]).await?;
        Ok(())
    }
}

/// `application/x-www-form-urlencoded`.
fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
