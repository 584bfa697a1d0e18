//! Server discovery: the PDS's protected-resource metadata (RFC 9728) names its
//! authorization server, whose metadata (RFC 8414) is then fetched and validated against
//! the atproto OAuth profile.
//!
//! Validation of authorization-server metadata ([`AuthorizationServerMetadata::validate`]):
//! the `issuer` equals the issuer it was fetched for, is an origin (`https` outside
//! development mode, no path, query or fragment); PAR is required and has an endpoint;
//! DPoP supports ES256K or ES256; the client's auth method is supported (with ES256 signing for
//! `private_key_jwt`); response type `code`; PKCE `S256`;
//! `authorization_response_iss_parameter_supported`; client id metadata documents; the
//! `atproto` scope; and every endpoint URL passes the URL policy.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::oauth::wire::cache::TtlCache;
use crate::oauth::wire::http::{Http, HttpError, check_url, display_url};

/// A PDS's protected-resource metadata (`/.well-known/oauth-protected-resource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource's identifier: its origin.
    pub resource: String,
    /// The authorization servers; atproto requires exactly one.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
}

/// An authorization server's metadata (`/.well-known/oauth-authorization-server`): the
/// fields atproto uses. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// The authorization endpoint (where the user is sent).
    pub authorization_endpoint: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The PAR endpoint (RFC 9126).
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// Whether PAR is required; atproto requires it.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// The revocation endpoint (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// DPoP algorithms.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Client authentication methods at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Signing algorithms for `private_key_jwt` client assertions.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// Response types.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// Grant types.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// RFC 9207: the authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// Client ids are URLs of metadata documents.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// The resources this server protects, if it lists them.
    #[serde(default)]
    pub protected_resources: Option<Vec<String>>,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodKind {
    /// A public client: no authentication.
    None,
    /// A confidential client: a JWT signed with one of its keys (RFC 7523).
    PrivateKeyJwt,
}

impl AuthMethodKind {
    /// The name in metadata documents.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Why metadata was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Fetching failed.
    #[error("fetching OAuth server metadata failed")]
    Http(#[from] HttpError),
    /// The protected-resource metadata's `resource` is not the PDS's origin.
    #[error("protected-resource metadata is for `{found}`, not `{expected}`")]
    ResourceMismatch {
        /// The PDS origin.
        expected: String,
        /// What the document said.
        found: String,
    },
    /// Not exactly one authorization server.
    #[error("the PDS names {0} authorization servers; atproto requires exactly one")]
    AuthorizationServerCount(usize),
    /// The issuer is not a valid issuer identifier (an `https` origin; `http` in development
    /// mode).
    #[error("invalid issuer identifier `{issuer}`")]
    InvalidIssuer {
        /// The issuer.
        issuer: String,
        /// Why, if the URL policy refused it.
        #[source]
        source: Option<HttpError>,
    },
    /// The metadata's `issuer` is not the issuer it was fetched for.
    #[error("metadata fetched for issuer `{expected}` names issuer `{found}`")]
    IssuerMismatch {
        /// The issuer asked for.
        expected: String,
        /// What the document said.
        found: String,
    },
    /// A required capability is missing.
    #[error("the authorization server does not meet the atproto profile: {0}")]
    Unsupported(&'static str),
    /// An endpoint URL is refused by the URL policy.
    #[error("the {endpoint} URL is refused")]
    Endpoint {
        /// Which endpoint.
        endpoint: &'static str,
        /// Why (one of the refusals [`HttpError::Url`] wraps).
        #[source]
        source: HttpError,
    },
    /// The authorization server does not list the PDS among its protected resources.
    #[error("the PDS `{pds}` is not protected by issuer `{issuer}`")]
    NotProtected {
        /// The PDS.
        pds: String,
        /// The issuer.
        issuer: String,
    },
}

/// The endpoints of a validated authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEndpoints {
    /// The issuer identifier, as the metadata states it.
    pub issuer: String,
    /// Where the user is sent.
    pub authorization: Url,
    /// The token endpoint.
    pub token: Url,
    /// The PAR endpoint.
    pub par: Url,
    /// The revocation endpoint, if any.
    pub revocation: Option<Url>,
}

/// Parses and checks an issuer identifier: an origin (scheme, host, port), nothing else.
pub(crate) fn parse_issuer(issuer: &str, dev_mode: bool) -> Result<Url, MetadataError> {
    let invalid = |source| MetadataError::InvalidIssuer {
        issuer: truncate(issuer),
        source,
    };
    let url = Url::parse(issuer).map_err(|_| invalid(Some(HttpError::UrlParse)))?;
    check_url(&url, dev_mode).map_err(|e| invalid(Some(e)))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(None));
    }
    // The identifier is the origin without a trailing slash.
    if issuer != url.origin().ascii_serialization() {
        return Err(invalid(None));
    }
    Ok(url)
}

