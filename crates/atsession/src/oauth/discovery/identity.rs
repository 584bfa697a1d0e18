//! Identity resolution: handle → DID → DID document → PDS.
//!
//! - Handle → DID: a DNS TXT record `_atproto.<handle>` holding `did=<did>`, else
//!   `https://<handle>/.well-known/atproto-did`; or, when configured, an XRPC
//!   `com.atproto.identity.resolveHandle` service (what tests and some apps use).
//! - DID → document: `did:plc` from a PLC directory (default `https://plc.directory`),
//!   `did:web` from `https://<host>/.well-known/did.json`.
//! - The document must claim the handle back (`alsoKnownAs` holds `at://<handle>`), and
//!   names the PDS in its `#atproto_pds` service (relative or absolute id).
//!
//! Lookups are cached for [`IdentityConfig::cache_ttl`] (5 minutes by default, never more
//! than 10).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::oauth::wire::cache::TtlCache;
use crate::oauth::wire::http::{Http, HttpError, display_url, parse_url};
use crate::syntax::{Did, Handle};

/// The public PLC directory.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";
/// The longest time an identity lookup is cached.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(10 * 60);

/// How handles are resolved to DIDs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HandleResolver {
    /// DNS TXT `_atproto.<handle>`, then HTTPS `/.well-known/atproto-did`.
    #[default]
    Standard,
    /// `GET <url>/xrpc/com.atproto.identity.resolveHandle?handle=…` on this service.
    Xrpc(Url),
}

/// Where identities are resolved.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The PLC directory for `did:plc`.
    pub plc_url: Url,
    /// How handles are resolved.
    pub handle_resolver: HandleResolver,
    /// How long lookups are cached (clamped to [`MAX_CACHE_TTL`]; zero disables caching).
    pub cache_ttl: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            #[allow(clippy::expect_used)]
            plc_url: Url::parse(DEFAULT_PLC_URL).expect("the default PLC URL parses"),
            handle_resolver: HandleResolver::Standard,
            cache_ttl: Duration::from_secs(5 * 60),
        }
    }
}

/// Why an identity did not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No DID is published for the handle.
    #[error("the handle {0} does not resolve to a DID")]
    HandleNotFound(Handle),
    /// The handle's DNS records name more than one DID.
    #[error("the handle {0} names more than one DID")]
    AmbiguousHandle(Handle),
    /// Fetching the handle or DID failed.
    #[error("identity lookup failed")]
    Http(#[from] HttpError),
    /// The DID method is not `plc` or `web` (or `did:web` with a path).
    #[error("unsupported DID: {0}")]
    UnsupportedDid(Did),
    /// The DID document's `id` is not the DID that was asked for.
    #[error("the DID document of {0} is for another DID")]
    DocumentMismatch(Did),
    /// The DID document does not list the handle in `alsoKnownAs`.
    #[error("the DID document of {did} does not claim the handle {handle}")]
    HandleNotClaimed {
        /// The DID.
        did: Did,
        /// The handle that resolved to it.
        handle: Handle,
    },
    /// The DID document names no usable `#atproto_pds` service.
    #[error("the DID document of {0} names no PDS")]
    NoPds(Did),
    /// The PDS URL is refused by the URL policy.
    #[error("the PDS URL of {did} is refused")]
    PdsUrl {
        /// The DID.
        did: Did,
        /// Why (one of the refusals [`HttpError::Url`] wraps).
        #[source]
        source: HttpError,
    },
    /// The DNS resolver could not be set up.
    #[error("cannot set up the DNS resolver")]
    Dns(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A DID document, the parts atproto uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    /// The DID.
    pub id: String,
    /// Other names, `at://<handle>` among them.
    #[serde(default)]
    pub also_known_as: Vec<String>,
    /// Services, the PDS among them.
    #[serde(default)]
    pub service: Vec<DidService>,
}

/// A service entry of a DID document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidService {
    /// `#atproto_pds` or `<did>#atproto_pds`.
    pub id: String,
    /// `AtprotoPersonalDataServer`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The URL (a string; other forms are ignored).
    pub service_endpoint: serde_json::Value,
}

