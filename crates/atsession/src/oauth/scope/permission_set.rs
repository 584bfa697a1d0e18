//! Permission sets: lexicons of type `permission-set` that bundle `repo` and `rpc`
//! permissions under one NSID, requested as `include:<nsid>[?aud=…]`. The authorization
//! server resolves and expands them; this module checks a set's definition against the
//! rules of the [permission spec](https://atproto.com/specs/permission#permission-sets)
//! (for the people who publish one), and shows what an `include:` stands for.
//!
//! The rules: only `repo` and `rpc` permissions; no wildcards (`*`), whole or partial, in
//! collections and methods; every collection and method under the set's own NSID group
//! (the set `app.example.feed.authPosts` may name `app.example.feed.post` or
//! `app.example.feed.x.y`, not `app.example.actor.profile`); an `rpc` permission needs
//! `"aud": "*"` or `"inheritAud": true` (a DID reference is not allowed in a set, and not
//! both); no unknown fields.
//!
//! ```
//! use atsession::oauth::scope::{PermissionSet, PermissionSetError};
//! use serde_json::json;
//!
//! let doc = json!({
//!     "lexicon": 1,
//!     "id": "com.example.authBasic",
//!     "defs": {"main": {
//!         "type": "permission-set",
//!         "title": "Basic",
//!         "permissions": [
//!             {"type": "permission", "resource": "repo", "collection": ["com.example.post"]},
//!             {"type": "permission", "resource": "rpc", "inheritAud": true, "lxm": ["com.example.getFeed"]}
//!         ]
//!     }}
//! });
//! let set = PermissionSet::from_lexicon(&doc).unwrap();
//! assert_eq!(
//!     set.expand(Some("did:web:api.example.com#svc")).to_string(),
//!     "repo:com.example.post rpc:com.example.getFeed?aud=did:web:api.example.com%23svc"
//! );
//! // Without an audience to inherit, the rpc permission stands for nothing.
//! assert_eq!(set.expand(None).to_string(), "repo:com.example.post");
//!
//! let mut bad = doc.clone();
//! bad["defs"]["main"]["permissions"][0]["collection"] = json!(["org.other.post"]);
//! assert!(matches!(
//!     PermissionSet::from_lexicon(&bad),
//!     Err(PermissionSetError::Permission { index: 0, .. })
//! ));
//! ```

use serde_json::Value;

use super::form::Scope;
use super::grammar::is_did_service_ref;
use super::params::{Audience, RepoAction, RepoActions};
use super::set::ScopeSet;
use crate::syntax::is_nsid;

/// Why a permission-set definition was refused: the document as a whole, or one of its
/// permissions ([`Permission`](Self::Permission) carries what is wrong with that one as its
/// source, a variant from [`NotAPermission`](Self::NotAPermission) on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionSetError {
    /// The document is not a lexicon whose `main` definition is a `permission-set`.
    #[error("not a lexicon whose main definition is a permission-set")]
    NotAPermissionSet,
    /// The lexicon's `id` is missing or not an NSID.
    #[error("the lexicon id is missing or not an NSID")]
    Id,
    /// `permissions` is missing or not an array.
    #[error("the permission set has no `permissions` array")]
    NoPermissions,
    /// One permission is invalid.
    #[error("permission {index} is invalid")]
    Permission {
        /// Its index in `permissions`.
        index: usize,
        /// What is wrong with it (one of the variants below).
        #[source]
        source: Box<PermissionSetError>,
    },
    /// A permission is not an object with `"type": "permission"`.
    #[error("not an object of type `permission`")]
    NotAPermission,
    /// A resource other than `repo` and `rpc`.
    #[error("the resource `{0}` is not allowed in a permission set (only repo and rpc)")]
    ResourceNotAllowed(String),
    /// A field the resource does not have.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A field of the wrong JSON type, or an empty list.
    #[error("the field `{0}` has the wrong type or is empty")]
    FieldType(&'static str),
    /// A wildcard (`*`), which sets may not use.
    #[error("wildcards are not allowed in a permission set")]
    Wildcard,
    /// A partial wildcard (`com.example.*`).
    #[error("partial wildcard `{0}`")]
    PartialWildcard(String),
    /// Not an NSID.
    #[error("`{0}` is not an NSID")]
    InvalidNsid(String),
    /// An NSID outside the set's namespace.
    #[error("`{0}` is outside the permission set's namespace")]
    OutsideNamespace(String),
    /// An unknown `action`.
    #[error("`{0}` is not a repo action")]
    InvalidAction(String),
    /// An `rpc` permission with neither `"aud": "*"` nor `"inheritAud": true`.
    #[error("an rpc permission needs `\"aud\": \"*\"` or `\"inheritAud\": true`")]
    RpcNeedsAud,
    /// An `rpc` permission naming a DID service reference (not allowed in a set).
    #[error("an rpc permission in a set may not name a service (`{0}`); use inheritAud")]
    AudienceNotAllowed(String),
    /// Both `aud` and `inheritAud: true`.
    #[error("an rpc permission may not have both `aud` and `inheritAud`")]
    InheritAudWithAud,
}

