//! [`OAuthSession`]: the handle an app uses for one grant — its token info, sign-out, and
//! authenticated requests to the user's PDS that refresh as needed.

use std::fmt;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::events::TokenSetInfo;
use super::getter::{GrantError, Refresh, RetryReason, SessionGetter, token_info};
use super::xrpc_error::xrpc_error;
use crate::oauth::wire::dpop::{is_invalid_token_answer, resource_asks_nonce};
use crate::oauth::wire::http::{Fetched, HttpError};
use crate::oauth::wire::pds_headers::first_refused;
use crate::oauth::wire::pds_path::check_path;
use crate::oauth::wire::pds_request::PdsRequest;
use crate::oauth::wire::pds_response::PdsResponse;
use crate::store::oauth::{GrantId, GrantStore, StateStore, StoredGrant};

/// One grant, seen through a [`SessionGetter`]. Cheap to clone.
///
/// Made by [`SessionGetter::session`] from the grant id that
/// [`OAuthClient::callback`](crate::oauth::OAuthClient::callback) returned (an app keeps it
/// in its own session, e.g. in [`StoredSession::data`](crate::app::StoredSession::data)).
pub struct OAuthSession<S> {
    getter: SessionGetter<S>,
    grant_id: GrantId,
    /// The grant's record read moments ago ([`SessionGetter::session_with`]), for the
    /// first read only; shared by the clones, so that it is used once.
    preloaded: Option<Arc<Mutex<Option<StoredGrant>>>>,
}

impl<S> Clone for OAuthSession<S> {
    fn clone(&self) -> Self {
        Self {
            getter: self.getter.clone(),
            grant_id: self.grant_id.clone(),
            preloaded: self.preloaded.clone(),
        }
    }
}

impl<S> fmt::Debug for OAuthSession<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSession")
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

