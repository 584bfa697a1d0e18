//! Property tests of the scope model: parse → print → parse is the identity on generated
//! scopes (in every spelling: positional or named, repeated values, any order, percent
//! encoding), and hostile scope strings give typed errors, never a panic.
//!
//! `cargo test -p atsession --features oauth --test scope_props`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use atsession::oauth::scope::{
    MAX_SCOPE_STRING_LEN, MAX_SCOPES, RepoAction, Scope, ScopeError, ScopeSet,
};
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

fn nsid() -> impl Strategy<Value = String> {
    (segment(), segment(), "[a-z][a-zA-Z0-9]{0,8}").prop_map(|(a, b, n)| format!("{a}.{b}.{n}"))
}

fn nsid_or_any() -> impl Strategy<Value = String> {
    prop_oneof![4 => nsid(), 1 => Just("*".to_owned())]
}

fn service_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        (segment(), "[a-z_]{1,10}").prop_map(|(h, f)| format!("did:web:{h}.example#{f}")),
        ("[a-z2-7]{24}", "[a-z_]{1,10}").prop_map(|(id, f)| format!("did:plc:{id}#{f}")),
        ("[0-9]{2,5}", "[a-z_]{1,10}").prop_map(|(p, f)| format!("did:web:localhost%3A{p}#{f}")),
    ]
}

fn mime() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*/*".to_owned()),
        "[a-z]{1,8}".prop_map(|t| format!("{t}/*")),
        ("[a-zA-Z]{1,8}", "[a-zA-Z0-9.+-]{1,10}").prop_map(|(t, s)| format!("{t}/{s}")),
    ]
}

/// Percent-encodes some characters that need no encoding, as a client might.
fn encode_some(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 64)) != 0 && c.is_ascii_alphanumeric() {
                format!("%{:02X}", c as u32)
            } else if c == '#' {
                "%23".to_owned()
            } else if c == '%' {
                "%25".to_owned()
            } else if c == '+' {
                "%2B".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `resource` with the list `values` of the positional parameter `name`: positional when
/// there is one value and `positional` says so, named otherwise; then the extra params.
fn spell(
    resource: &str,
    name: &str,
    values: &[String],
    positional: bool,
    extra: &[(String, String)],
    mask: u64,
) -> String {
    let mut s = resource.to_owned();
    let mut params: Vec<(String, String)> = Vec::new();
    if positional && values.len() == 1 {
        s.push(':');
        s.push_str(&encode_some(&values[0], mask));
    } else {
        params.extend(values.iter().map(|v| (name.to_owned(), v.clone())));
    }
    params.extend(extra.iter().cloned());
    for (i, (k, v)) in params.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&encode_some(v, mask.rotate_left(7)));
    }
    s
}

fn actions() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![Just("create"), Just("update"), Just("delete")].prop_map(str::to_owned),
        0..4,
    )
}

/// Valid scope strings of every form, in varied spellings.
fn scope_string() -> impl Strategy<Value = String> {
    let repo = (
        proptest::collection::vec(nsid_or_any(), 1..4),
        actions(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(c, a, pos, mask)| {
            let extra: Vec<_> = a.into_iter().map(|a| ("action".to_owned(), a)).collect();
            spell("repo", "collection", &c, pos, &extra, mask)
        });
    let rpc = (
        proptest::collection::vec(nsid(), 1..4),
        prop_oneof![Just("*".to_owned()), service_ref()],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(l, aud, pos, mask)| {
            spell("rpc", "lxm", &l, pos, &[("aud".to_owned(), aud)], mask)
        });
    let rpc_any_method = (service_ref(), any::<u64>()).prop_map(|(aud, mask)| {
        spell(
            "rpc",
            "lxm",
            &["*".to_owned()],
            true,
            &[("aud".to_owned(), aud)],
            mask,
        )
    });
    let blob = (
        proptest::collection::vec(mime(), 1..4),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(m, pos, mask)| spell("blob", "accept", &m, pos, &[], mask));
    let account = (
        prop_oneof![Just("email"), Just("repo"), Just("status")],
        proptest::collection::vec(prop_oneof![Just("read"), Just("manage")], 0..3),
        any::<bool>(),
    )
        .prop_map(|(attr, acts, pos)| {
            let extra: Vec<_> = acts
                .into_iter()
                .map(|a| ("action".to_owned(), a.to_owned()))
                .collect();
            spell("account", "attr", &[attr.to_owned()], pos, &extra, 0)
        });
    let identity = (prop_oneof![Just("handle"), Just("*")], any::<bool>())
        .prop_map(|(a, pos)| spell("identity", "attr", &[a.to_owned()], pos, &[], 0));
    let include = (
        nsid(),
        proptest::option::of(service_ref()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, aud, pos, mask)| {
            let extra: Vec<_> = aud.into_iter().map(|a| ("aud".to_owned(), a)).collect();
            spell("include", "nsid", &[n], pos, &extra, mask)
        });
    let statics = prop_oneof![
        Just("atproto".to_owned()),
        Just("transition:generic".to_owned()),
        Just("transition:chat.bsky".to_owned()),
        Just("transition:email".to_owned()),
    ];
    let unknown = ("[a-z]{3,8}", "[a-zA-Z0-9.:=&?*/-]{0,20}")
        .prop_filter("not a known resource", |(r, _)| {
            ![
                "repo",
                "rpc",
                "blob",
                "account",
                "identity",
                "include",
                "atproto",
                "transition",
            ]
            .contains(&r.as_str())
        })
        .prop_map(|(r, rest)| format!("{r}:{rest}"));
    prop_oneof![
        repo,
        rpc,
        rpc_any_method,
        blob,
        account,
        identity,
        include,
        statics,
        unknown
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_print_parse_is_the_identity(s in scope_string()) {
        let a = Scope::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let printed = a.to_string();
        let b = Scope::parse(&printed).unwrap_or_else(|e| panic!("{s} printed as {printed}: {e}"));
        prop_assert_eq!(&a, &b, "{} printed as {}", s, printed);
        prop_assert_eq!(b.to_string(), printed);
    }

    #[test]
    fn sets_normalise_and_round_trip(v in proptest::collection::vec(scope_string(), 0..12)) {
        let joined = v.join(" ");
        let a = ScopeSet::parse(&joined).unwrap();
        let printed = a.to_string();
        let b: ScopeSet = printed.parse().unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(b.to_string(), printed.clone());
        // Every scope once, in canonical (sorted) order.
        let parts: Vec<&str> = if printed.is_empty() { vec![] } else { printed.split(' ').collect() };
        let mut sorted = parts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(parts, sorted);
        // What a server grants reads the same.
        prop_assert_eq!(ScopeSet::parse_granted(&joined).unwrap(), a);
    }

    #[test]
    fn matching_does_not_depend_on_the_spelling(
        c in nsid(), other in nsid(), mask in any::<u64>(), pos in any::<bool>()
    ) {
        let s = spell("repo", "collection", std::slice::from_ref(&c), pos, &[("action".into(), "create".into())], mask);
        let set = ScopeSet::parse(&format!("atproto {s}")).unwrap();
        prop_assert!(set.allows_repo(&c, RepoAction::Create));
        prop_assert!(!set.allows_repo(&c, RepoAction::Delete));
        prop_assert_eq!(set.allows_repo(&other, RepoAction::Create), other == c);
    }

    #[test]
    fn arbitrary_printable_strings_never_panic(s in "[ -~]{0,200}") {
        // Either a typed error, or a set that round-trips.
        if let Ok(set) = ScopeSet::parse(&s) {
            let again: ScopeSet = set.to_string().parse().unwrap();
            prop_assert_eq!(again, set);
        }
        let _ = ScopeSet::parse_granted(&s);
    }

    #[test]
    fn control_characters_are_refused(
        prefix in "[a-z:]{0,20}", c in prop_oneof![0u8..0x20, Just(0x7fu8)], suffix in "[a-z]{0,20}"
    ) {
        let s = format!("{prefix}{}{suffix}", char::from(c));
        let e = ScopeSet::parse(&s).unwrap_err();
        prop_assert_eq!(e.clone(), ScopeError::ControlCharacter { position: prefix.len() });
        prop_assert_eq!(ScopeSet::parse_granted(&s).unwrap_err(), e);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = ScopeSet::parse(&s);
        let _ = ScopeSet::parse_granted(&s);
        let _ = Scope::parse(&s);
    }
}