impl DidDocument {
    /// The PDS URL from the `#atproto_pds` service, checked against the URL policy.
    pub fn pds(&self, did: &Did, dev_mode: bool) -> Result<Url, IdentityError> {
        let absolute = format!("{}#atproto_pds", did.as_str());
        let endpoint = self
            .service
            .iter()
            .find(|s| {
                (s.id == "#atproto_pds" || s.id == absolute)
                    && s.type_ == "AtprotoPersonalDataServer"
            })
            .and_then(|s| s.service_endpoint.as_str())
            .ok_or_else(|| IdentityError::NoPds(did.clone()))?;
        parse_url(endpoint, dev_mode).map_err(|source| IdentityError::PdsUrl {
            did: did.clone(),
            source,
        })
    }

    /// Whether the document lists `at://<handle>` (case-insensitively).
    #[must_use]
    pub fn claims_handle(&self, handle: &Handle) -> bool {
        self.also_known_as.iter().any(|aka| {
            aka.strip_prefix("at://")
                .is_some_and(|h| h.eq_ignore_ascii_case(handle.as_str()))
        })
    }

    /// The first `at://` handle the document claims, if any (unverified).
    #[must_use]
    pub fn handle(&self) -> Option<Handle> {
        self.also_known_as
            .iter()
            .filter_map(|aka| aka.strip_prefix("at://"))
            .find_map(|h| Handle::new(h).ok())
    }
}

/// What a login starts from: a handle or a DID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtIdentifier {
    /// A handle.
    Handle(Handle),
    /// A DID.
    Did(Did),
}

impl AtIdentifier {
    /// Parses a handle (an optional leading `@` is dropped) or a DID.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.starts_with("did:") {
            return Did::new(s).ok().map(Self::Did);
        }
        Handle::new(s.strip_prefix('@').unwrap_or(s))
            .ok()
            .map(Self::Handle)
    }
}

/// A resolved identity.
#[derive(Debug, Clone)]
pub struct ResolvedIdentity {
    /// The DID.
    pub did: Did,
    /// The handle, when the login started from one (and the document claims it).
    pub handle: Option<Handle>,
    /// The PDS.
    pub pds: Url,
    /// The document.
    pub document: DidDocument,
}

/// Resolves handles and DIDs, with a cache.
pub struct IdentityResolver {
    http: Http,
    config: IdentityConfig,
    dns: Option<hickory_resolver::TokioResolver>,
    handles: TtlCache<Handle, Did>,
    documents: TtlCache<Did, Arc<DidDocument>>,
}

impl fmt::Debug for IdentityResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityResolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The longest `atproto-did` body read.
const MAX_DID_BODY: usize = 2048 + 64;

