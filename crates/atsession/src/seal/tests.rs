//! Tests across the seal module: bad input, test vectors from Node, sessions, properties.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::clock::{ManualClock, from_millis};

const PW: &str = "some_not_random_password_that_is_at_least_32_characters";
const PW2: &str = "another_password_that_is_also_at_least_32_characters";

fn clock_at(ms: i64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(from_millis(ms)))
}

fn iron() -> (Iron, Arc<ManualClock>) {
    let clock = clock_at(1_700_000_000_000);
    let iron = Iron::new(Passwords::new([("1", PW), ("2", PW2)]).unwrap())
        .with_ttl(Duration::from_secs(3600))
        .with_clock(clock.clone());
    (iron, clock)
}

fn refuse(iron: &Iron, sealed: &str) -> SealError {
    match iron.unseal_bytes(sealed) {
        Ok(_) => panic!("accepted a bad seal"),
        Err(e) => e,
    }
}

#[test]
fn every_bad_input_has_its_error() {
    let (iron, clock) = iron();
    let good = iron.seal(&json!({"did": "did:plc:abc"})).unwrap();
    let f: Vec<&str> = good.split('*').collect();
    let with = |i: usize, v: &str| {
        let mut g = f.clone();
        g[i] = v;
        g.join("*")
    };

    assert_eq!(refuse(&iron, ""), SealError::Empty);
    let junk = "x".repeat(1 << 20);
    assert_eq!(
        refuse(&iron, &junk),
        SealError::TooLong {
            len: 1 << 20,
            max: iron::DEFAULT_MAX_SEAL_LEN
        }
    );
    let star_junk = "*".repeat(1 << 20);
    assert!(matches!(
        refuse(&iron, &star_junk),
        SealError::TooLong { .. }
    ));
    assert_eq!(refuse(&iron, "Fe26.2"), SealError::FieldCount(1));
    assert_eq!(refuse(&iron, &format!("{good}*")), SealError::FieldCount(9));
    assert_eq!(refuse(&iron, &f[..7].join("*")), SealError::FieldCount(7));
    assert_eq!(refuse(&iron, &with(0, "Fe26.1")), SealError::Prefix);
    assert_eq!(refuse(&iron, &with(0, "")), SealError::Prefix);
    assert_eq!(refuse(&iron, &with(5, "12a")), SealError::Expiration);
    assert_eq!(refuse(&iron, &with(5, "-5")), SealError::Expiration);
    assert_eq!(refuse(&iron, &with(5, "0123")), SealError::Expiration);
    assert_eq!(
        refuse(&iron, &with(5, "99999999999999999999999")),
        SealError::Expiration
    );
    assert_eq!(refuse(&iron, &with(5, "1")), SealError::Expired);
    assert_eq!(
        refuse(&iron, &with(1, "9")),
        SealError::UnknownPasswordId { id: "9".into() }
    );
    assert_eq!(
        refuse(&iron, &with(1, "")),
        SealError::UnknownPasswordId {
            id: "default".into()
        }
    );
    assert_eq!(
        refuse(&iron, &with(1, "<script>")),
        SealError::UnknownPasswordId {
            id: "<invalid>".into()
        }
    );
    assert_eq!(
        refuse(&iron, &with(2, "")),
        SealError::EmptySalt(Field::EncryptionSalt)
    );
    assert_eq!(
        refuse(&iron, &with(6, "")),
        SealError::EmptySalt(Field::MacSalt)
    );
    assert_eq!(refuse(&iron, &with(3, "!!!")), SealError::Base64(Field::Iv));
    assert_eq!(
        refuse(&iron, &with(3, "AAAA")),
        SealError::Base64(Field::Iv)
    );
    assert_eq!(
        refuse(&iron, &with(4, "a+b/")),
        SealError::Base64(Field::Ciphertext)
    );
    assert_eq!(
        refuse(&iron, &with(7, &format!("{}=", f[7]))),
        SealError::Base64(Field::Mac)
    );
    assert_eq!(refuse(&iron, &with(7, &"A".repeat(43))), SealError::BadMac);
    // Sealed with password "2" but claiming id "1": the MAC fails.
    let other = Iron::new(Passwords::new([("1", PW2)]).unwrap())
        .with_clock(clock.clone())
        .seal(&1)
        .unwrap();
    assert_eq!(refuse(&iron, &other), SealError::BadMac);
    // Not JSON of the requested shape: a typed error that does not quote the data.
    let e = iron.unseal::<u32>(&good).unwrap_err();
    assert!(matches!(e, SealError::Json(_)));
    assert!(!e.to_string().contains("did:plc"), "{e}");
    // Expired: 60 s of skew past the expiry.
    clock.advance(Duration::from_secs(3600 + 60));
    assert_eq!(refuse(&iron, &good), SealError::Expired);
}

