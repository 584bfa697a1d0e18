//! The client's identity: its metadata document, and how it authenticates.
//!
//! Two kinds of client:
//! - a **loopback** (public) client, for development and command-line apps: its `client_id`
//!   is `http://localhost?redirect_uri=…&scope=…`, it authenticates with `none`, and its
//!   redirect URIs are on `http://127.0.0.1:<port>/…`. No document is published: the server
//!   derives the metadata from the `client_id`.
//! - a **confidential** web client: its `client_id` is the `https` URL of the metadata
//!   document it publishes ([`ClientMetadata::confidential`]), and it authenticates with
//!   `private_key_jwt` using the keys of its [`Keyset`](crate::oauth::client::keys::Keyset).
//!
//! ```
//! use atsession::oauth::ClientMetadata;
//!
//! let m = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto").unwrap();
//! assert_eq!(
//!     m.client_id,
//!     "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&scope=atproto"
//! );
//! ```

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::ClientConfigError;
use crate::oauth::client::keys::Jwks;
use crate::oauth::discovery::metadata::AuthMethodKind;
use crate::oauth::scope::{Scope, ScopeSet};

/// A client metadata document (the fields atproto uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// The client id: the URL of this document (or a loopback client id).
    pub client_id: String,
    /// `web` or `native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// A name to show the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Where the user may be sent back to.
    pub redirect_uris: Vec<String>,
    /// `authorization_code` and `refresh_token`.
    pub grant_types: Vec<String>,
    /// `code`.
    pub response_types: Vec<String>,
    /// The scopes the client may ask for, space-separated; `atproto` among them.
    pub scope: String,
    /// `none` or `private_key_jwt`.
    pub token_endpoint_auth_method: AuthMethodKind,
    /// `ES256` for `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// Always `true` in atproto.
    pub dpop_bound_access_tokens: bool,
    /// The public keys, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// Where the public keys are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// Checks a client's declared scope: valid, with `atproto`.
fn check_scope(scope: &str) -> Result<(), ClientConfigError> {
    let set = ScopeSet::parse(scope).map_err(ClientConfigError::InvalidClientScope)?;
    if set.contains(&Scope::Atproto) {
        Ok(())
    } else {
        Err(ClientConfigError::Scope)
    }
}

/// The first scope of `asked` (space-separated) that is not literally one of `declared`,
/// as the authorization server compares them.
///
/// ```
/// use atsession::oauth::first_undeclared;
///
/// let declared = "atproto repo:com.example.note?action=create repo:app.bsky.feed.post";
/// assert_eq!(first_undeclared("atproto repo:app.bsky.feed.post", declared), None);
/// assert_eq!(
///     first_undeclared("atproto repo:app.bsky.feed.like", declared),
///     Some("repo:app.bsky.feed.like")
/// );
/// ```
#[must_use]
pub fn first_undeclared<'a>(asked: &'a str, declared: &str) -> Option<&'a str> {
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .find(|a| !declared.split(' ').any(|d| d == *a))
}

impl ClientMetadata {
    /// A loopback (public) client: for command-line apps and development.
    pub fn loopback(redirect_uris: &[&str], scope: &str) -> Result<Self, ClientConfigError> {
        if redirect_uris.is_empty() {
            return Err(ClientConfigError::NoRedirectUri);
        }
        for r in redirect_uris {
            let u = Url::parse(r).map_err(|_| ClientConfigError::LoopbackRedirect)?;
            let host_ok = matches!(u.host_str(), Some("127.0.0.1" | "[::1]"));
            if u.scheme() != "http" || !host_ok || u.fragment().is_some() {
                return Err(ClientConfigError::LoopbackRedirect);
            }
        }
        check_scope(scope)?;
        let mut id = Url::parse("http://localhost").map_err(|_| ClientConfigError::ClientId)?;
        {
            let mut q = id.query_pairs_mut();
            for r in redirect_uris {
                q.append_pair("redirect_uri", r);
            }
            q.append_pair("scope", scope);
        }
        // `Url` writes `http://localhost/?…`; the loopback client id has no path.
        let client_id = id
            .as_str()
            .replacen("http://localhost/?", "http://localhost?", 1);
        Ok(Self {
            client_id,
            application_type: Some("native".into()),
            client_name: None,
            client_uri: None,
            redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            scope: scope.to_owned(),
            token_endpoint_auth_method: AuthMethodKind::None,
            token_endpoint_auth_signing_alg: None,
            dpop_bound_access_tokens: true,
            jwks: None,
            jwks_uri: None,
        })
    }

