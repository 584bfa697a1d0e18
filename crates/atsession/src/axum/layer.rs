//! [`SessionCookieLayer`]: puts the slid session cookie on responses, so that no handler has
//! to.
//!
//! When a request's session is found by its cookie and its idle window slides, the browser's
//! cookie must be sent again with the new expiry. The layer gives every request a slot (a
//! request extension); the extractors ([`Session`](super::Session) and the others) fill it
//! when they load a session whose cookie should be refreshed; after the handler, the layer
//! appends the `Set-Cookie` to the response, unless the handler already set the session
//! cookie (a login or a logout).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response, header};

/// Where an extractor leaves the refreshed cookie for the layer.
#[derive(Clone, Default)]
pub(crate) struct CookieSlot(Arc<Mutex<Option<HeaderValue>>>);

impl CookieSlot {
    pub(crate) fn put(&self, cookie: HeaderValue) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(cookie);
    }

    fn take(&self) -> Option<HeaderValue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Puts the slid session cookie on responses. Get one from
/// [`AtprotoAuth::layer`](super::AtprotoAuth::layer) and wrap the whole router in it.
///
/// Each request gets a slot; the extractors fill it when the session's idle window slid on
/// a cookie request; after the handler, the layer appends that `Set-Cookie`, unless the
/// handler set the session cookie itself (a login or a logout).
#[derive(Debug, Clone)]
pub struct SessionCookieLayer {
    cookie_name: Arc<str>,
}

impl SessionCookieLayer {
    pub(crate) fn new(cookie_name: &str) -> Self {
        Self {
            cookie_name: cookie_name.into(),
        }
    }
}

impl<S> tower_layer::Layer<S> for SessionCookieLayer {
    type Service = SessionCookieService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionCookieService {
            inner,
            cookie_name: Arc::clone(&self.cookie_name),
        }
    }
}

/// The service [`SessionCookieLayer`] wraps around a router.
#[derive(Debug, Clone)]
pub struct SessionCookieService<S> {
    inner: S,
    cookie_name: Arc<str>,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for SessionCookieService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Use the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let slot = CookieSlot::default();
        req.extensions_mut().insert(slot.clone());
        let name = Arc::clone(&self.cookie_name);
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            if let Some(cookie) = slot.take() {
                let prefix = format!("{name}=");
                let already = res
                    .headers()
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .any(|v| v.as_bytes().starts_with(prefix.as_bytes()));
                if !already {
                    res.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            Ok(res)
        })
    }
}