#[test]
fn any_single_change_is_refused() {
    let (iron, _) = iron();
    let good = iron.seal(&json!({"n": 1})).unwrap();
    let bytes = good.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'A', b'0', b'_', b'*', b'~'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut bad = bytes.to_vec();
            bad[i] = replacement;
            let bad = String::from_utf8(bad).unwrap();
            assert!(
                iron.unseal_bytes(&bad).is_err(),
                "byte {i} -> {replacement} accepted"
            );
        }
    }
    // Truncated at every length.
    for n in 0..good.len() {
        assert!(
            iron.unseal_bytes(&good[..n]).is_err(),
            "prefix {n} accepted"
        );
    }
}

#[test]
fn errors_never_quote_secrets() {
    let (iron, _) = iron();
    let good = iron.seal(&json!({"secret": "hunter2"})).unwrap();
    let tampered = good.replacen("Fe26.2*2*", "Fe26.2*1*", 1);
    for e in [
        refuse(&iron, &tampered),
        iron.unseal::<Vec<u8>>(&good).unwrap_err(),
        Passwords::single("pa55w0rd").unwrap_err(),
    ] {
        let text = format!("{e} {e:?}");
        for secret in [PW, PW2, "hunter2", "pa55w0rd"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[derive(serde::Deserialize)]
struct Vector {
    lib: String,
    passwords: Value,
    sealed: String,
    data: Value,
}

fn passwords_of(v: &Value) -> Passwords {
    match v {
        Value::String(s) => Passwords::single(s.clone()).unwrap(),
        Value::Object(m) => Passwords::new(
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
        )
        .unwrap(),
        _ => panic!("bad vector"),
    }
}

/// Seals made by @hapi/iron 7.0.1, iron-webcrypto 2.0.0 and iron-session 8.0.4 and 9.0.1.
#[test]
fn node_test_vectors_unseal() {
    let vectors: Vec<Vector> =
        serde_json::from_str(include_str!("testdata/node_vectors.json")).unwrap();
    assert!(vectors.len() >= 7);
    for v in vectors {
        let sealed = v.sealed.split('~').next().unwrap();
        let exp: Option<i64> = sealed.split('*').nth(5).unwrap().parse().ok();
        // Open at the moment of expiry plus 59 s: still inside the skew.
        let at = exp.map_or(4_000_000_000_000, |e| e + 59_000);
        let clock = clock_at(at);
        let iron = Iron::new(passwords_of(&v.passwords)).with_clock(clock.clone());
        let got: Value = iron
            .unseal(sealed)
            .unwrap_or_else(|e| panic!("{}: {e}", v.lib));
        assert_eq!(got, v.data, "{}", v.lib);
        if exp.is_some() {
            clock.advance(Duration::from_secs(1));
            assert_eq!(refuse(&iron, sealed), SealError::Expired, "{}", v.lib);
        }
        // A flipped MAC character is refused.
        let mut forged = sealed.to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'Q' } else { 'A' });
        clock.set(from_millis(1_700_000_000_000));
        assert!(iron.unseal_bytes(&forged).is_err(), "{}", v.lib);
    }
}

fn sessions(clock: &Arc<ManualClock>) -> SealedSessions<Value> {
    SealedSessions::builder(Passwords::new([("1", PW)]).unwrap())
        .ttl(Duration::from_secs(1000))
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// What a browser would send back for these `Set-Cookie` lines.
fn browser(set: &SetCookies) -> HeaderMap {
    let pairs: Vec<String> = set
        .values()
        .iter()
        .filter_map(|v| {
            let c = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
            (!c.value().is_empty()).then(|| format!("{}={}", c.name(), c.value()))
        })
        .collect();
    let mut h = HeaderMap::new();
    if !pairs.is_empty() {
        h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
    }
    h
}

#[test]
fn session_cookie_round_trip_and_sliding() {
    let clock = clock_at(1_700_000_000_000);
    let s = sessions(&clock);
    let data = json!({"did": "did:plc:abc"});
    let set = s.create(&data).unwrap();
    let line = set.single().unwrap().to_str().unwrap().to_owned();
    assert!(line.contains("Max-Age=940"), "{line}");
    let req = browser(&set);

    let l = s.load(&req).unwrap().unwrap();
    assert_eq!(l.data, data);
    assert_eq!(l.password_id, "1");
    assert!(l.set_cookie.is_none());

    // Just under half the TTL gone: no refresh. Just over: refresh, with a later expiry.
    clock.advance(Duration::from_secs(499));
    assert!(s.load(&req).unwrap().unwrap().set_cookie.is_none());
    clock.advance(Duration::from_secs(2));
    let l = s.load(&req).unwrap().unwrap();
    let refreshed = l.set_cookie.expect("a refresh");
    let l2 = s.load(&browser(&refreshed)).unwrap().unwrap();
    assert_eq!(l2.data, data);
    assert!(l2.expires_at.unwrap() > l.expires_at.unwrap());

    // The old cookie dies after its TTL plus the skew; the refreshed one lives on.
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        s.load(&req).unwrap_err(),
        SealedSessionError::Seal(SealError::Expired)
    );
    assert!(s.load(&browser(&refreshed)).unwrap().is_some());

    // No sliding: never refreshed by time.
    let fixed = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).unwrap())
        .ttl(Duration::from_secs(1000))
        .sliding(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    let req = browser(&fixed.create(&data).unwrap());
    clock.advance(Duration::from_secs(900));
    assert!(fixed.load(&req).unwrap().unwrap().set_cookie.is_none());
}

