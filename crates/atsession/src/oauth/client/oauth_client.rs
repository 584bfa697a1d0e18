//! The OAuth client: `authorize`, `callback`, `revoke`, and the calls the session layer
//! builds on (`refresh`, authenticated PDS requests).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::client_metadata::{ClientAuth, ClientMetadata, first_undeclared};
use super::config::OAuthClientConfig;
use super::error::{ClientConfigError, OAuthError};
use super::grant::Grant;
use crate::clock::Clock;
use crate::crypto::AtRestKeyring;
use crate::oauth::client::keys::{Jwks, Keyset};
use crate::oauth::discovery::identity::IdentityResolver;
use crate::oauth::discovery::metadata::{AuthMethodKind, AuthorizationServer, MetadataResolver};
use crate::oauth::scope::ScopeSet;
use crate::oauth::wire::dpop::{DpopAlg, DpopNonces};
use crate::oauth::wire::http::{Http, PdsHttp, build_client, build_pds_client};
use crate::store::oauth::{GrantId, GrantStore, StateStore};
use crate::syntax::Did;

/// The parts of a client that do not depend on the store.
pub(crate) struct Core {
    pub(crate) http: Http,
    pub(crate) pds: PdsHttp,
    /// Nonces of authorization servers (PAR, token, revocation), by origin.
    pub(crate) nonces: DpopNonces,
    /// Nonces of PDSes as resource servers, by origin: kept apart from the authorization
    /// servers' even when one origin is both, since each side rotates its own.
    pub(crate) pds_nonces: DpopNonces,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metadata: ClientMetadata,
    pub(crate) keyset: Option<Keyset>,
    pub(crate) identity: IdentityResolver,
    pub(crate) servers: MetadataResolver,
    pub(crate) keyring: AtRestKeyring,
    pub(crate) state_ttl: Duration,
    pub(crate) dpop_alg: DpopAlg,
}

/// The atproto OAuth client. Cheap to clone; clones share caches and the DPoP nonces.
///
/// `S` stores the pending authorization states and the grants (both sealed): a
/// [`MemoryStore`](crate::store::MemoryStore), a
/// [`SqliteStore`](crate::store::sqlite::SqliteStore), or your own.
pub struct OAuthClient<S> {
    pub(super) core: Arc<Core>,
    pub(super) store: S,
}

impl Core {
    /// The algorithm of a new grant's DPoP key at `server`: the configured one when offered,
    /// else the other (validated metadata offers at least one of the two).
    pub(crate) fn dpop_alg_for(&self, server: &AuthorizationServer) -> DpopAlg {
        let offered = &server.metadata.dpop_signing_alg_values_supported;
        if offered.iter().any(|a| a == self.dpop_alg.as_str()) {
            return self.dpop_alg;
        }
        DpopAlg::choose(offered).unwrap_or(DpopAlg::Es256)
    }
}

impl<S: Clone> Clone for OAuthClient<S> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
            store: self.store.clone(),
        }
    }
}

impl<S> fmt::Debug for OAuthClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.core.metadata.client_id)
            .finish_non_exhaustive()
    }
}

/// Whether `requested` may be used where `allowed` is registered: the same string, or for a
/// loopback redirect URI registered without a port, the same URI on any port (RFC 8252 §7.3).
#[must_use]
pub(crate) fn redirect_uri_allowed(allowed: &str, requested: &str) -> bool {
    if allowed == requested {
        return true;
    }
    let (Ok(a), Ok(r)) = (Url::parse(allowed), Url::parse(requested)) else {
        return false;
    };
    let loopback = matches!(a.host_str(), Some("127.0.0.1" | "[::1]"));
    loopback
        && a.scheme() == "http"
        && a.port().is_none()
        && r.scheme() == "http"
        && a.host_str() == r.host_str()
        && a.path() == r.path()
        && a.query() == r.query()
        && r.fragment().is_none()
        && r.username().is_empty()
        && r.password().is_none()
}

