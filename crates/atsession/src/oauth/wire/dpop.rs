//! DPoP (RFC 9449): proof-of-possession keys, proofs, the per-origin nonce cache, and the
//! one retry on `use_dpop_nonce`.
//!
//! A proof is a JWT with header `{"typ":"dpop+jwt","alg":"ES256K","jwk":<public key>}` (or
//! `ES256`, see [`DpopAlg`]) and claims `jti` (random), `htm` (the method), `htu` (the URL
//! *without query or fragment*), `iat`, `nonce` (the server's latest, when known) and, on
//! requests to a resource server, `ath` (base64url SHA-256 of the access token).
//!
//! ```
//! use atsession::oauth::{DpopKey, ath, htu};
//!
//! let key = DpopKey::generate();
//! let url = url::Url::parse("https://pds.example/xrpc/app.bsky.actor.getProfile?actor=alice#x").unwrap();
//! assert_eq!(htu(&url), "https://pds.example/xrpc/app.bsky.actor.getProfile");
//! let proof = key.proof("GET", &htu(&url), Some("nonce-1"), Some(&ath("access-token")), 1_700_000_000).unwrap();
//! assert_eq!(proof.split('.').count(), 3);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::http::{Fetched, Http, HttpError, PdsHttp};
use super::jose::{EcKey, JoseError, Jwk, Secp256k1Key, b64url};
use super::pds_request::PdsBody;
use super::pds_response::PdsResponse;
use crate::clock::Clock;
use crate::secret::random_bytes;

/// The path a PDS is probed with to learn its DPoP nonce (a cheap authenticated query).
pub(crate) const PROBE_PATH: &str = "/xrpc/com.atproto.server.getSession";

/// The signature algorithm of a DPoP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopAlg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on secp256k1 with SHA-256: what the reference client picks first, and about
    /// twice as fast to sign here as `ES256`.
    Es256k,
}

impl DpopAlg {
    /// The JOSE name: `ES256` or `ES256K`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es256k => "ES256K",
        }
    }

    /// The algorithm for a new grant's key, given an authorization server's
    /// `dpop_signing_alg_values_supported`: `ES256K` when offered, as the reference client
    /// chooses, else `ES256`; `None` when it offers neither.
    ///
    /// ```
    /// use atsession::oauth::DpopAlg;
    ///
    /// let offered = |algs: &[&str]| algs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    /// assert_eq!(DpopAlg::choose(&offered(&["RS256", "ES256", "ES256K"])), Some(DpopAlg::Es256k));
    /// assert_eq!(DpopAlg::choose(&offered(&["ES256"])), Some(DpopAlg::Es256));
    /// assert_eq!(DpopAlg::choose(&offered(&["RS256"])), None);
    /// ```
    #[must_use]
    pub fn choose(supported: &[String]) -> Option<Self> {
        [Self::Es256k, Self::Es256]
            .into_iter()
            .find(|alg| supported.iter().any(|s| s == alg.as_str()))
    }
}

/// A DPoP key pair, fresh for each grant: secp256k1 (`ES256K`) or P-256 (`ES256`), as
/// [`DpopAlg::choose`] picks for the grant's authorization server. Never printed.
#[derive(Clone)]
pub struct DpopKey {
    key: Signer,
    /// `b64url` of the proof header, the same for every proof of the key.
    header: String,
}

#[derive(Clone)]
enum Signer {
    Es256(EcKey),
    Es256k(Secp256k1Key),
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DpopKey({}, jkt={})",
            self.alg().as_str(),
            self.thumbprint()
        )
    }
}