#[test]
fn rotation_refreshes_old_seals() {
    let clock = clock_at(1_700_000_000_000);
    let old = sessions(&clock);
    let new = SealedSessions::<Value>::builder(Passwords::new([("1", PW), ("2", PW2)]).unwrap())
        .ttl(Duration::from_secs(1000))
        .clock(clock.clone())
        .build()
        .unwrap();
    let req = browser(&old.create(&json!(1)).unwrap());
    let l = new.load(&req).unwrap().unwrap();
    assert_eq!(l.password_id, "1");
    let refreshed = browser(&l.set_cookie.expect("re-sealed with the new password"));
    let l = new.load(&refreshed).unwrap().unwrap();
    assert_eq!(l.password_id, "2");
    assert!(l.set_cookie.is_none());
    // The old configuration cannot read the new seal.
    assert!(matches!(
        old.load(&refreshed),
        Err(SealedSessionError::Seal(
            SealError::UnknownPasswordId { .. }
        ))
    ));
}

#[test]
fn iron_session_suffix_is_optional_on_read() {
    let clock = clock_at(1_700_000_000_000);
    let s = sessions(&clock);
    let token = s.seal_bearer(&json!("x")).unwrap();
    assert!(token.ends_with("~2"));
    let bare = token.trim_end_matches("~2");
    assert_eq!(s.unseal_bearer(bare).unwrap().data, json!("x"));
    assert_eq!(
        s.unseal_bearer(&format!("{bare}~9")).unwrap().data,
        json!("x")
    );
    let plain = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).unwrap())
        .iron_session_suffix(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(!plain.seal_bearer(&json!(1)).unwrap().contains('~'));
}

#[test]
fn large_sessions_are_chunked_then_refused() {
    let clock = clock_at(1_700_000_000_000);
    let s = sessions(&clock);
    // Random-looking data so the seal is as long as the data.
    let big: String = (0..6000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let data = json!({"blob": big});
    let set = s.create(&data).unwrap();
    assert!(set.len() >= 3, "{set:?}");
    for v in set.values() {
        assert!(v.len() <= MAX_COOKIE_BYTES);
    }
    assert_eq!(s.load(&browser(&set)).unwrap().unwrap().data, data);

    let huge = json!({"blob": big.repeat(3)});
    assert!(matches!(
        s.create(&huge),
        Err(SealedSessionError::TooManyChunks { .. })
    ));
    let unchunked = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).unwrap())
        .chunking(false)
        .build()
        .unwrap();
    assert!(matches!(
        unchunked.create(&data),
        Err(SealedSessionError::TooLarge { .. })
    ));
}