impl IdentityResolver {
    pub(crate) fn new(http: Http, config: IdentityConfig) -> Result<Self, IdentityError> {
        let dns = match config.handle_resolver {
            HandleResolver::Standard => Some(
                hickory_resolver::TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| IdentityError::Dns(Box::new(e)))?,
            ),
            HandleResolver::Xrpc(_) => None,
        };
        let ttl = config.cache_ttl.min(MAX_CACHE_TTL);
        Ok(Self {
            http,
            dns,
            handles: TtlCache::new(ttl, 10_000),
            documents: TtlCache::new(ttl, 10_000),
            config,
        })
    }

    /// Resolves a handle or DID to its DID, document and PDS. A handle must be claimed back
    /// by the document.
    pub async fn resolve(&self, id: &AtIdentifier) -> Result<ResolvedIdentity, IdentityError> {
        let (did, handle) = match id {
            AtIdentifier::Did(d) => (d.clone(), None),
            AtIdentifier::Handle(h) => (self.resolve_handle(h).await?, Some(h.clone())),
        };
        let document = self.resolve_did(&did, false).await?;
        if let Some(h) = &handle
            && !document.claims_handle(h)
        {
            return Err(IdentityError::HandleNotClaimed {
                did,
                handle: h.clone(),
            });
        }
        let pds = document.pds(&did, self.http.options.dev_mode)?;
        Ok(ResolvedIdentity {
            did,
            handle,
            pds,
            document: (*document).clone(),
        })
    }

    /// Handle → DID.
    pub async fn resolve_handle(&self, handle: &Handle) -> Result<Did, IdentityError> {
        if let Some(d) = self.handles.get(handle) {
            return Ok(d);
        }
        let did = match &self.config.handle_resolver {
            HandleResolver::Xrpc(base) => self.resolve_handle_xrpc(base, handle).await?,
            HandleResolver::Standard => match self.resolve_handle_dns(handle).await? {
                Some(d) => d,
                None => self.resolve_handle_https(handle).await?,
            },
        };
        self.handles.insert(handle.clone(), did.clone());
        Ok(did)
    }

    async fn resolve_handle_xrpc(&self, base: &Url, handle: &Handle) -> Result<Did, IdentityError> {
        let mut url = base.clone();
        url.set_path("/xrpc/com.atproto.identity.resolveHandle");
        url.set_query(None);
        url.query_pairs_mut().append_pair("handle", handle.as_str());
        let f = self.http.get(&url).await?;
        if f.status == reqwest::StatusCode::BAD_REQUEST
            || f.status == reqwest::StatusCode::NOT_FOUND
        {
            return Err(IdentityError::HandleNotFound(handle.clone()));
        }
        if f.status != reqwest::StatusCode::OK {
            return Err(HttpError::Status {
                url: display_url(&url),
                status: f.status.as_u16(),
            }
            .into());
        }
        #[derive(Deserialize)]
        struct Out {
            did: Did,
        }
        let out: Out = f.json(&url)?;
        Ok(out.did)
    }

    async fn resolve_handle_dns(&self, handle: &Handle) -> Result<Option<Did>, IdentityError> {
        let Some(dns) = &self.dns else {
            return Ok(None);
        };
        let name = format!("_atproto.{}.", handle.as_str());
        let lookup =
            match tokio::time::timeout(self.http.options.timeout, dns.txt_lookup(name)).await {
                Ok(Ok(l)) => l,
                // NXDOMAIN, no records, a DNS failure or a timeout: try HTTPS.
                Ok(Err(_)) | Err(_) => return Ok(None),
            };
        let mut found: Option<Did> = None;
        for record in lookup.answers() {
            let hickory_resolver::proto::rr::RData::TXT(txt) = &record.data else {
                continue;
            };
            let text: Vec<u8> = txt
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let Ok(text) = std::str::from_utf8(&text) else {
                continue;
            };
            let Some(did) = text.strip_prefix("did=").and_then(|d| Did::new(d).ok()) else {
                continue;
            };
            match &found {
                Some(f) if *f != did => {
                    return Err(IdentityError::AmbiguousHandle(handle.clone()));
                }
                _ => found = Some(did),
            }
        }
        Ok(found)
    }

    async fn resolve_handle_https(&self, handle: &Handle) -> Result<Did, IdentityError> {
        let url = Url::parse(&format!(
            "https://{}/.well-known/atproto-did",
            handle.as_str()
        ))
        .map_err(|_| IdentityError::HandleNotFound(handle.clone()))?;
        let f = match self.http.get(&url).await {
            Ok(f) => f,
            Err(HttpError::Transport { .. } | HttpError::Url { .. }) => {
                return Err(IdentityError::HandleNotFound(handle.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        if f.status != reqwest::StatusCode::OK || f.body.len() > MAX_DID_BODY {
            return Err(IdentityError::HandleNotFound(handle.clone()));
        }
        std::str::from_utf8(&f.body)
            .ok()
            .and_then(|s| Did::new(s.trim()).ok())
            .ok_or_else(|| IdentityError::HandleNotFound(handle.clone()))
    }

    /// DID → document. `fresh` skips the cache (the result still refreshes it).
    pub async fn resolve_did(
        &self,
        did: &Did,
        fresh: bool,
    ) -> Result<Arc<DidDocument>, IdentityError> {
        if !fresh && let Some(d) = self.documents.get(did) {
            return Ok(d);
        }
        let url = self.document_url(did)?;
        let doc: DidDocument = self.http.get_json(&url).await?;
        if doc.id != did.as_str() {
            return Err(IdentityError::DocumentMismatch(did.clone()));
        }
        let doc = Arc::new(doc);
        self.documents.insert(did.clone(), Arc::clone(&doc));
        Ok(doc)
    }

    fn document_url(&self, did: &Did) -> Result<Url, IdentityError> {
        let bad = |e: HttpError| {
            IdentityError::Http(HttpError::Url {
                url: did.as_str().to_owned(),
                source: Box::new(e),
            })
        };
        match did.method() {
            "plc" => {
                let base = self.config.plc_url.as_str().trim_end_matches('/');
                Url::parse(&format!("{base}/{}", did.as_str()))
                    .map_err(|_| bad(HttpError::UrlParse))
            }
            "web" => {
                let id = did.identifier();
                // atproto supports host-level did:web only; a port is percent-encoded.
                if id.contains(':') {
                    return Err(IdentityError::UnsupportedDid(did.clone()));
                }
                let host = id.replace("%3A", ":").replace("%3a", ":");
                let local = host.starts_with("localhost") || host.starts_with("127.0.0.1");
                let scheme = if self.http.options.dev_mode && local {
                    "http"
                } else {
                    "https"
                };
                Url::parse(&format!("{scheme}://{host}/.well-known/did.json"))
                    .map_err(|_| bad(HttpError::UrlParse))
            }
            _ => Err(IdentityError::UnsupportedDid(did.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: serde_json::Value) -> DidDocument {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pds_from_relative_and_absolute_ids() {
        let did = Did::new("did:plc:abc").unwrap();
        let rel = doc(serde_json::json!({
            "id": "did:plc:abc",
            "alsoKnownAs": ["at://alice.test"],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "https://pds.example"}]
        }));
        assert_eq!(
            rel.pds(&did, false).unwrap().as_str(),
            "https://pds.example/"
        );
        let abs = doc(serde_json::json!({
            "id": "did:plc:abc",
            "service": [{"id": "did:plc:abc#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "https://pds.example"}]
        }));
        assert!(abs.pds(&did, false).is_ok());
        let wrong_type = doc(serde_json::json!({
            "id": "did:plc:abc",
            "service": [{"id": "#atproto_pds", "type": "Other", "serviceEndpoint": "https://x.example"}]
        }));
        assert!(matches!(
            wrong_type.pds(&did, false),
            Err(IdentityError::NoPds(_))
        ));
        let http = doc(serde_json::json!({
            "id": "did:plc:abc",
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "http://localhost:2583"}]
        }));
        assert!(matches!(
            http.pds(&did, false),
            Err(IdentityError::PdsUrl { .. })
        ));
        assert!(http.pds(&did, true).is_ok());
        let object_endpoint = doc(serde_json::json!({
            "id": "did:plc:abc",
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": {"uri": "https://x.example"}}]
        }));
        assert!(object_endpoint.pds(&did, false).is_err());
    }

    #[test]
    fn handle_claims() {
        let d = doc(
            serde_json::json!({"id": "did:plc:abc", "alsoKnownAs": ["at://Alice.Test", "https://x"]}),
        );
        assert!(d.claims_handle(&Handle::new("alice.test").unwrap()));
        assert!(!d.claims_handle(&Handle::new("bob.test").unwrap()));
        assert_eq!(d.handle().unwrap().as_str(), "alice.test");
    }

    #[test]
    fn identifiers_parse() {
        assert!(matches!(
            AtIdentifier::parse("@alice.test"),
            Some(AtIdentifier::Handle(_))
        ));
        assert!(matches!(
            AtIdentifier::parse("did:plc:abc"),
            Some(AtIdentifier::Did(_))
        ));
        assert_eq!(AtIdentifier::parse("not a handle"), None);
    }
}