impl DpopKey {
    /// A fresh P-256 (`ES256`) key.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_for(DpopAlg::Es256)
    }

    /// A fresh key for `alg`.
    #[must_use]
    pub fn generate_for(alg: DpopAlg) -> Self {
        Self::new(match alg {
            DpopAlg::Es256 => Signer::Es256(EcKey::generate()),
            DpopAlg::Es256k => Signer::Es256k(Secp256k1Key::generate()),
        })
    }

    fn new(key: Signer) -> Self {
        let (alg, jwk) = match &key {
            Signer::Es256(k) => (DpopAlg::Es256, k.bare_public_jwk()),
            Signer::Es256k(k) => (DpopAlg::Es256k, k.bare_public_jwk()),
        };
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": alg.as_str(),
            "jwk": jwk,
        });
        Self {
            header: b64url(header.to_string()),
            key,
        }
    }

    /// Reads a key back from its private JWK: `crv` `secp256k1` or `P-256`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        let key = match jwk.crv.as_str() {
            "secp256k1" => Signer::Es256k(Secp256k1Key::from_jwk(jwk)?),
            "P-256" => Signer::Es256(EcKey::from_jwk(jwk)?),
            _ => return Err(JoseError::UnsupportedKey),
        };
        Ok(Self::new(key))
    }

    /// The signature algorithm of the key's proofs.
    #[must_use]
    pub fn alg(&self) -> DpopAlg {
        match &self.key {
            Signer::Es256(_) => DpopAlg::Es256,
            Signer::Es256k(_) => DpopAlg::Es256k,
        }
    }

    /// The private JWK, for storage (encrypted at rest).
    #[must_use]
    pub fn to_private_jwk(&self) -> Jwk {
        match &self.key {
            Signer::Es256(k) => k.to_private_jwk(),
            Signer::Es256k(k) => k.to_private_jwk(),
        }
    }

    /// The public JWK, as servers see it.
    #[must_use]
    pub fn public_jwk(&self) -> Jwk {
        match &self.key {
            Signer::Es256(k) => k.public_jwk(),
            Signer::Es256k(k) => k.public_jwk(),
        }
    }

    /// The JWK thumbprint (`jkt`) that access tokens bound to this key carry.
    #[must_use]
    pub fn thumbprint(&self) -> String {
        self.public_jwk().thumbprint()
    }

    /// A proof for one request. `htu` must already be stripped of query and fragment (see
    /// [`htu`]); `iat` is in seconds since the epoch.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        ath: Option<&str>,
        iat: i64,
    ) -> Result<String, JoseError> {
        let mut jti = [0u8; 22];
        let n = URL_SAFE_NO_PAD
            .encode_slice(random_bytes::<16>(), &mut jti)
            .map_err(|_| JoseError::Serialize)?;
        let claims = Claims {
            jti: std::str::from_utf8(&jti[..n]).map_err(|_| JoseError::Serialize)?,
            htm,
            htu,
            iat,
            nonce,
            ath,
        };
        let claims = serde_json::to_vec(&claims).map_err(|_| JoseError::Serialize)?;
        Ok(match &self.key {
            Signer::Es256(k) => k.sign_encoded(&self.header, &claims),
            Signer::Es256k(k) => k.sign_encoded(&self.header, &claims),
        })
    }
}

/// The claims of a proof.
#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
}

/// The `htu` of a URL: the URL without query and fragment (RFC 9449 §4.2).
#[must_use]
pub fn htu(url: &Url) -> String {
    htu_str(url).to_owned()
}

/// [`htu`] without a copy: the URL's serialization up to the end of its path.
fn htu_str(url: &Url) -> &str {
    &url[..url::Position::AfterPath]
}

/// The `ath` of an access token: base64url SHA-256 of its ASCII form.
#[must_use]
pub fn ath(access_token: &str) -> String {
    b64url(Sha256::digest(access_token.as_bytes()))
}

/// The most recent `DPoP-Nonce` of each origin, shared by every session of a client, so
/// the steady state costs no extra round trip.
#[derive(Default)]
pub struct DpopNonces {
    inner: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("origins", &self.lock().len())
            .finish()
    }
}

/// The cache holds at most this many origins; past it, it starts over.
const MAX_ORIGINS: usize = 4096;
/// A nonce longer than this is ignored.
const MAX_NONCE_LEN: usize = 512;

impl DpopNonces {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest nonce of `url`'s origin.
    #[must_use]
    pub fn get(&self, url: &Url) -> Option<String> {
        self.lock().get(origin_key(url).as_ref()).cloned()
    }

    /// Records a nonce for `url`'s origin.
    pub fn set(&self, url: &Url, nonce: &str) {
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.is_ascii() {
            return;
        }
        let mut m = self.lock();
        if m.len() >= MAX_ORIGINS {
            m.clear();
        }
        m.insert(origin_key(url).into_owned(), nonce.to_owned());
    }
}

/// `url`'s origin as the nonce cache keys it: its ASCII serialization, read in place from
/// the URL when it can be (every PDS call looks a nonce up), built otherwise.
fn origin_key(url: &Url) -> std::borrow::Cow<'_, str> {
    super::pds_path::in_place_origin(url).map_or_else(
        || std::borrow::Cow::Owned(url.origin().ascii_serialization()),
        std::borrow::Cow::Borrowed,
    )
}