    /// A confidential web client authenticating with `private_key_jwt`. `client_id` is the
    /// `https` URL where [`serde_json::to_string`] of the result is served; pass the public
    /// keys inline (`jwks`, from [`Keyset::public_jwks`](crate::oauth::client::keys::Keyset::public_jwks))
    /// or set [`jwks_uri`](Self::jwks_uri) afterwards.
    pub fn confidential(
        client_id: &str,
        redirect_uris: &[&str],
        scope: &str,
        jwks: Option<Jwks>,
        jwks_uri: Option<&str>,
    ) -> Result<Self, ClientConfigError> {
        let id = Url::parse(client_id).map_err(|_| ClientConfigError::ClientId)?;
        if id.scheme() != "https" {
            return Err(ClientConfigError::ClientId);
        }
        if redirect_uris.is_empty() {
            return Err(ClientConfigError::NoRedirectUri);
        }
        for r in redirect_uris {
            Url::parse(r).map_err(|_| ClientConfigError::InvalidRedirectUri)?;
        }
        check_scope(scope)?;
        if jwks.is_none() && jwks_uri.is_none() {
            return Err(ClientConfigError::NoKeys);
        }
        Ok(Self {
            client_id: client_id.to_owned(),
            application_type: Some("web".into()),
            client_name: None,
            client_uri: id.host_str().map(|h| format!("https://{h}")),
            redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            scope: scope.to_owned(),
            token_endpoint_auth_method: AuthMethodKind::PrivateKeyJwt,
            token_endpoint_auth_signing_alg: Some("ES256".into()),
            dpop_bound_access_tokens: true,
            jwks,
            jwks_uri: jwks_uri.map(str::to_owned),
        })
    }
}

/// How one grant authenticates its client: recorded with the grant, so that refreshes and
/// revocation use the same method and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public client.
    None,
    /// A confidential client, with the id of the key that signed its assertions.
    PrivateKeyJwt {
        /// The key id.
        kid: String,
    },
}

impl ClientAuth {
    /// The method's kind.
    #[must_use]
    pub fn kind(&self) -> AuthMethodKind {
        match self {
            Self::None => AuthMethodKind::None,
            Self::PrivateKeyJwt { .. } => AuthMethodKind::PrivateKeyJwt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_clients() {
        let m = ClientMetadata::loopback(
            &["http://127.0.0.1:1234/cb", "http://[::1]:1234/cb"],
            "atproto transition:generic",
        )
        .unwrap();
        assert!(m.client_id.starts_with("http://localhost?redirect_uri="));
        assert!(m.client_id.ends_with("&scope=atproto+transition%3Ageneric"));
        assert_eq!(m.token_endpoint_auth_method, AuthMethodKind::None);
        for bad in [
            "https://127.0.0.1/cb",
            "http://localhost:1/cb",
            "http://example.com/cb",
        ] {
            assert!(
                matches!(
                    ClientMetadata::loopback(&[bad], "atproto"),
                    Err(ClientConfigError::LoopbackRedirect)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            ClientMetadata::loopback(&["http://127.0.0.1/cb"], "openid"),
            Err(ClientConfigError::Scope)
        ));
        assert!(matches!(
            ClientMetadata::loopback(&["http://127.0.0.1/cb"], "atproto repo:app.bsky.*"),
            Err(ClientConfigError::InvalidClientScope(_))
        ));
        // The loopback client id declares the scope the server will check requests against.
        let m = ClientMetadata::loopback(
            &["http://127.0.0.1/cb"],
            "atproto repo:com.example.note?action=create",
        )
        .unwrap();
        let declared = url::Url::parse(&m.client_id)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned());
        assert_eq!(declared.as_deref(), Some(m.scope.as_str()));
    }

    #[test]
    fn confidential_document() {
        let jwks = Jwks { keys: vec![] };
        let m = ClientMetadata::confidential(
            "https://app.example/client-metadata.json",
            &["https://app.example/callback"],
            "atproto",
            Some(jwks),
            None,
        )
        .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(v["token_endpoint_auth_signing_alg"], "ES256");
        assert_eq!(v["dpop_bound_access_tokens"], true);
        assert_eq!(v["application_type"], "web");
        assert!(v.get("jwks_uri").is_none());
        assert!(matches!(
            ClientMetadata::confidential(
                "http://app.example/m.json",
                &["https://a/cb"],
                "atproto",
                None,
                Some("https://a/jwks")
            ),
            Err(ClientConfigError::ClientId)
        ));
        assert!(matches!(
            ClientMetadata::confidential(
                "https://app.example/m.json",
                &["https://a/cb"],
                "atproto",
                None,
                None
            ),
            Err(ClientConfigError::NoKeys)
        ));
        let auth = ClientAuth::PrivateKeyJwt { kid: "k1".into() };
        assert_eq!(
            serde_json::to_value(&auth).unwrap(),
            serde_json::json!({"method": "private_key_jwt", "kid": "k1"})
        );
    }
}