impl<S> OAuthSession<S>
where
    S: StateStore + GrantStore + Clone,
{
    pub(crate) fn new(
        getter: SessionGetter<S>,
        grant_id: GrantId,
        preloaded: Option<StoredGrant>,
    ) -> Self {
        Self {
            getter,
            grant_id,
            preloaded: preloaded.map(|g| Arc::new(Mutex::new(Some(g)))),
        }
    }

    /// The preloaded record, the first time only.
    fn take_preloaded(&self) -> Option<StoredGrant> {
        self.preloaded
            .as_ref()?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The grant id.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (getter, grant_id) = demo_getter().await;
    /// assert_eq!(getter.session(grant_id.clone()).grant_id(), &grant_id);
    /// # }
    /// ```
    #[must_use]
    pub fn grant_id(&self) -> &GrantId {
        &self.grant_id
    }

    /// The getter the session reads through.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// let _events = session.getter().subscribe();
    /// # }
    /// ```
    #[must_use]
    pub fn getter(&self) -> &SessionGetter<S> {
        &self.getter
    }

    /// The token set's public facts (account, scope, expiry), refreshed first as `refresh`
    /// says.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::Refresh;
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let info = getter.session(grant_id).token_info(Refresh::IfStale).await.unwrap();
    /// assert_eq!(info.sub.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    /// assert_eq!(info.scope, "atproto transition:generic");
    /// assert_eq!(info.version, 1);
    /// # }
    /// ```
    pub async fn token_info(&self, refresh: Refresh) -> Result<TokenSetInfo, GrantError> {
        let (data, version) = self
            .getter
            .get_versioned_from(&self.grant_id, refresh, None, self.take_preloaded())
            .await?;
        Ok(token_info(&data, version))
    }

    /// Signs out: revokes the tokens, then deletes the grant even when revoking fails (that
    /// error is returned after the delete). `Ok(false)` if the grant was already gone.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::{Refresh, GrantError};
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// // The demo server is unreachable: revoking fails, and the grant is deleted anyway.
    /// assert!(session.sign_out().await.is_err());
    /// assert!(matches!(
    ///     session.token_info(Refresh::AcceptStale).await,
    ///     Err(GrantError::NotFound(_))
    /// ));
    /// assert!(!session.sign_out().await.unwrap());
    /// # }
    /// ```
    pub async fn sign_out(&self) -> Result<bool, GrantError> {
        self.getter.sign_out(&self.grant_id).await
    }

    /// An authenticated call to the user's PDS, streamed both ways: the request body may be
    /// a stream ([`PdsBody`](crate::oauth::PdsBody)), and the answer is returned as soon as its
    /// status and headers arrived, its body to be read as a stream
    /// ([`PdsResponse::bytes_stream`]) or whole.
    ///
    /// The path and headers are checked before anything is sent, a refresh included (see
    /// [`OAuthClient::pds_call`](crate::oauth::OAuthClient::pds_call)). The tokens are refreshed
    /// first when stale. On `401 invalid_token` the tokens are refreshed once and a body in
    /// memory is sent once more; a stream body is never sent twice:
    ///
    /// | answer | body in memory | stream body |
    /// |---|---|---|
    /// | `use_dpop_nonce` | resent once with the new nonce | [`GrantError::Retryable`] (a nonce is fetched *before* sending when none is cached) |
    /// | `invalid_token` | refreshed, resent once | refreshed, then [`GrantError::Retryable`] (refreshed *before* sending when the nonce probe is refused) |
    /// | anything else | returned as is, whatever its status | the same |
    ///
    /// Use [`PdsResponse::error_for_status`] to turn an XRPC error answer into
    /// [`GrantError::Xrpc`] with the server's message.
    ///
    /// ```no_run
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use atsession::oauth::{PdsBody, PdsRequest};
    ///
    /// # let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// // Upload a video from disk, streamed.
    /// let upload = PdsRequest::procedure("com.atproto.repo.uploadBlob")
    ///     .header("content-type", "video/mp4")
    ///     .body(PdsBody::file("clip.mp4").await?);
    /// let blob: serde_json::Value = session.send(upload).await?.json().await?;
    /// println!("uploaded {}", blob["blob"]["ref"]["$link"]);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, request: PdsRequest) -> Result<PdsResponse, GrantError> {
        // Refused before anything is sent, a refresh included.
        check_path(request.path_and_query())
            .map_err(|e| GrantError::OAuth(HttpError::PdsPath(Box::new(e)).into()))?;
        if let Some(name) = first_refused(request.headers()) {
            let name = name.as_str().to_owned();
            return Err(GrantError::OAuth(HttpError::Header { name }.into()));
        }
        let client = self.getter.client();
        let (mut data, mut version) = self
            .getter
            .get_versioned_from(
                &self.grant_id,
                Refresh::IfStale,
                None,
                self.take_preloaded(),
            )
            .await?;
        let (method, path_and_query, headers, body) = request.into_parts();
        let resend = body.try_clone();
        let streamed = resend.is_none();
        // A stream goes once: learn the nonce first, and refresh first if the token it was
        // learnt with is refused.
        if streamed && client.pds_prepare_stream(&data).await? {
            (data, version) = self
                .getter
                .get_versioned(&self.grant_id, Refresh::Force, Some(version))
                .await?;
        }
        let response = client
            .pds_call_parts(&data, &method, &path_and_query, &headers, body)
            .await?;
        if streamed && resource_asks_nonce(response.status(), response.headers()) {
            return Err(GrantError::Retryable(RetryReason::UseDpopNonce));
        }
        if !is_invalid_token_answer(response.status(), response.headers()) {
            return Ok(response);
        }
        drop(response);
        tracing::debug!(grant = %self.grant_id, "the PDS refused the access token (invalid_token); refreshing once");
        let (data, _) = self
            .getter
            .get_versioned(&self.grant_id, Refresh::Force, Some(version))
            .await?;
        match resend {
            Some(body) => Ok(client
                .pds_call_parts(&data, &method, &path_and_query, &headers, body)
                .await?),
            None => Err(GrantError::Retryable(RetryReason::InvalidToken)),
        }
    }

    /// An authenticated request to the user's PDS, buffered both ways: any method, a path
    /// (and query) `/xrpc/<nsid>…`, allow-listed headers and a body in memory, the whole
    /// answer read into memory. For small calls; see [`send`](Self::send) for streaming
    /// and for what is retried. Any answer is returned as is, whatever its status.
    ///
    /// ```no_run
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use atsession::oauth::reqwest::Method;
    /// use atsession::oauth::reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
    ///
    /// # let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// let mut headers = HeaderMap::new();
    /// headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    /// let answer = session
    ///     .request(
    ///         Method::GET,
    ///         "/xrpc/com.atproto.repo.listRecords?repo=did:plc:ewvi7nxzyoun6zhxrhs64oiz&collection=app.bsky.feed.post",
    ///         &headers,
    ///         None,
    ///     )
    ///     .await?;
    /// if answer.status.is_success() {
    ///     let page: serde_json::Value = serde_json::from_slice(&answer.body)?;
    ///     println!("{} records", page["records"].as_array().map_or(0, Vec::len));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Fetched, GrantError> {
        let mut request = PdsRequest::new(method, path_and_query).body(body);
        *request.headers_mut() = headers.clone();
        let response = self.send(request).await?;
        response
            .into_fetched()
            .await
            .map_err(|e| GrantError::OAuth(e.into()))
    }

    /// An XRPC query: `GET /xrpc/<nsid>?<params>`, the JSON answer parsed as `T`. An answer
    /// other than 2xx is [`GrantError::Xrpc`] with the XRPC error name and message.
    ///
    /// ```no_run
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Deserialize)]
    /// struct Profile {
    ///     handle: String,
    ///     #[serde(rename = "followersCount")]
    ///     followers_count: Option<u64>,
    /// }
    ///
    /// # let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// let me = session.token_info(atsession::oauth::Refresh::IfStale).await?.sub;
    /// let profile: Profile = session
    ///     .xrpc_query("app.bsky.actor.getProfile", &[("actor", me.as_str())])
    ///     .await?;
    /// println!("@{} has {:?} followers", profile.handle, profile.followers_count);
    /// # Ok(()) }
    /// ```
    pub async fn xrpc_query<T: DeserializeOwned>(
        &self,
        nsid: &str,
        params: &[(&str, &str)],
    ) -> Result<T, GrantError> {
        if !crate::syntax::is_nsid(nsid) {
            return Err(GrantError::InvalidRequest("not an NSID"));
        }
        let mut path = format!("/xrpc/{nsid}");
        if !params.is_empty() {
            path.push('?');
            path.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish(),
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let f = self.request(Method::GET, &path, &headers, None).await?;
        xrpc_answer(&f)
    }

    /// An XRPC procedure: `POST /xrpc/<nsid>` with `input` as JSON, the JSON answer parsed
    /// as `T` (use `serde_json::Value` for an empty or free-form answer).
    ///
    /// ```no_run
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use serde_json::json;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Created {
    ///     uri: String,
    /// }
    ///
    /// # let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id);
    /// let me = session.token_info(atsession::oauth::Refresh::IfStale).await?.sub;
    /// let created: Created = session
    ///     .xrpc_procedure(
    ///         "com.atproto.repo.createRecord",
    ///         &json!({
    ///             "repo": me,
    ///             "collection": "app.bsky.feed.post",
    ///             "record": {"text": "hello", "createdAt": "2026-11-23T12:00:00Z"},
    ///         }),
    ///     )
    ///     .await?;
    /// println!("posted {}", created.uri);
    /// # Ok(()) }
    /// ```
    pub async fn xrpc_procedure<I: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        nsid: &str,
        input: &I,
    ) -> Result<T, GrantError> {
        if !crate::syntax::is_nsid(nsid) {
            return Err(GrantError::InvalidRequest("not an NSID"));
        }
        let body = serde_json::to_vec(input).map_err(GrantError::InvalidResponse)?;
        self.precheck_scope(nsid, Some(&body)).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let f = self
            .request(Method::POST, &format!("/xrpc/{nsid}"), &headers, Some(body))
            .await?;
        xrpc_answer(&f)
    }
}

fn xrpc_answer<T: DeserializeOwned>(f: &Fetched) -> Result<T, GrantError> {
    if !f.status.is_success() {
        return Err(xrpc_error(f.status.as_u16(), &f.body));
    }
    let body: &[u8] = if f.body.is_empty() { b"null" } else { &f.body };
    serde_json::from_slice(body).map_err(GrantError::InvalidResponse)
}