fn scope_has_atproto(scope: &str) -> bool {
    scope.split_ascii_whitespace().any(|s| s == "atproto")
}

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// A client. Fails on an inconsistent configuration (a `private_key_jwt` client without
    /// keys, a scope without `atproto`, …).
    pub fn new(config: OAuthClientConfig, store: S) -> Result<Self, OAuthError> {
        let m = &config.metadata;
        if !scope_has_atproto(&m.scope) {
            return Err(ClientConfigError::Scope.into());
        }
        if m.redirect_uris.is_empty() {
            return Err(ClientConfigError::NoRedirectUri.into());
        }
        if m.token_endpoint_auth_method == AuthMethodKind::PrivateKeyJwt && config.keyset.is_none()
        {
            return Err(ClientConfigError::MissingKeyset.into());
        }
        for (name, d) in [
            ("state lifetime", config.state_ttl),
            ("metadata cache lifetime", config.metadata_ttl),
        ] {
            if d.is_zero() || d > crate::clock::MAX_DURATION {
                return Err(ClientConfigError::Duration(name).into());
            }
        }
        let (client, pds_client) = match config.http_client {
            Some(c) => (c.clone(), c),
            None => (
                build_client(&config.http).map_err(ClientConfigError::Http)?,
                build_pds_client(&config.http, &config.pds).map_err(ClientConfigError::Http)?,
            ),
        };
        let pds = PdsHttp {
            client: pds_client,
            options: config.pds,
            dev_mode: config.http.dev_mode,
        };
        let http = Http {
            client,
            options: config.http,
        };
        let identity = IdentityResolver::new(http.clone(), config.identity)
            .map_err(ClientConfigError::Identity)?;
        let servers = MetadataResolver::new(http.clone(), config.metadata_ttl);
        Ok(Self {
            core: Arc::new(Core {
                http,
                pds,
                nonces: DpopNonces::new(),
                pds_nonces: DpopNonces::new(),
                clock: config.clock,
                metadata: config.metadata,
                keyset: config.keyset,
                identity,
                servers,
                keyring: config.keyring,
                state_ttl: config.state_ttl,
                dpop_alg: config.dpop_alg,
            }),
            store,
        })
    }

    /// The client's metadata (serve it as JSON at the `client_id` URL of a confidential
    /// client).
    #[must_use]
    pub fn metadata(&self) -> &ClientMetadata {
        &self.core.metadata
    }

    /// The public JWKS of a confidential client (serve it at its `jwks_uri`).
    #[must_use]
    pub fn jwks(&self) -> Option<Jwks> {
        self.core.keyset.as_ref().map(Keyset::public_jwks)
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The identity resolver (with its cache).
    #[must_use]
    pub fn identity(&self) -> &IdentityResolver {
        &self.core.identity
    }

    pub(crate) fn client_auth(&self) -> Result<ClientAuth, OAuthError> {
        match self.core.metadata.token_endpoint_auth_method {
            AuthMethodKind::None => Ok(ClientAuth::None),
            AuthMethodKind::PrivateKeyJwt => {
                let key = self
                    .core
                    .keyset
                    .as_ref()
                    .ok_or(ClientConfigError::MissingKeyset)?
                    .signing_key();
                Ok(ClientAuth::PrivateKeyJwt {
                    kid: key.kid().unwrap_or_default().to_owned(),
                })
            }
        }
    }

    /// The scope an authorization asks for: `asked`, or the client metadata's scope.
    /// Checked before anything is sent: a valid scope string, with `atproto`, every scope
    /// of it declared in the client metadata (the server refuses undeclared ones).
    pub(crate) fn asked_scope(&self, asked: Option<&str>) -> Result<String, OAuthError> {
        let scope = asked.map_or_else(|| self.core.metadata.scope.clone(), str::to_owned);
        ScopeSet::parse(&scope).map_err(ClientConfigError::InvalidScope)?;
        if !scope_has_atproto(&scope) {
            return Err(ClientConfigError::Scope.into());
        }
        if let Some(undeclared) = first_undeclared(&scope, &self.core.metadata.scope) {
            return Err(ClientConfigError::ScopeNotDeclared(undeclared.to_owned()).into());
        }
        Ok(scope)
    }

    /// The redirect URI: `asked` if it is one of the client's, else its first.
    pub(crate) fn redirect_uri(&self, asked: Option<String>) -> Result<String, OAuthError> {
        match asked {
            Some(r)
                if self
                    .core
                    .metadata
                    .redirect_uris
                    .iter()
                    .any(|allowed| redirect_uri_allowed(allowed, &r)) =>
            {
                Ok(r)
            }
            Some(_) => Err(ClientConfigError::RedirectUri.into()),
            None => Ok(self.core.metadata.redirect_uris[0].clone()),
        }
    }
    /// The stored grant with this id, opened.
    pub async fn grant(&self, grant: &GrantId) -> Result<Option<Grant>, OAuthError> {
        match self.store.load_grant(grant).await? {
            Some(g) => Ok(Some(Grant::open(&g, &self.core.keyring)?)),
            None => Ok(None),
        }
    }

    /// The grant ids of an account, oldest first.
    pub async fn grants_of(&self, did: &Did) -> Result<Vec<GrantId>, OAuthError> {
        Ok(self
            .store
            .list_grants_by_did(did)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_ports() {
        assert!(redirect_uri_allowed(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:4321/cb"
        ));
        assert!(redirect_uri_allowed(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_uri_allowed(
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:2/cb"
        ));
        assert!(!redirect_uri_allowed(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:2/other"
        ));
        assert!(!redirect_uri_allowed(
            "https://a.example/cb",
            "https://a.example:8443/cb"
        ));
    }
}
