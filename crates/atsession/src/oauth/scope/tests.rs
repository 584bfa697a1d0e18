//! Tests of the scope model.

use super::error::*;
use super::form::*;
use super::missing::*;
use super::params::*;
use super::set::*;

fn p(s: &str) -> Scope {
    Scope::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn canonical_forms() {
    for (input, canonical) in [
        ("atproto", "atproto"),
        ("repo:app.bsky.feed.post", "repo:app.bsky.feed.post"),
        (
            "repo?collection=app.bsky.feed.post",
            "repo:app.bsky.feed.post",
        ),
        ("repo:*?action=delete", "repo:*?action=delete"),
        ("repo?collection=a.b.c&collection=*", "repo:*"),
        (
            "repo:a.b.c?action=update&action=create",
            "repo:a.b.c?action=create&action=update",
        ),
        ("rpc:a.b.c?aud=*", "rpc:a.b.c?aud=*"),
        (
            "rpc?lxm=*&aud=did:web:api.example.com%23svc_appview",
            "rpc:*?aud=did:web:api.example.com%23svc_appview",
        ),
        (
            "rpc?aud=*&lxm=b.b.c&lxm=a.b.c",
            "rpc?lxm=a.b.c&lxm=b.b.c&aud=*",
        ),
        ("blob:*/*", "blob:*/*"),
        (
            "blob?accept=video/*&accept=text/html",
            "blob?accept=text/html&accept=video/*",
        ),
        ("blob?accept=image/png&accept=image/*", "blob:image/*"),
        ("blob?accept=IMAGE/PNG&accept=*/*", "blob:*/*"),
        ("account:email", "account:email"),
        ("account:email?action=read", "account:email"),
        ("account:repo?action=manage", "account:repo?action=manage"),
        (
            "account?action=manage&attr=repo",
            "account:repo?action=manage",
        ),
        ("identity:*", "identity:*"),
        ("identity:*?", "identity:*"),
        ("identity?attr=handle", "identity:handle"),
        (
            "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat",
            "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat",
        ),
        (
            "include:app.example.authFull",
            "include:app.example.authFull",
        ),
    ] {
        assert_eq!(p(input).to_string(), canonical, "{input}");
        assert_eq!(p(canonical), p(input), "{canonical}");
    }
}

#[test]
fn refusals() {
    use ScopeError as E;
    type Check = fn(&E) -> bool;
    let cases: &[(&str, Check)] = &[
        ("repo", |e| matches!(e, E::MissingParameter { .. })),
        ("repo:", |e| matches!(e, E::InvalidNsid { .. })),
        ("repo?action=create", |e| {
            matches!(e, E::MissingParameter { .. })
        }),
        ("repo:com.example.*", |e| {
            matches!(e, E::PartialWildcard { .. })
        }),
        ("repo:a.b.c?collection=a.b.d", |e| {
            matches!(e, E::PositionalAndNamed { .. })
        }),
        ("repo:a.b.c?action=read", |e| {
            matches!(e, E::InvalidValue { .. })
        }),
        ("repo:a.b.c?foo=1", |e| {
            matches!(e, E::UnknownParameter { .. })
        }),
        ("rpc:a.b.c", |e| matches!(e, E::RpcWithoutAud { .. })),
        ("rpc:*?aud=*", |e| matches!(e, E::RpcWildcards { .. })),
        ("rpc:a.b.c?aud=did:web:x.example", |e| {
            matches!(e, E::InvalidAudience { .. })
        }),
        ("rpc:a.b.c?aud=*&aud=*", |e| {
            matches!(e, E::RepeatedParameter { .. })
        }),
        ("blob:image", |e| matches!(e, E::InvalidMime { .. })),
        ("blob:*/png", |e| matches!(e, E::PartialWildcard { .. })),
        ("blob:ima*/*", |e| matches!(e, E::PartialWildcard { .. })),
        ("account:*", |e| matches!(e, E::InvalidValue { .. })),
        ("identity:email", |e| matches!(e, E::InvalidValue { .. })),
        ("include:app.example.*", |e| {
            matches!(e, E::PartialWildcard { .. })
        }),
        ("include:a.b.c?aud=*", |e| {
            matches!(e, E::InvalidAudience { .. })
        }),
        ("repo:a%zz.b.c", |e| matches!(e, E::Encoding { .. })),
    ];
    for (s, ok) in cases {
        let e = Scope::parse(s).unwrap_err();
        assert!(ok(&e), "{s}: {e:?}");
    }
    assert!(matches!(ScopeSet::parse("atproto  repo:*"), Err(E::Empty)));
    assert!(matches!(
        ScopeSet::parse("atproto\trepo:*"),
        Err(E::ControlCharacter { position: 7 })
    ));
    assert!(matches!(
        ScopeSet::parse("repo:é"),
        Err(E::NonAscii { position: 5 })
    ));
}

#[test]
fn unknown_forms_pass_through() {
    for s in [
        "resource",
        "resource:positional?key=val",
        "transition:other",
        "space:x",
    ] {
        assert_eq!(p(s), Scope::Unknown(s.into()));
        assert_eq!(p(s).to_string(), s);
    }
    let set: ScopeSet = "atproto future:thing".parse().unwrap();
    assert_eq!(set.to_string(), "atproto future:thing");
}

#[test]
fn transition_semantics() {
    let g: ScopeSet = "atproto transition:generic".parse().unwrap();
    assert!(g.allows_rpc("*", "did:web:x.example#y"));
    assert!(g.allows_blob("video/mp4"));
    assert!(!g.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!g.allows_identity(IdentityAttr::Handle));
    let c: ScopeSet = "atproto transition:chat.bsky".parse().unwrap();
    assert!(c.allows_rpc("chat.bsky.convo.getLog", "did:web:api.bsky.chat#bsky_chat"));
    assert!(!c.allows_rpc(
        "app.bsky.feed.getTimeline",
        "did:web:api.bsky.app#bsky_appview"
    ));
    let e: ScopeSet = "atproto transition:email".parse().unwrap();
    assert!(e.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!e.allows_account(AccountAttr::Email, AccountAction::Manage));
}

#[test]
fn missing_scope_detection_needs_the_exact_shape() {
    assert_eq!(
        scope_missing(
            403,
            "ScopeMissingError",
            Some("Missing required scope \"a b\"")
        )
        .as_deref(),
        Some("")
    );
    assert_eq!(
        scope_missing(403, "ScopeMissingError", Some("nope")).as_deref(),
        Some("")
    );
}

#[test]
fn percent_in_values_round_trips() {
    let s = p("rpc:a.b.c?aud=did:web:localhost%253A2583%23atproto_pds");
    assert_eq!(
        s,
        Scope::Rpc {
            lxm: vec!["a.b.c".into()],
            aud: Audience::Service("did:web:localhost%3A2583#atproto_pds".into())
        }
    );
    assert_eq!(p(&s.to_string()), s);
}
