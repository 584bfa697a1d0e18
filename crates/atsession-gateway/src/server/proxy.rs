//! `/xrpc/{nsid}`: the backend-for-frontend proxy. A browser app (with the session cookie)
//! or a mobile app (with `Authorization: Bearer <access token>`) calls its user's PDS
//! through the gateway; the gateway finds the app session and its grant and forwards the
//! call with the grant's DPoP-bound access token, refreshed when stale and once more on
//! `401 invalid_token`. Tokens never reach the client.
//!
//! - Every method; the path is `/xrpc/<nsid>` and the query string is kept (both checked
//!   by the library before anything is sent).
//! - Request headers: only those on the library's allow-list
//!   ([`pds_headers::forwardable`]), so `atproto-proxy` and `atproto-accept-labelers` pass
//!   and the client's `Cookie` and `Authorization` never do.
//! - Request body: up to [`BUFFERED_BODY`] bytes with a known `Content-Length` are read
//!   into memory (so a DPoP nonce retry or a refresh-and-retry can send them again);
//!   anything larger, or of unknown length, is streamed to the PDS as it arrives.
//! - Answer: the PDS's status, its body streamed, and the headers a browser needs
//!   ([`RESPONSE_HEADERS`]); never `Set-Cookie`, `DPoP-Nonce` or `WWW-Authenticate`.
//!
//! | case | answer |
//! |---|---|
//! | not an NSID, a query the library refuses | `400 InvalidRequest` |
//! | NSID refused by `--allow-nsid` / `--deny-nsid` | `403 MethodNotAllowed`, nothing sent |
//! | no session | `401 AuthenticationRequired` |
//! | the session's grant is gone (signed out, revoked at the PDS, refresh refused) | `401 AuthenticationRequired`; the app session is ended and its cookie cleared |
//! | `--check-scope` and the grant plainly lacks the scope | `403 ScopeMissingError` with `scope`, nothing sent |
//! | a streamed body the PDS refused (new DPoP nonce, refreshed token): not resent | `503 RetryRequest`, `Retry-After: 0`: send it again |
//! | refresh failed (network, 5xx), timed out, lock busy | `502` / `504` / `503`; the grant is kept |
//! | the PDS cannot be reached | `502 UpstreamFailure` |
//!
//! Errors are answered through the library's one table
//! ([`atsession::auth::errors`]); their messages name no internal URL, resolver or store
//! unless `--dev` is on.

use std::sync::Arc;