/// Server-sent strings in errors are cut to a readable length.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl AuthorizationServerMetadata {
    /// Validates the metadata fetched for `expected_issuer` against the atproto profile, for
    /// a client authenticating with `auth`.
    pub fn validate(
        &self,
        expected_issuer: &str,
        auth: AuthMethodKind,
        dev_mode: bool,
    ) -> Result<ServerEndpoints, MetadataError> {
        if self.issuer != expected_issuer {
            return Err(MetadataError::IssuerMismatch {
                expected: truncate(expected_issuer),
                found: truncate(&self.issuer),
            });
        }
        parse_issuer(&self.issuer, dev_mode)?;
        let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
        if !self.require_pushed_authorization_requests {
            return Err(MetadataError::Unsupported(
                "require_pushed_authorization_requests is not true",
            ));
        }
        let Some(par) = &self.pushed_authorization_request_endpoint else {
            return Err(MetadataError::Unsupported("no PAR endpoint"));
        };
        if crate::oauth::wire::dpop::DpopAlg::choose(&self.dpop_signing_alg_values_supported)
            .is_none()
        {
            return Err(MetadataError::Unsupported(
                "DPoP with ES256K or ES256 is not supported",
            ));
        }
        if !has(&self.token_endpoint_auth_methods_supported, auth.as_str()) {
            return Err(MetadataError::Unsupported(match auth {
                AuthMethodKind::None => "client auth method `none` is not supported",
                AuthMethodKind::PrivateKeyJwt => {
                    "client auth method `private_key_jwt` is not supported"
                }
            }));
        }
        if auth == AuthMethodKind::PrivateKeyJwt
            && !has(
                &self.token_endpoint_auth_signing_alg_values_supported,
                "ES256",
            )
        {
            return Err(MetadataError::Unsupported(
                "ES256 client assertions are not supported",
            ));
        }
        if !has(&self.response_types_supported, "code") {
            return Err(MetadataError::Unsupported(
                "response type `code` is not supported",
            ));
        }
        if !has(&self.code_challenge_methods_supported, "S256") {
            return Err(MetadataError::Unsupported("PKCE S256 is not supported"));
        }
        if !self.authorization_response_iss_parameter_supported {
            return Err(MetadataError::Unsupported(
                "authorization_response_iss_parameter_supported is not true",
            ));
        }
        if !self.client_id_metadata_document_supported {
            return Err(MetadataError::Unsupported(
                "client_id_metadata_document_supported is not true",
            ));
        }
        if !has(&self.scopes_supported, "atproto") {
            return Err(MetadataError::Unsupported(
                "scope `atproto` is not supported",
            ));
        }
        let grants = &self.grant_types_supported;
        let both_grants = has(grants, "authorization_code") && has(grants, "refresh_token");
        // An absent list means the RFC 8414 default; a present one must name both.
        if !grants.is_empty() && !both_grants {
            return Err(MetadataError::Unsupported(
                "grant types authorization_code and refresh_token are not both supported",
            ));
        }
        let endpoint = |endpoint: &'static str, s: &str| {
            Url::parse(s)
                .map_err(|_| HttpError::UrlParse)
                .and_then(|u| check_url(&u, dev_mode).map(|()| u))
                .map_err(|source| MetadataError::Endpoint { endpoint, source })
        };
        Ok(ServerEndpoints {
            issuer: self.issuer.clone(),
            authorization: endpoint("authorization", &self.authorization_endpoint)?,
            token: endpoint("token", &self.token_endpoint)?,
            par: endpoint("PAR", par)?,
            revocation: self
                .revocation_endpoint
                .as_deref()
                .map(|r| endpoint("revocation", r))
                .transpose()?,
        })
    }
}

/// A validated authorization server: its metadata and endpoints.
#[derive(Debug, Clone)]
pub struct AuthorizationServer {
    /// The metadata as fetched.
    pub metadata: AuthorizationServerMetadata,
    /// The validated endpoints.
    pub endpoints: ServerEndpoints,
}

/// Fetches and caches metadata documents.
#[derive(Debug)]
pub(crate) struct MetadataResolver {
    http: Http,
    resources: TtlCache<String, Arc<ProtectedResourceMetadata>>,
    servers: TtlCache<String, Arc<AuthorizationServerMetadata>>,
}

/// What a PDS (or entryway) URL led to.
pub(crate) enum ServiceMetadata {
    /// A PDS, protected by this issuer.
    Pds(String),
    /// No protected-resource metadata: the URL is itself an authorization server.
    Issuer(String),
}

impl MetadataResolver {
    pub(crate) fn new(http: Http, ttl: Duration) -> Self {
        Self {
            http,
            resources: TtlCache::new(ttl, 1000),
            servers: TtlCache::new(ttl, 1000),
        }
    }

