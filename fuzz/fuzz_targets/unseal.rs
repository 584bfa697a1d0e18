//! The unseal parser on arbitrary input: it must return an error or data, never panic, and
//! never accept a seal nobody made with the password.
#![no_main]

use std::sync::{Arc, OnceLock};

use atsession::clock::{ManualClock, from_millis};
use atsession::seal::{Iron, Passwords, SealedSessions};
use libfuzzer_sys::fuzz_target;

const PW: &str = "some_not_random_password_that_is_at_least_32_characters";

struct Fixture {
    single: Iron,
    ring: Iron,
    sessions: SealedSessions<serde_json::Value>,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let clock = Arc::new(ManualClock::new(from_millis(1_700_000_000_000)));
        let single = Iron::new(Passwords::single(PW).expect("valid")).with_clock(clock.clone());
        let ring = Iron::new(
            Passwords::new([
                ("1", PW),
                ("default", "another_password_that_is_at_least_32_chars"),
            ])
            .expect("valid"),
        )
        .with_clock(clock.clone());
        let sessions = SealedSessions::builder(Passwords::new([("1", PW)]).expect("valid"))
            .clock(clock)
            .build()
            .expect("valid");
        let valid = single.seal(&serde_json::json!({"a": 1})).expect("seals");
        Fixture {
            single,
            ring,
            sessions,
            valid,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // 1. Arbitrary text: an error or data, never a panic, and no seal that was not made here.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = f.ring.unseal_bytes(s);
        let _ = f.sessions.unseal_bearer(s);
        if f.single.unseal_bytes(s).is_ok() {
            assert_eq!(s, f.valid, "accepted a seal not made with the password");
        }
    }
    // 2. The valid seal with bytes overwritten at positions the input picks: any change is
    //    refused (the MAC covers every field it does not check directly).
    let mut mutated = f.valid.clone().into_bytes();
    for pair in data.chunks_exact(2) {
        let at = usize::from(pair[0]) * 7 % mutated.len();
        mutated[at] = pair[1];
    }
    if let Ok(m) = String::from_utf8(mutated) {
        if m != f.valid {
            assert!(
                f.single.unseal_bytes(&m).is_err(),
                "accepted a modified seal"
            );
        }
    }
});