#[test]
fn bearer_header_parsing() {
    let clock = clock_at(1_700_000_000_000);
    let s = sessions(&clock);
    let token = s.seal_bearer(&json!({"a": 1})).unwrap();
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    };
    assert!(s.from_bearer(&HeaderMap::new()).unwrap().is_none());
    assert!(s.from_bearer(&with("Basic abc")).unwrap().is_none());
    assert!(s.from_bearer(&with("DPoP abc")).unwrap().is_none());
    assert_eq!(
        s.from_bearer(&with("Bearer ")).unwrap_err(),
        SealedSessionError::Authorization
    );
    assert_eq!(
        s.from_bearer(&with("Bearer")).unwrap_err(),
        SealedSessionError::Authorization
    );
    assert!(matches!(
        s.from_bearer(&with("Bearer junk")),
        Err(SealedSessionError::Seal(SealError::FieldCount(1)))
    ));
    let got = s
        .from_bearer(&with(&format!("bearer {token}")))
        .unwrap()
        .unwrap();
    assert_eq!(got.data, json!({"a": 1}));

    // Refresh: same data, later expiry.
    clock.advance(Duration::from_secs(10));
    let fresh = s.refresh_bearer(&token).unwrap();
    let a = s.unseal_bearer(&token).unwrap();
    let b = s.unseal_bearer(&fresh).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(
        b.expires_at.unwrap() - a.expires_at.unwrap(),
        time::Duration::seconds(10)
    );
}

#[test]
fn construction_checks() {
    assert!(matches!(
        SealedSessions::<Value>::new("x".repeat(31)),
        Err(SealedSessionError::Seal(SealError::PasswordTooShort {
            min: 32
        }))
    ));
    let bad_name = SealedSessions::<Value>::builder(Passwords::single(PW).unwrap())
        .cookie_name("a b")
        .build();
    assert_eq!(bad_name.unwrap_err(), SealedSessionError::InvalidCookieName);
    let s = SealedSessions::<Value>::new(PW).unwrap();
    let clear = s.clear();
    assert_eq!(clear.len(), 1 + MAX_CHUNKS);
    for v in clear.values() {
        assert!(v.to_str().unwrap().contains("Max-Age=0"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_round_trip(data in proptest::collection::vec(any::<u8>(), 0..600), ttl in 0u64..1_000_000) {
        let clock = clock_at(1_700_000_000_000);
        let iron = Iron::new(Passwords::new([("a_1", PW)]).unwrap())
            .with_ttl(Duration::from_secs(ttl))
            .with_clock(clock);
        let sealed = iron.seal_bytes(&data).unwrap();
        let back = iron.unseal_bytes(&sealed).unwrap();
        prop_assert_eq!(&back.data[..], &data[..]);
        prop_assert_eq!(back.password_id, "a_1");
    }

    #[test]
    fn prop_json_round_trip(s in ".{0,200}", n in any::<i64>()) {
        let iron = Iron::new(Passwords::single(PW).unwrap());
        let v = json!({"s": s, "n": n});
        let sealed = iron.seal(&v).unwrap();
        prop_assert_eq!(iron.unseal::<Value>(&sealed).unwrap(), v);
    }

    #[test]
    fn prop_junk_never_panics(s in "\\PC{0,300}") {
        let (iron, _) = iron();
        prop_assert!(iron.unseal_bytes(&s).is_err());
    }

    #[test]
    fn prop_eight_junk_fields_never_panic(fields in proptest::collection::vec("[A-Za-z0-9_\\-=~.]{0,70}", 8)) {
        let (iron, _) = iron();
        let mut f = fields;
        f[0] = "Fe26.2".into();
        f[1] = "1".into();
        prop_assert!(iron.unseal_bytes(&f.join("*")).is_err());
    }
}