/// A permission of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetPermission {
    /// Writing records.
    Repo {
        /// Collection NSIDs (sorted, deduplicated).
        collection: Vec<String>,
        /// The actions.
        actions: RepoActions,
    },
    /// Calling methods.
    Rpc {
        /// Method NSIDs (sorted, deduplicated).
        lxm: Vec<String>,
        /// `true`: the audience comes from the `include:`; `false`: any service (`*`).
        inherit_aud: bool,
    },
}

/// A checked permission set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSet {
    /// The set's NSID (`include:<nsid>`).
    pub nsid: String,
    /// Its permissions.
    pub permissions: Vec<SetPermission>,
}

/// Whether `other` is under the NSID group of `set` (the set's NSID without its last
/// segment): `app.example.feed.authX` covers `app.example.feed.post` and
/// `app.example.feed.x.y`, not `app.example.actor.profile`.
///
/// ```
/// use atsession::oauth::scope::in_namespace;
///
/// assert!(in_namespace("app.example.feed.authX", "app.example.feed.post"));
/// assert!(in_namespace("app.example.authFull", "app.example.feed.post"));
/// assert!(!in_namespace("app.example.feed.authX", "app.example.actor.profile"));
/// assert!(!in_namespace("app.example.feed.authX", "app.example.feedx.post"));
/// ```
#[must_use]
pub fn in_namespace(set: &str, other: &str) -> bool {
    match set.rfind('.') {
        Some(end) => other.len() > end + 1 && other.as_bytes()[..=end] == set.as_bytes()[..=end],
        None => false,
    }
}

fn nsid_list(
    set: &str,
    p: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, PermissionSetError> {
    let list = p
        .get(field)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or(PermissionSetError::FieldType(field))?;
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let s = v.as_str().ok_or(PermissionSetError::FieldType(field))?;
        if s == "*" {
            return Err(PermissionSetError::Wildcard);
        }
        if !is_nsid(s) {
            let s: String = s.chars().take(200).collect();
            return Err(if s.contains('*') {
                PermissionSetError::PartialWildcard(s)
            } else {
                PermissionSetError::InvalidNsid(s)
            });
        }
        if !in_namespace(set, s) {
            return Err(PermissionSetError::OutsideNamespace(s.to_owned()));
        }
        out.push(s.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn only(p: &serde_json::Map<String, Value>, known: &[&str]) -> Result<(), PermissionSetError> {
    match p.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(PermissionSetError::UnknownField(
            k.chars().take(100).collect(),
        )),
        None => Ok(()),
    }
}

fn permission(set: &str, v: &Value) -> Result<SetPermission, PermissionSetError> {
    let p = v
        .as_object()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("permission"))
        .ok_or(PermissionSetError::NotAPermission)?;
    match p.get("resource").and_then(Value::as_str) {
        Some("repo") => {
            only(p, &["type", "resource", "collection", "action"])?;
            let collection = nsid_list(set, p, "collection")?;
            let actions = match p.get("action") {
                None => RepoActions::ALL,
                Some(a) => {
                    let a = a
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or(PermissionSetError::FieldType("action"))?;
                    let mut v = Vec::new();
                    for x in a {
                        let s = x.as_str().ok_or(PermissionSetError::FieldType("action"))?;
                        v.push(
                            RepoAction::ALL
                                .into_iter()
                                .find(|r| r.as_str() == s)
                                .ok_or_else(|| {
                                    PermissionSetError::InvalidAction(s.chars().take(100).collect())
                                })?,
                        );
                    }
                    RepoActions::of(&v)
                }
            };
            Ok(SetPermission::Repo {
                collection,
                actions,
            })
        }
        Some("rpc") => {
            only(p, &["type", "resource", "lxm", "aud", "inheritAud"])?;
            let lxm = nsid_list(set, p, "lxm")?;
            let inherit = match p.get("inheritAud") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(PermissionSetError::FieldType("inheritAud")),
            };
            match (p.get("aud"), inherit) {
                (Some(_), true) => Err(PermissionSetError::InheritAudWithAud),
                (None, true) => Ok(SetPermission::Rpc {
                    lxm,
                    inherit_aud: true,
                }),
                (None, false) => Err(PermissionSetError::RpcNeedsAud),
                (Some(Value::String(a)), false) if a == "*" => Ok(SetPermission::Rpc {
                    lxm,
                    inherit_aud: false,
                }),
                (Some(Value::String(a)), false) if is_did_service_ref(a) => {
                    Err(PermissionSetError::AudienceNotAllowed(a.clone()))
                }
                (Some(_), false) => Err(PermissionSetError::FieldType("aud")),
            }
        }
        Some(other) => Err(PermissionSetError::ResourceNotAllowed(
            other.chars().take(100).collect(),
        )),
        None => Err(PermissionSetError::FieldType("resource")),
    }
}