    /// The issuer protecting `pds`. `Ok(None)` when the URL has no protected-resource
    /// metadata (404): it may be an authorization server itself.
    pub(crate) async fn issuer_of(
        &self,
        pds: &Url,
        fresh: bool,
    ) -> Result<ServiceMetadata, MetadataError> {
        let origin = pds.origin().ascii_serialization();
        let cached = if fresh {
            None
        } else {
            self.resources.get(&origin)
        };
        let prm = match cached {
            Some(p) => p,
            None => {
                let url = Url::parse(&format!("{origin}/.well-known/oauth-protected-resource"))
                    .map_err(|_| MetadataError::Endpoint {
                        endpoint: "protected resource metadata",
                        source: HttpError::UrlParse,
                    })?;
                let f = self.http.get(&url).await?;
                if f.status == reqwest::StatusCode::NOT_FOUND {
                    return Ok(ServiceMetadata::Issuer(origin));
                }
                if f.status != reqwest::StatusCode::OK {
                    return Err(HttpError::Status {
                        url: display_url(&url),
                        status: f.status.as_u16(),
                    }
                    .into());
                }
                let prm: ProtectedResourceMetadata = f.json(&url)?;
                let prm = Arc::new(prm);
                self.resources.insert(origin.clone(), Arc::clone(&prm));
                prm
            }
        };
        if prm.resource.trim_end_matches('/') != origin {
            return Err(MetadataError::ResourceMismatch {
                expected: origin,
                found: truncate(&prm.resource),
            });
        }
        match prm.authorization_servers.as_slice() {
            [one] => Ok(ServiceMetadata::Pds(one.clone())),
            other => Err(MetadataError::AuthorizationServerCount(other.len())),
        }
    }

    /// The validated metadata of `issuer`.
    pub(crate) async fn server(
        &self,
        issuer: &str,
        auth: AuthMethodKind,
        fresh: bool,
    ) -> Result<AuthorizationServer, MetadataError> {
        let dev = self.http.options.dev_mode;
        let issuer_url = parse_issuer(issuer, dev)?;
        let cached = if fresh {
            None
        } else {
            self.servers.get(&issuer.to_owned())
        };
        let metadata = match cached {
            Some(m) => m,
            None => {
                let mut url = issuer_url;
                url.set_path("/.well-known/oauth-authorization-server");
                let m: AuthorizationServerMetadata = self.http.get_json(&url).await?;
                // Validate before caching: a refused document is not kept.
                m.validate(issuer, auth, dev)?;
                let m = Arc::new(m);
                self.servers.insert(issuer.to_owned(), Arc::clone(&m));
                m
            }
        };
        let endpoints = metadata.validate(issuer, auth, dev)?;
        Ok(AuthorizationServer {
            metadata: (*metadata).clone(),
            endpoints,
        })
    }