/// Who answers a DPoP request: the two signal `use_dpop_nonce` differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopTarget {
    /// An authorization server: `400` with JSON `{"error":"use_dpop_nonce"}`.
    AuthorizationServer,
    /// A resource server (the PDS): `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
    /// (PDS calls ask [`resource_asks_nonce`] directly, before the body is read.)
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "PDS calls check the headers alone")
    )]
    ResourceServer,
}

/// Whether a resource server's answer (its status and headers) asks for a (new) nonce:
/// `401` with `WWW-Authenticate: DPoP … error="use_dpop_nonce"`.
#[must_use]
pub(crate) fn resource_asks_nonce(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.trim_start().starts_with("DPoP") && v.contains("error=\"use_dpop_nonce\""))
}

/// Whether a PDS answer says the access token is not (or no longer) good, from its status
/// and headers alone (before the body is read): `401` with
/// `WWW-Authenticate: DPoP … error="invalid_token"`.
/// [`OAuthSession::request`](crate::oauth::OAuthSession::request) refreshes and retries once
/// on such an answer.
#[must_use]
pub(crate) fn is_invalid_token_answer(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.trim_start().starts_with("DPoP") && v.contains("error=\"invalid_token\""))
}

/// Whether a response asks for a (new) nonce.
#[must_use]
pub(crate) fn is_use_dpop_nonce(target: DpopTarget, status: StatusCode, fetched: &Fetched) -> bool {
    match target {
        DpopTarget::AuthorizationServer => {
            status == StatusCode::BAD_REQUEST
                && serde_json::from_slice::<serde_json::Value>(&fetched.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .is_some_and(|e| e == "use_dpop_nonce")
        }
        DpopTarget::ResourceServer => resource_asks_nonce(status, &fetched.headers),
    }
}

/// How a DPoP request failed, on its way to [`OAuthError`](crate::oauth::OAuthError), which
/// has a variant for each: the request failed ([`HttpError`]), or the proof could not be
/// signed ([`JoseError`]). Not an error type of its own: it never reaches the API.
#[derive(Debug)]
pub(crate) enum DpopError {
    /// The request failed.
    Http(HttpError),
    /// The proof could not be signed.
    Jose(JoseError),
}

impl From<HttpError> for DpopError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

impl From<JoseError> for DpopError {
    fn from(e: JoseError) -> Self {
        Self::Jose(e)
    }
}

/// Sends a request with a DPoP proof, recording the nonce of every response (the retried
/// one too), and retries once when the server asks for a nonce it had not given before.
///
/// `build` makes the request without the `DPoP` header; it is called again for the retry
/// (so a client assertion in it is fresh each time). `access_token`, when given, adds `ath`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    http: &Http,
    nonces: &DpopNonces,
    clock: &dyn Clock,
    key: &DpopKey,
    target: DpopTarget,
    method: &str,
    url: &Url,
    access_token: Option<&str>,
    build: impl Fn() -> Result<RequestBuilder, JoseError>,
) -> Result<Fetched, DpopError> {
    let htu = htu_str(url);
    let ath = access_token.map(ath);
    let first_nonce = nonces.get(url);
    let proof = key.proof(
        method,
        htu,
        first_nonce.as_deref(),
        ath.as_deref(),
        clock.now().unix_timestamp(),
    )?;
    let first = http.send(url, build()?.header("DPoP", proof)).await?;
    let next_nonce = header_nonce(&first);
    let Some(next_nonce) = next_nonce.filter(|n| Some(n) != first_nonce.as_ref()) else {
        return Ok(first);
    };
    nonces.set(url, &next_nonce);
    if !is_use_dpop_nonce(target, first.status, &first) {
        return Ok(first);
    }
    tracing::debug!(origin = %url.origin().ascii_serialization(), "DPoP nonce refused; retrying with the server's new nonce");
    let proof = key.proof(
        method,
        htu,
        Some(&next_nonce),
        ath.as_deref(),
        clock.now().unix_timestamp(),
    )?;
    let retried = http.send(url, build()?.header("DPoP", proof)).await?;
    if let Some(n) = header_nonce(&retried) {
        nonces.set(url, &n);
    }
    Ok(retried)
}