use atsession::auth::AuthError;
use atsession::axum::{AtprotoAuth, AuthRejection, Session};
use atsession::oauth::forwardable_headers as forwardable;
use atsession::oauth::scope::{ScopeSet, precheck_xrpc};
use atsession::oauth::{GrantError, PdsBody, PdsRequest, PdsResponse, Refresh};
use atsession::syntax::is_nsid;
use axum::body::Body;
use axum::extract::{FromRef, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt as _;

use super::metrics::{Direction, Metrics};
use super::nsid_rules::NsidRules;

/// Request bodies up to this size with a known length are buffered (and can be resent).
pub const BUFFERED_BODY: u64 = 64 * 1024;

/// The PDS response headers passed back to the client.
pub const RESPONSE_HEADERS: &[&str] = &[
    "accept-ranges",
    "atproto-content-labelers",
    "atproto-repo-rev",
    "content-encoding",
    "content-language",
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "ratelimit-limit",
    "ratelimit-policy",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "vary",
];

/// What the proxy needs.
pub struct Proxy {
    /// The web layer (sessions, getter).
    pub auth: AtprotoAuth,
    /// Where proxied bytes and refresh failures are counted.
    pub metrics: Arc<Metrics>,
    /// `--allow-nsid` / `--deny-nsid`.
    pub rules: NsidRules,
    /// `--check-scope`: refuse calls the stored grant plainly does not permit.
    pub check_scope: bool,
}

/// The proxy's router state. Cheap to clone.
#[derive(Clone)]
pub struct ProxyState(pub Arc<Proxy>);

impl FromRef<ProxyState> for AtprotoAuth {
    fn from_ref(state: &ProxyState) -> Self {
        state.0.auth.clone()
    }
}

/// The answer to `e`, through the library's one table from error to HTTP answer (causes
/// in messages only with `--dev`; the session cookie cleared when the grant is gone).
fn error(proxy: &Proxy, e: AuthError) -> Response {
    proxy.auth.error_response(&e).map(Body::from)
}

/// `ANY /xrpc/{nsid}`.
pub async fn handle(
    State(state): State<ProxyState>,
    Path(nsid): Path<String>,
    session: Result<Session, AuthRejection>,
    mut request: Request,
) -> Response {
    let proxy = &state.0;
    if !is_nsid(&nsid) {
        return error(
            proxy,
            AuthError::InvalidRequest("the path is not /xrpc/<nsid>".into()),
        );
    }
    if !proxy.rules.permits(&nsid) {
        return error(proxy, AuthError::MethodNotAllowed);
    }
    let session = match session {
        Ok(s) => s,
        Err(e) => return error(proxy, e.into_error()),
    };
    // Starts from the grant's record when it was read with the session (one query on
    // SQLite and PostgreSQL).
    let Some(oauth) = proxy
        .auth
        .request_oauth_session(&session, request.extensions_mut())
    else {
        return error(proxy, AuthError::NoGrant);
    };

    let (parts, body) = request.into_parts();
    let mut path = format!("/xrpc/{nsid}");
    if let Some(q) = parts.uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let headers = forwardable(&parts.headers);
    let body = match request_body(proxy, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };

    if proxy.check_scope {
        let input: Option<serde_json::Value> = match &body {
            PdsBody::Bytes(b) => serde_json::from_slice(b).ok(),
            _ => None,
        };
        let refused = match check_scope(&oauth, &nsid, &headers, input).await {
            Ok(refused) => refused,
            Err(e) => return grant_error(proxy, &session, e).await,
        };
        if let Some(scope) = refused {
            return error(proxy, AuthError::MissingScope(scope.into()));
        }
    }

    let mut call = PdsRequest::new(parts.method.clone(), path).body(body);
    *call.headers_mut() = headers;
    match oauth.send(call).await {
        Ok(answer) => response(proxy, answer),
        Err(e) => grant_error(proxy, &session, e).await,
    }
}

/// The request body for the PDS: buffered when small and of known length, else streamed.
async fn request_body(proxy: &Proxy, headers: &HeaderMap, body: Body) -> Result<PdsBody, Response> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    match length {
        Some(0) => Ok(PdsBody::Empty),
        // Neither a length nor chunked: HTTP/1.1 says there is no body.
        None if !chunked => Ok(PdsBody::Empty),
        Some(n) if n <= BUFFERED_BODY => {
            let limit = usize::try_from(n).unwrap_or(usize::MAX);
            match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => {
                    proxy.metrics.proxied(Direction::Up, bytes.len() as u64);
                    Ok(PdsBody::Bytes(bytes))
                }
                Err(_) => Err(error(
                    proxy,
                    AuthError::InvalidRequest(
                        "the request body ended early or is longer than its Content-Length".into(),
                    ),
                )),
            }
        }
        Some(n) => Ok(PdsBody::sized_stream(counted_up(proxy, body), n)),
        None => Ok(PdsBody::stream(counted_up(proxy, body))),
    }
}

fn counted_up(
    proxy: &Proxy,
    body: Body,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Send + 'static {
    let metrics = Arc::clone(&proxy.metrics);
    body.into_data_stream().inspect(move |chunk| {
        if let Ok(c) = chunk {
            metrics.proxied(Direction::Up, c.len() as u64);
        }
    })
}

/// `Some(scope)` when the stored grant plainly does not permit the call.
async fn check_scope(
    oauth: &atsession::oauth::OAuthSession<atsession::store::AnyStore>,
    nsid: &str,
    headers: &HeaderMap,
    input: Option<serde_json::Value>,
) -> Result<Option<String>, GrantError> {
    let info = oauth.token_info(Refresh::AcceptStale).await?;
    let Ok(granted) = ScopeSet::parse_granted(&info.scope) else {
        return Ok(None);
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Ok(precheck_xrpc(
        &granted,
        nsid,
        input.as_ref(),
        text("atproto-proxy"),
        text("content-type"),
    )
    .err()
    .map(|m| m.scope))
}

/// The PDS's answer, passed on: status, allow-listed headers, body streamed.
fn response(proxy: &Proxy, answer: PdsResponse) -> Response {
    let status = answer.status();
    let mut headers = HeaderMap::with_capacity(answer.headers().len() + 1);
    for (name, v) in answer.headers() {
        if RESPONSE_HEADERS.contains(&name.as_str()) {
            headers.append(name.clone(), v.clone());
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let metrics = Arc::clone(&proxy.metrics);
    let body = answer.bytes_stream().inspect(move |chunk| {
        if let Ok(c) = chunk {
            metrics.proxied(Direction::Down, c.len() as u64);
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// What a failed call answers (see the module docs): a grant that is gone ends the app
/// session first; refresh failures are counted.
async fn grant_error(proxy: &Proxy, session: &Session, e: GrantError) -> Response {
    if matches!(
        e,
        GrantError::Refresh(_) | GrantError::SaveFailed(_) | GrantError::Timeout(_)
    ) {
        proxy.metrics.refresh_failed();
    }
    let e = proxy.auth.grant_failed(session, e).await;
    error(proxy, e)
}
