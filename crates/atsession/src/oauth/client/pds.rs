//! Calls to a grant's PDS, DPoP-signed, only ever to the grant's own PDS origin.

use url::Url;

use super::error::OAuthError;
use super::grant::Grant;
use super::oauth_client::OAuthClient;
use crate::oauth::wire::dpop::{self, PROBE_PATH};
use crate::oauth::wire::http::{Fetched, HttpError};
use crate::oauth::wire::pds_headers::first_refused;
use crate::oauth::wire::pds_path::pds_url;
use crate::oauth::wire::pds_request::{PdsBody, PdsRequest};
use crate::oauth::wire::pds_response::PdsResponse;
use crate::store::oauth::{GrantStore, StateStore};

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// An authenticated request to the session's PDS: `Authorization: DPoP <token>`, a
    /// proof with `ath`, and the nonce retry. `path_and_query` is relative to the PDS URL
    /// (`/xrpc/com.atproto.server.getSession`). No refresh: that is the session layer's job.
    pub async fn pds_request(
        &self,
        grant: &Grant,
        method: reqwest::Method,
        path_and_query: &str,
        json_body: Option<&serde_json::Value>,
    ) -> Result<Fetched, OAuthError> {
        let mut headers = reqwest::header::HeaderMap::new();
        let body = match json_body {
            Some(b) => {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/json"),
                );
                Some(
                    serde_json::to_vec(b)
                        .map_err(|_| OAuthError::Corrupt("cannot serialize the body"))?,
                )
            }
            None => None,
        };
        self.pds_send(grant, method, path_and_query, &headers, body)
            .await
    }

    /// Like [`pds_request`](Self::pds_request), with any headers and a raw body, the whole
    /// answer read into memory (within [`PdsOptions::max_body`](crate::oauth::PdsOptions::max_body) when set). The path and
    /// the headers are checked as by [`pds_call`](Self::pds_call).
    pub async fn pds_send(
        &self,
        grant: &Grant,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &reqwest::header::HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Fetched, OAuthError> {
        let mut request = PdsRequest::new(method, path_and_query).body(body);
        *request.headers_mut() = headers.clone();
        let response = self.pds_call(grant, request).await?;
        Ok(response.into_fetched().await?)
    }

    /// An authenticated call to the session's PDS, streamed both ways: the answer is
    /// returned as soon as its headers arrived, its body read as a stream.
    ///
    /// Before anything is sent, the path must be `/xrpc/<nsid>` with at most one query
    /// ([`check_path`](crate::oauth::check_path)), and every header must be on the allow-list
    /// ([`PDS_REQUEST_HEADERS`](crate::oauth::PDS_REQUEST_HEADERS)); otherwise
    /// [`HttpError::PdsPath`] or [`HttpError::Header`]. The URL is built on the grant's PDS
    /// and its origin checked, so the access token goes nowhere else. `Authorization` and
    /// `DPoP` are set here.
    ///
    /// A body in memory is sent again once if the PDS asks for a new DPoP nonce. A stream
    /// body is sent once: if no nonce is cached for the PDS, one is fetched first with a
    /// `GET` of `com.atproto.server.getSession`; if the PDS still asks for a nonce, that
    /// `401` answer is returned (the new nonce is cached, and
    /// [`OAuthSession::send`](crate::oauth::OAuthSession::send) turns it into
    /// [`GrantError::Retryable`](crate::oauth::GrantError::Retryable)). No refresh: that is
    /// the session layer's job.
    pub async fn pds_call(
        &self,
        grant: &Grant,
        request: PdsRequest,
    ) -> Result<PdsResponse, OAuthError> {
        let (method, path_and_query, headers, body) = request.into_parts();
        self.pds_call_parts(grant, &method, &path_and_query, &headers, body)
            .await
    }

    /// [`pds_call`](Self::pds_call) on borrowed parts, so that a caller that may send the
    /// same request again keeps them without a copy.
    pub(crate) async fn pds_call_parts(
        &self,
        grant: &Grant,
        method: &reqwest::Method,
        path_and_query: &str,
        headers: &reqwest::header::HeaderMap,
        body: PdsBody,
    ) -> Result<PdsResponse, OAuthError> {
        let (pds, url) = Self::pds_urls(grant, path_and_query)?;
        if let Some(name) = first_refused(headers) {
            return Err(HttpError::Header {
                name: name.as_str().to_owned(),
            }
            .into());
        }
        let call = dpop::ResourceCall {
            http: &self.core.pds,
            nonces: &self.core.pds_nonces,
            clock: self.core.clock.as_ref(),
            key: &grant.dpop_key,
            access_token: grant.token_set.access_token.expose(),
            method,
            url: &url,
            headers,
            // The body's own length wins; a caller's Content-Length is kept only for a
            // stream of unknown length.
            drop_content_length: body.len().is_some(),
            pds: &pds,
        };
        Ok(call.send(body).await?)
    }

    /// The grant's PDS and the URL of a call on it.
    fn pds_urls(grant: &Grant, path_and_query: &str) -> Result<(Url, Url), OAuthError> {
        let base = Url::parse(&grant.token_set.aud)
            .map_err(|_| OAuthError::Corrupt("the grant's PDS URL does not parse"))?;
        let url = pds_url(&base, path_and_query).map_err(|e| HttpError::PdsPath(Box::new(e)))?;
        Ok((base, url))
    }

    /// Before a body that cannot be resent: when no DPoP nonce is cached for the grant's
    /// PDS, sends the probe (learning a nonce). Returns whether the probe's answer refused
    /// the access token (`invalid_token`), so that the caller can refresh before sending.
    pub(crate) async fn pds_prepare_stream(&self, grant: &Grant) -> Result<bool, OAuthError> {
        let (pds, probe) = Self::pds_urls(grant, PROBE_PATH)?;
        let headers = reqwest::header::HeaderMap::new();
        let call = dpop::ResourceCall {
            http: &self.core.pds,
            nonces: &self.core.pds_nonces,
            clock: self.core.clock.as_ref(),
            key: &grant.dpop_key,
            access_token: grant.token_set.access_token.expose(),
            method: &reqwest::Method::GET,
            url: &probe,
            headers: &headers,
            drop_content_length: false,
            pds: &pds,
        };
        Ok(call.learn_nonce().await?.is_some_and(|answer| {
            crate::oauth::wire::dpop::is_invalid_token_answer(answer.status(), answer.headers())
        }))
    }
}