impl PermissionSet {
    /// Checks a lexicon document (`{"lexicon": 1, "id": …, "defs": {"main": {"type":
    /// "permission-set", …}}}`).
    pub fn from_lexicon(doc: &Value) -> Result<Self, PermissionSetError> {
        let main = doc
            .get("defs")
            .and_then(|d| d.get("main"))
            .filter(|m| m.get("type").and_then(Value::as_str) == Some("permission-set"))
            .ok_or(PermissionSetError::NotAPermissionSet)?;
        let nsid = doc
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_nsid(id))
            .ok_or(PermissionSetError::Id)?;
        Self::from_def(nsid, main)
    }

    /// Checks the `permission-set` definition `def` of the lexicon `nsid`.
    ///
    /// ```
    /// use atsession::oauth::scope::{PermissionSet, PermissionSetError};
    /// use serde_json::json;
    ///
    /// let def = json!({"type": "permission-set", "permissions": [
    ///     {"type": "permission", "resource": "blob", "accept": ["image/*"]}
    /// ]});
    /// assert_eq!(
    ///     PermissionSet::from_def("com.example.authX", &def),
    ///     Err(PermissionSetError::Permission {
    ///         index: 0,
    ///         source: Box::new(PermissionSetError::ResourceNotAllowed("blob".into())),
    ///     })
    /// );
    /// ```
    pub fn from_def(nsid: &str, def: &Value) -> Result<Self, PermissionSetError> {
        if !is_nsid(nsid) {
            return Err(PermissionSetError::Id);
        }
        let list = def
            .get("permissions")
            .and_then(Value::as_array)
            .ok_or(PermissionSetError::NoPermissions)?;
        let permissions = list
            .iter()
            .enumerate()
            .map(|(index, p)| {
                permission(nsid, p).map_err(|e| PermissionSetError::Permission {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            nsid: nsid.to_owned(),
            permissions,
        })
    }

    /// The scopes `include:<nsid>[?aud=<aud>]` stands for, as the authorization server
    /// expands it: an `rpc` permission that inherits its audience stands for nothing when
    /// the `include:` has none.
    #[must_use]
    pub fn expand(&self, aud: Option<&str>) -> ScopeSet {
        self.permissions
            .iter()
            .filter_map(|p| match p {
                SetPermission::Repo {
                    collection,
                    actions,
                } => Some(Scope::Repo {
                    collection: collection.clone(),
                    actions: *actions,
                }),
                SetPermission::Rpc { lxm, inherit_aud } => {
                    let aud = if *inherit_aud {
                        Audience::Service(aud?.to_owned())
                    } else {
                        Audience::Any
                    };
                    Some(Scope::Rpc {
                        lxm: lxm.clone(),
                        aud,
                    })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(p: Value) -> Result<SetPermission, PermissionSetError> {
        permission("com.example.authX", &p)
    }

    #[test]
    fn set_rules() {
        use PermissionSetError as E;
        let repo = |c: Value| json!({"type": "permission", "resource": "repo", "collection": c});
        assert_eq!(one(repo(json!(["*"]))), Err(E::Wildcard));
        assert_eq!(
            one(repo(json!(["com.example.*"]))),
            Err(E::PartialWildcard("com.example.*".into()))
        );
        assert_eq!(
            one(repo(json!(["org.example.post"]))),
            Err(E::OutsideNamespace("org.example.post".into()))
        );
        assert_eq!(one(repo(json!([]))), Err(E::FieldType("collection")));
        assert!(one(repo(json!(["com.example.post", "com.example.sub.like"]))).is_ok());
        let rpc = |extra: Value| {
            let mut v =
                json!({"type": "permission", "resource": "rpc", "lxm": ["com.example.getX"]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        assert_eq!(one(rpc(json!({}))), Err(E::RpcNeedsAud));
        assert_eq!(
            one(rpc(json!({"aud": "did:web:api.example.com#svc"}))),
            Err(E::AudienceNotAllowed("did:web:api.example.com#svc".into()))
        );
        assert_eq!(
            one(rpc(json!({"aud": "*", "inheritAud": true}))),
            Err(E::InheritAudWithAud)
        );
        assert_eq!(
            one(rpc(json!({"other": 1}))),
            Err(E::UnknownField("other".into()))
        );
        assert!(one(rpc(json!({"aud": "*"}))).is_ok());
        assert!(one(rpc(json!({"inheritAud": true}))).is_ok());
        assert_eq!(
            one(json!({"type": "permission", "resource": "identity", "attr": "handle"})),
            Err(E::ResourceNotAllowed("identity".into()))
        );
        assert_eq!(one(json!("repo:*")), Err(E::NotAPermission));
    }
}
