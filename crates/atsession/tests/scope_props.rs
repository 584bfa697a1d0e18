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

#[path = "support/scope_strategies.rs"]
mod strategies;
use strategies::{nsid, scope_string, spell};

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