#[test]
fn hostile_strings_give_typed_errors() {
    // Overlong.
    let long = "a".repeat(MAX_SCOPE_STRING_LEN + 1);
    assert!(matches!(
        ScopeSet::parse(&long),
        Err(ScopeError::TooLong { .. })
    ));
    assert!(matches!(
        ScopeSet::parse_granted(&long),
        Err(ScopeError::TooLong { .. })
    ));
    let one_long = format!("repo:{}", "a".repeat(20_000));
    assert!(matches!(
        ScopeSet::parse(&one_long),
        Err(ScopeError::ScopeTooLong { .. })
    ));
    assert!(matches!(
        Scope::parse(&one_long),
        Err(ScopeError::ScopeTooLong { .. })
    ));
    // 10,000 scopes.
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("repo:com.example.n{i}"))
        .collect();
    let many = many.join(" ");
    assert!(many.len() <= MAX_SCOPE_STRING_LEN * 4);
    let e = ScopeSet::parse(&many).unwrap_err();
    assert!(
        matches!(e, ScopeError::TooMany { .. } | ScopeError::TooLong { .. }),
        "{e:?}"
    );
    let short_many = vec!["a"; 10_000].join(" ");
    assert_eq!(
        ScopeSet::parse(&short_many),
        Err(ScopeError::TooMany { max: MAX_SCOPES })
    );
    assert_eq!(
        ScopeSet::parse_granted(&short_many),
        Err(ScopeError::TooMany { max: MAX_SCOPES })
    );
    // Exactly at the limit is fine.
    let at_limit = vec!["atproto"; MAX_SCOPES].join(" ");
    assert_eq!(ScopeSet::parse(&at_limit).unwrap().len(), 1);
    // Control characters, NUL, DEL, newlines, non-ASCII.
    for (s, pos) in [
        ("atproto\nrepo:*", 7),
        ("atproto\0", 7),
        ("\u{7f}atproto", 0),
        ("atproto\r\n", 7),
    ] {
        assert_eq!(
            ScopeSet::parse(s),
            Err(ScopeError::ControlCharacter { position: pos }),
            "{s:?}"
        );
    }
    assert_eq!(
        ScopeSet::parse("repo:com.example.ü"),
        Err(ScopeError::NonAscii { position: 17 })
    );
    // An error never quotes more than 200 characters of the input.
    let e = ScopeSet::parse(&format!("repo:{}", "x.".repeat(3000))).unwrap_err();
    assert!(e.to_string().len() < 500, "{e}");
}
