//! A browser's cookie jar and the redirects it follows, for the end-to-end tests of the
//! example apps.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// A browser's cookies.
#[derive(Default)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join("; ")
    }

    pub async fn get(&mut self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let r = http
            .get(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        r
    }

    pub async fn post(&mut self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let r = http
            .post(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        r
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The path and query of the callback URL the PDS redirected to.
pub fn callback_of(redirect: &str) -> &str {
    &redirect[redirect.find("/oauth/callback").unwrap()..]
}