    /// The validated authorization server of a PDS; checks that the server protects it
    /// when it lists its resources.
    pub(crate) async fn server_for_pds(
        &self,
        pds: &Url,
        auth: AuthMethodKind,
        fresh: bool,
    ) -> Result<AuthorizationServer, MetadataError> {
        let issuer = match self.issuer_of(pds, fresh).await? {
            ServiceMetadata::Pds(i) | ServiceMetadata::Issuer(i) => i,
        };
        let server = self.server(&issuer, auth, fresh).await?;
        if let Some(resources) = &server.metadata.protected_resources {
            let origin = pds.origin().ascii_serialization();
            if !resources.iter().any(|r| r.trim_end_matches('/') == origin) {
                return Err(MetadataError::NotProtected {
                    pds: origin,
                    issuer: truncate(&issuer),
                });
            }
        }
        Ok(server)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The metadata of the official PDS (shape of @atproto/oauth-provider's document).
    pub(crate) fn good(issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": issuer,
            "scopes_supported": ["atproto", "transition:generic", "transition:chat.bsky"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "ui_locales_supported": ["en-US"],
            "display_values_supported": ["page", "popup", "touch"],
            "request_parameter_supported": true,
            "request_uri_parameter_supported": true,
            "require_request_uri_registration": true,
            "jwks_uri": format!("{issuer}/oauth/jwks"),
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "ES256K"],
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "pushed_authorization_request_endpoint": format!("{issuer}/oauth/par"),
            "require_pushed_authorization_requests": true,
            "dpop_signing_alg_values_supported": ["RS256", "ES256", "ES256K"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": true,
            "protected_resources": [issuer]
        })
    }

    fn check(
        doc: serde_json::Value,
        issuer: &str,
        auth: AuthMethodKind,
        dev: bool,
    ) -> Result<ServerEndpoints, MetadataError> {
        let m: AuthorizationServerMetadata = serde_json::from_value(doc).unwrap();
        m.validate(issuer, auth, dev)
    }

    #[test]
    fn accepts_the_official_shape() {
        let iss = "https://bsky.social";
        let e = check(good(iss), iss, AuthMethodKind::PrivateKeyJwt, false).unwrap();
        assert_eq!(e.par.as_str(), "https://bsky.social/oauth/par");
        assert_eq!(
            e.revocation.unwrap().as_str(),
            "https://bsky.social/oauth/revoke"
        );
        let local = "http://localhost:2583";
        assert!(check(good(local), local, AuthMethodKind::None, true).is_ok());
        // DPoP with either of the two curves is enough.
        for algs in [["ES256K"], ["ES256"]] {
            let mut d = good(iss);
            d["dpop_signing_alg_values_supported"] = serde_json::json!(algs);
            assert!(
                check(d, iss, AuthMethodKind::None, false).is_ok(),
                "{algs:?}"
            );
        }
    }

    #[test]
    fn refuses_hostile_documents() {
        let iss = "https://pds.example";
        let none = AuthMethodKind::None;
        let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut d = good(iss);
            f(&mut d);
            d
        };
        let cases: Vec<(&str, serde_json::Value)> = vec![
            (
                "wrong issuer",
                mutate(&|d| d["issuer"] = "https://evil.example".into()),
            ),
            (
                "issuer with slash",
                mutate(&|d| d["issuer"] = "https://pds.example/".into()),
            ),
            (
                "no PAR required",
                mutate(&|d| d["require_pushed_authorization_requests"] = false.into()),
            ),
            (
                "no PAR endpoint",
                mutate(&|d| {
                    d.as_object_mut()
                        .unwrap()
                        .remove("pushed_authorization_request_endpoint");
                }),
            ),
            (
                "no ES256 or ES256K",
                mutate(&|d| d["dpop_signing_alg_values_supported"] = serde_json::json!(["RS256"])),
            ),
            (
                "no none",
                mutate(&|d| {
                    d["token_endpoint_auth_methods_supported"] =
                        serde_json::json!(["private_key_jwt"])
                }),
            ),
            (
                "no code",
                mutate(&|d| d["response_types_supported"] = serde_json::json!(["token"])),
            ),
            (
                "no S256",
                mutate(&|d| d["code_challenge_methods_supported"] = serde_json::json!(["plain"])),
            ),
            (
                "no iss param",
                mutate(&|d| d["authorization_response_iss_parameter_supported"] = false.into()),
            ),
            (
                "no client id documents",
                mutate(&|d| {
                    d.as_object_mut()
                        .unwrap()
                        .remove("client_id_metadata_document_supported");
                }),
            ),
            (
                "no atproto scope",
                mutate(&|d| d["scopes_supported"] = serde_json::json!(["openid"])),
            ),
            (
                "http token endpoint",
                mutate(&|d| d["token_endpoint"] = "http://pds.example/oauth/token".into()),
            ),
            (
                "loopback PAR endpoint",
                mutate(&|d| {
                    d["pushed_authorization_request_endpoint"] = "https://127.0.0.1/par".into()
                }),
            ),
            (
                "no refresh grant",
                mutate(&|d| d["grant_types_supported"] = serde_json::json!(["authorization_code"])),
            ),
        ];
        for (name, doc) in cases {
            assert!(check(doc, iss, none, false).is_err(), "{name} was accepted");
        }
        // private_key_jwt needs ES256 assertions.
        let d = mutate(&|d| {
            d["token_endpoint_auth_signing_alg_values_supported"] = serde_json::json!(["RS256"])
        });
        assert!(check(d.clone(), iss, none, false).is_ok());
        assert!(check(d, iss, AuthMethodKind::PrivateKeyJwt, false).is_err());
        // An http issuer outside development mode.
        let http = "http://pds.example";
        assert!(matches!(
            check(good(http), http, none, false),
            Err(MetadataError::InvalidIssuer { .. })
        ));
        // Wrong types are a parse error, not a panic.
        assert!(
            serde_json::from_value::<AuthorizationServerMetadata>(serde_json::json!({"issuer": 5}))
                .is_err()
        );
    }

    #[test]
    fn issuer_identifiers() {
        assert!(parse_issuer("https://bsky.social", false).is_ok());
        assert!(parse_issuer("https://bsky.social/", false).is_err());
        assert!(parse_issuer("https://bsky.social/path", false).is_err());
        assert!(parse_issuer("https://bsky.social?x", false).is_err());
        assert!(parse_issuer("http://localhost:1234", false).is_err());
        assert!(parse_issuer("http://localhost:1234", true).is_ok());
        assert!(
            parse_issuer("https://BSKY.social", false).is_err(),
            "not canonical"
        );
    }
}
