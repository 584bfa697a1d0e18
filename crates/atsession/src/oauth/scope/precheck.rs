//! The XRPC pre-check: what a grant plainly does not permit for a call, judged before
//! anything is sent.

use super::form::Scope;
use super::missing::ScopeMissing;
use super::params::*;
use super::set::ScopeSet;

/// What the grant `granted` plainly does not permit for an XRPC call to `nsid`, judged
/// before sending it: `createRecord`, `putRecord`, `deleteRecord` and `applyWrites` by the
/// collections in their JSON `input` (as the PDS checks them), `uploadBlob` by its
/// `content_type`, and any other method sent with an `atproto-proxy` header (`proxy`) as
/// an `rpc` call on that service. Anything else is left to the PDS (`Ok`), and so is every
/// call when the grant holds a scope whose reach is not known here (an `include:` the
/// server did not expand, or a [`Scope::Unknown`] form): the pre-check never refuses what
/// the server might permit.
///
/// ```
/// use atsession::oauth::scope::{ScopeSet, precheck_xrpc};
/// use serde_json::json;
///
/// let granted: ScopeSet = "atproto repo:com.example.note?action=create".parse().unwrap();
/// let note = json!({"repo": "did:plc:x", "collection": "com.example.note", "record": {}});
/// assert!(precheck_xrpc(&granted, "com.atproto.repo.createRecord", Some(&note), None, None).is_ok());
/// let post = json!({"repo": "did:plc:x", "collection": "app.bsky.feed.post", "record": {}});
/// assert_eq!(
///     precheck_xrpc(&granted, "com.atproto.repo.createRecord", Some(&post), None, None).unwrap_err().scope,
///     "repo:app.bsky.feed.post?action=create"
/// );
/// // putRecord needs both create and update, as the PDS checks.
/// assert!(precheck_xrpc(&granted, "com.atproto.repo.putRecord", Some(&note), None, None).is_err());
/// let proxied = precheck_xrpc(&granted, "app.bsky.feed.getTimeline", None, Some("did:web:api.bsky.app#bsky_appview"), None);
/// assert_eq!(proxied.unwrap_err().scope, "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview");
/// // An unexpanded permission set might permit it: left to the PDS.
/// let with_set: ScopeSet = "atproto include:app.bsky.authFullApp".parse().unwrap();
/// assert!(precheck_xrpc(&with_set, "com.atproto.repo.createRecord", Some(&post), None, None).is_ok());
/// ```
pub fn precheck_xrpc(
    granted: &ScopeSet,
    nsid: &str,
    input: Option<&serde_json::Value>,
    proxy: Option<&str>,
    content_type: Option<&str>,
) -> Result<(), ScopeMissing> {
    if granted
        .iter()
        .any(|s| matches!(s, Scope::Include { .. } | Scope::Unknown(_)))
    {
        return Ok(());
    }
    let collection = || {
        input
            .and_then(|v| v.get("collection"))
            .and_then(|c| c.as_str())
    };
    match nsid {
        "com.atproto.repo.createRecord" => match collection() {
            Some(c) => granted.check_repo(c, RepoAction::Create),
            None => Ok(()),
        },
        "com.atproto.repo.putRecord" => match collection() {
            Some(c) => granted
                .check_repo(c, RepoAction::Create)
                .and_then(|()| granted.check_repo(c, RepoAction::Update)),
            None => Ok(()),
        },
        "com.atproto.repo.deleteRecord" => match collection() {
            Some(c) => granted.check_repo(c, RepoAction::Delete),
            None => Ok(()),
        },
        "com.atproto.repo.applyWrites" => {
            let writes = input
                .and_then(|v| v.get("writes"))
                .and_then(|w| w.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for w in writes {
                let action = match w.get("$type").and_then(|t| t.as_str()) {
                    Some("com.atproto.repo.applyWrites#create") => RepoAction::Create,
                    Some("com.atproto.repo.applyWrites#update") => RepoAction::Update,
                    Some("com.atproto.repo.applyWrites#delete") => RepoAction::Delete,
                    _ => continue,
                };
                if let Some(c) = w.get("collection").and_then(|c| c.as_str()) {
                    granted.check_repo(c, action)?;
                }
            }
            Ok(())
        }
        "com.atproto.repo.uploadBlob" => match content_type {
            Some(ct) => {
                let mime = ct.split(';').next().unwrap_or_default().trim();
                granted.check_blob(mime)
            }
            None => Ok(()),
        },
        _ => match proxy {
            Some(aud) => granted.check_rpc(nsid, aud),
            None => Ok(()),
        },
    }
}