fn header_nonce(f: &Fetched) -> Option<String> {
    nonce_of(&f.headers)
}

fn nonce_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("DPoP-Nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One call to a resource server (the grant's PDS).
pub(crate) struct ResourceCall<'a> {
    pub(crate) http: &'a PdsHttp,
    pub(crate) nonces: &'a DpopNonces,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) key: &'a DpopKey,
    pub(crate) access_token: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) url: &'a Url,
    /// The caller's headers, already checked against the allow-list.
    pub(crate) headers: &'a HeaderMap,
    /// Leave out the caller's `Content-Length` (the body has a length of its own).
    pub(crate) drop_content_length: bool,
    /// The PDS. A cheap authenticated `GET` on it (the probe) is sent first to learn a
    /// nonce when a body that cannot be resent is about to go and none is cached.
    pub(crate) pds: &'a Url,
}

impl ResourceCall<'_> {
    /// Sends the probe when no nonce is cached for the origin, and caches the nonce of its
    /// answer; returns that answer (`None` when a nonce was cached already).
    pub(crate) async fn learn_nonce(&self) -> Result<Option<PdsResponse>, DpopError> {
        if self.nonces.get(self.url).is_some() {
            return Ok(None);
        }
        let url = super::pds_path::pds_url(self.pds, PROBE_PATH)
            .map_err(|e| HttpError::PdsPath(Box::new(e)))?;
        let probe = self.request(&url, Method::GET, None)?;
        let answer = self.http.send(&url, probe, PdsBody::Empty).await?;
        if let Some(n) = nonce_of(answer.headers()) {
            self.nonces.set(self.url, &n);
        }
        Ok(Some(answer))
    }

    fn request(
        &self,
        url: &Url,
        method: Method,
        nonce: Option<&str>,
    ) -> Result<RequestBuilder, JoseError> {
        let proof = self.key.proof(
            method.as_str(),
            htu_str(url),
            nonce,
            Some(&ath(self.access_token)),
            self.clock.now().unix_timestamp(),
        )?;
        let mut headers = self.headers.clone();
        if self.drop_content_length {
            headers.remove(reqwest::header::CONTENT_LENGTH);
        }
        Ok(self
            .http
            .client
            .request(method, url.clone())
            .headers(headers)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("DPoP {}", self.access_token),
            )
            .header("DPoP", proof))
    }

    /// Sends the call with `body`, recording the nonce of every answer. A body in memory
    /// is sent again once when the server asks for a nonce it had not given before. Before
    /// a stream body, a nonce is fetched with the probe when the origin has none cached; a
    /// stream body is never sent twice (a `use_dpop_nonce` answer to it is returned as
    /// is, with the new nonce cached).
    pub(crate) async fn send(&self, body: PdsBody) -> Result<PdsResponse, DpopError> {
        let resend = body.try_clone();
        if resend.is_none() {
            self.learn_nonce().await?;
        }
        let first_nonce = self.nonces.get(self.url);
        let first = self.request(self.url, self.method.clone(), first_nonce.as_deref())?;
        let first = self.http.send(self.url, first, body).await?;
        let Some(next_nonce) =
            nonce_of(first.headers()).filter(|n| Some(n) != first_nonce.as_ref())
        else {
            return Ok(first);
        };
        self.nonces.set(self.url, &next_nonce);
        let Some(body) = resend else {
            return Ok(first);
        };
        if !resource_asks_nonce(first.status(), first.headers()) {
            return Ok(first);
        }
        drop(first);
        tracing::debug!(origin = %self.url.origin().ascii_serialization(), "DPoP nonce refused by the PDS; retrying with its new nonce");
        let retry = self.request(self.url, self.method.clone(), Some(&next_nonce))?;
        let retried = self.http.send(self.url, retry, body).await?;
        if let Some(n) = nonce_of(retried.headers()) {
            self.nonces.set(self.url, &n);
        }
        Ok(retried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::wire::jose::decode_jwt;

    /// Checks a proof's signature with the key its header carries, as a server does.
    fn verify_with_header_jwk(proof: &str) {
        use p256::ecdsa::signature::Verifier as _;

        let (header, _, sig) = decode_jwt(proof);
        let coordinate = |c: &str| {
            URL_SAFE_NO_PAD
                .decode(header["jwk"][c].as_str().unwrap())
                .unwrap()
        };
        let mut sec1 = vec![4u8];
        sec1.extend(coordinate("x"));
        sec1.extend(coordinate("y"));
        let input = proof.rsplit_once('.').unwrap().0.as_bytes();
        match (
            header["alg"].as_str().unwrap(),
            header["jwk"]["crv"].as_str().unwrap(),
        ) {
            ("ES256", "P-256") => p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .unwrap()
                .verify(input, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                .unwrap(),
            ("ES256K", "secp256k1") => k256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .unwrap()
                .verify(input, &k256::ecdsa::Signature::from_slice(&sig).unwrap())
                .unwrap(),
            other => panic!("unexpected algorithm and curve {other:?}"),
        }
    }

    #[test]
    fn proof_fields() {
        for (alg, crv) in [(DpopAlg::Es256, "P-256"), (DpopAlg::Es256k, "secp256k1")] {
            let key = DpopKey::generate_for(alg);
            assert_eq!(key.alg(), alg);
            let url =
                Url::parse("https://pds.example:8443/xrpc/x.y.z?limit=5&cursor=a#frag").unwrap();
            let h = htu(&url);
            assert_eq!(h, "https://pds.example:8443/xrpc/x.y.z");
            let proof = key
                .proof(
                    "POST",
                    &h,
                    Some("n0nce"),
                    Some(&ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")),
                    1234,
                )
                .unwrap();
            let (header, claims, sig) = decode_jwt(&proof);
            assert_eq!(header["typ"], "dpop+jwt");
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["jwk"]["kty"], "EC");
            assert_eq!(header["jwk"]["crv"], crv);
            assert!(
                header["jwk"].get("d").is_none(),
                "no private key in the proof"
            );
            assert_eq!(header["jwk"].as_object().unwrap().len(), 4);
            assert_eq!(claims["htm"], "POST");
            assert_eq!(claims["htu"], "https://pds.example:8443/xrpc/x.y.z");
            assert_eq!(claims["iat"], 1234);
            assert_eq!(claims["nonce"], "n0nce");
            // The access token and ath of RFC 9449 §7.1.
            assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
            assert!(claims["jti"].as_str().unwrap().len() >= 16);
            assert_eq!(sig.len(), 64);
            verify_with_header_jwk(&proof);
            // Without nonce and ath, the claims are absent.
            let (_, c2, _) = decode_jwt(&key.proof("GET", &h, None, None, 1).unwrap());
            assert!(c2.get("nonce").is_none() && c2.get("ath").is_none());
            assert_ne!(c2["jti"], claims["jti"]);
        }
    }

    #[test]
    fn keys_come_back_from_their_jwks_as_what_they_were() {
        for alg in [DpopAlg::Es256, DpopAlg::Es256k] {
            let key = DpopKey::generate_for(alg);
            let jwk = key.to_private_jwk();
            let back = DpopKey::from_jwk(&jwk).unwrap();
            assert_eq!((back.alg(), back.thumbprint()), (alg, key.thumbprint()));
            assert_eq!(back.public_jwk(), key.public_jwk());
            verify_with_header_jwk(
                &back
                    .proof("GET", "https://a.example/x", None, None, 1)
                    .unwrap(),
            );
            let d = jwk.d.as_ref().unwrap().expose().to_owned();
            assert!(!format!("{key:?}").contains(&d), "no private part in Debug");
            assert!(format!("{key:?}").contains(alg.as_str()));
            let mut unknown = jwk;
            unknown.crv = "P-384".into();
            assert_eq!(
                DpopKey::from_jwk(&unknown).map(|_| ()),
                Err(JoseError::UnsupportedKey)
            );
        }
    }

    #[test]
    fn htu_drops_query_and_fragment_only() {
        for s in [
            "https://pds.example/xrpc/a.b.c",
            "https://pds.example:8443/xrpc/a.b.c?x=1&y=%20#f",
            "http://127.0.0.1:2583/xrpc/a.b.c#only-fragment",
            "https://[::1]/xrpc/a.b.c?",
            "https://pds.example/xrpc/a%2Fb.c?q",
        ] {
            let url = Url::parse(s).unwrap();
            let mut expected = url.clone();
            expected.set_query(None);
            expected.set_fragment(None);
            assert_eq!(htu(&url), expected.as_str(), "{s}");
        }
    }

    #[test]
    fn proofs_of_one_key_share_its_header() {
        let key = DpopKey::generate();
        let a = key
            .proof("GET", "https://a.example/x", None, None, 1)
            .unwrap();
        let b = key
            .proof("GET", "https://a.example/x", None, None, 1)
            .unwrap();
        assert_eq!(a.split('.').next(), b.split('.').next());
        assert_ne!(a, b, "each proof has its own jti");
        let (header, _, _) = decode_jwt(&a);
        assert_eq!(header["jwk"]["x"], key.public_jwk().x.as_str());
        let other = DpopKey::generate();
        let c = other
            .proof("GET", "https://a.example/x", None, None, 1)
            .unwrap();
        assert_ne!(a.split('.').next(), c.split('.').next());
    }

    #[test]
    fn nonce_cache_is_per_origin() {
        let n = DpopNonces::new();
        let a = Url::parse("https://a.example/oauth/par").unwrap();
        let a2 = Url::parse("https://a.example/oauth/token?x=1").unwrap();
        let b = Url::parse("https://b.example/oauth/par").unwrap();
        n.set(&a, "one");
        assert_eq!(n.get(&a2).as_deref(), Some("one"));
        assert_eq!(n.get(&b), None);
        n.set(&a2, "two");
        assert_eq!(n.get(&a).as_deref(), Some("two"));
        n.set(&a, &"x".repeat(10_000));
        assert_eq!(
            n.get(&a).as_deref(),
            Some("two"),
            "absurd nonces are ignored"
        );
    }

    #[test]
    fn nonce_key_is_the_origin() {
        for u in [
            "https://a.example/x",
            "https://A.Example:443/x?q=1",
            "https://a.example:8443/x",
            "http://127.0.0.1:2583/xrpc/a.b.c",
            "http://[::1]:80/x",
            "http://[::1]:2583/x",
            "https://user:secret@a.example/x",
            "https://bücher.example/x",
            "wss://a.example:443/x",
            "foo://a.example/x",
            "file://a.example/x",
        ] {
            let url = Url::parse(u).unwrap();
            assert_eq!(origin_key(&url), url.origin().ascii_serialization(), "{u}");
        }
        // URLs of one origin share a nonce whatever their user info.
        let n = DpopNonces::new();
        n.set(&Url::parse("https://u@a.example/p").unwrap(), "one");
        assert_eq!(
            n.get(&Url::parse("https://a.example/q").unwrap())
                .as_deref(),
            Some("one")
        );
    }

    fn fetched(status: u16, www: Option<&str>, body: &str) -> Fetched {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(w) = www {
            headers.insert(reqwest::header::WWW_AUTHENTICATE, w.parse().unwrap());
        }
        Fetched {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn use_dpop_nonce_detection() {
        let as_ = DpopTarget::AuthorizationServer;
        let rs = DpopTarget::ResourceServer;
        let f = fetched(400, None, r#"{"error":"use_dpop_nonce"}"#);
        assert!(is_use_dpop_nonce(as_, f.status, &f));
        assert!(!is_use_dpop_nonce(rs, f.status, &f));
        let f = fetched(400, None, r#"{"error":"invalid_grant"}"#);
        assert!(!is_use_dpop_nonce(as_, f.status, &f));
        let f = fetched(400, None, "<html>");
        assert!(!is_use_dpop_nonce(as_, f.status, &f));
        let f = fetched(
            401,
            Some(r#"DPoP algs="ES256", error="use_dpop_nonce", error_description="x""#),
            "",
        );
        assert!(is_use_dpop_nonce(rs, f.status, &f));
        let f = fetched(401, Some(r#"DPoP error="invalid_token""#), "");
        assert!(!is_use_dpop_nonce(rs, f.status, &f));
        let f = fetched(401, Some(r#"Bearer error="use_dpop_nonce""#), "");
        assert!(!is_use_dpop_nonce(rs, f.status, &f));
    }

    #[test]
    fn invalid_token_detection() {
        use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};

        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP algs="ES256", error="invalid_token""#),
        );
        let f = Fetched {
            status: StatusCode::UNAUTHORIZED,
            headers: headers.clone(),
            body: vec![],
        };
        assert!(is_invalid_token_answer(f.status, &f.headers));
        let f = Fetched {
            status: StatusCode::FORBIDDEN,
            headers,
            body: vec![],
        };
        assert!(!is_invalid_token_answer(f.status, &f.headers));
    }
}
