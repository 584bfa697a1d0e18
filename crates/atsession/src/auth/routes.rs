//! The login routes as whole answers, for any framework: each takes the request's query and
//! headers and gives the `http::Response` to send (the framework only converts the body).

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::errors::redirect;
use super::{AtprotoAuth, LoginRequest, local_path, wants_json};

fn json(status: StatusCode, body: &serde_json::Value) -> Response<String> {
    let mut r = Response::new(body.to_string());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn no_store(mut r: Response<String>, cookie: HeaderValue) -> Response<String> {
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, cookie);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl AtprotoAuth {
    /// `GET /oauth/login?identifier=…[&redirect_to=/path][&prompt=…][&login_hint=…]`:
    /// [`start_login`](Self::start_login), answered `303` to the authorization server with
    /// the browser-binding cookie, or `{"authorization_url": …}` to clients that
    /// [ask for JSON](wants_json); a failure as [`login_error_response`](Self::login_error_response).
    pub async fn login_route(&self, query: &str, headers: &HeaderMap) -> Response<String> {
        let as_json = wants_json(headers);
        let started = match LoginRequest::from_query(query) {
            Ok(login) => self.start_login(&login, headers).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(s) => {
                let url = s.authorization_url.as_str();
                let r = if as_json {
                    json(
                        StatusCode::OK,
                        &serde_json::json!({ "authorization_url": url }),
                    )
                } else {
                    redirect(url)
                };
                no_store(r, s.binding_cookie)
            }
            Err(e) => self.login_error_response(as_json, &e),
        }
    }

    /// `GET /oauth/callback?…`: [`complete_login`](Self::complete_login), answered `303` to
    /// the page the login asked for with the session cookie, or
    /// `{"did", "handle", "redirect_to"}` to clients that ask for JSON; a failure as
    /// [`login_error_response`](Self::login_error_response).
    pub async fn callback_route(&self, query: &str, headers: &HeaderMap) -> Response<String> {
        let as_json = wants_json(headers);
        match self.complete_login(query, headers).await {
            Ok(done) => {
                let r = if as_json {
                    json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "did": done.did,
                            "handle": done.handle,
                            "redirect_to": done.redirect_to,
                        }),
                    )
                } else {
                    redirect(&done.redirect_to)
                };
                no_store(r, done.set_cookie)
            }
            Err(e) => self.login_error_response(as_json, &e),
        }
    }

    /// `POST /oauth/logout`: [`logout`](Self::logout), answered `303` to the
    /// [after-logout page](super::WebConfig::after_logout), or `204` to clients that ask for
    /// JSON, with the session cookie cleared; a store failure through the
    /// [one table](super::errors).
    pub async fn logout_route(&self, headers: &HeaderMap) -> Response<String> {
        match self.logout(headers).await {
            Ok(clear) => {
                let r = if wants_json(headers) {
                    let mut r = Response::new(String::new());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                } else {
                    redirect(&local_path(Some(&self.config().after_logout), "/"))
                };
                no_store(r, clear)
            }
            Err(e) => self.error_response(&e),
        }
    }
}
