//! Generators of atproto scope strings in varied spellings (positional or named, repeated
//! values, any order, percent-encoding), shared by the scope property and reference tests.
#![allow(dead_code)]

use proptest::prelude::*;

pub fn segment() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

pub fn nsid() -> impl Strategy<Value = String> {
    (segment(), segment(), "[a-z][a-zA-Z0-9]{0,8}").prop_map(|(a, b, n)| format!("{a}.{b}.{n}"))
}

pub fn nsid_or_any() -> impl Strategy<Value = String> {
    prop_oneof![4 => nsid(), 1 => Just("*".to_owned())]
}

pub fn service_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        (segment(), "[a-z_]{1,10}").prop_map(|(h, f)| format!("did:web:{h}.example#{f}")),
        ("[a-z2-7]{24}", "[a-z_]{1,10}").prop_map(|(id, f)| format!("did:plc:{id}#{f}")),
        ("[1-9][0-9]{1,3}", "[a-z_]{1,10}")
            .prop_map(|(p, f)| format!("did:web:localhost%3A{p}#{f}")),
    ]
}

pub fn mime() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*/*".to_owned()),
        "[a-z]{1,8}".prop_map(|t| format!("{t}/*")),
        ("[a-zA-Z]{1,8}", "[a-zA-Z0-9.+-]{1,10}").prop_map(|(t, s)| format!("{t}/{s}")),
    ]
}

/// Percent-encodes some characters that need no encoding, as a client might.
pub fn encode_some(s: &str, mask: u64) -> String {
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
pub fn spell(
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

pub fn actions() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![Just("create"), Just("update"), Just("delete")].prop_map(str::to_owned),
        0..4,
    )
}

/// Valid scope strings of every form, in varied spellings.
pub fn scope_string() -> impl Strategy<Value = String> {
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

/// Scope strings of known resources that are *not* valid, and some that are, close to the
/// edges of the grammar.
pub fn edge_scope_string() -> impl Strategy<Value = String> {
    prop_oneof![
        nsid().prop_map(|n| format!("repo:{}.*", &n[..n.rfind('.').unwrap()])),
        nsid().prop_map(|n| format!("rpc:{n}")),
        Just("rpc?lxm=*&aud=*".to_owned()),
        Just("rpc:*?aud=*".to_owned()),
        nsid().prop_map(|n| format!("repo:{n}?foo=1")),
        (nsid(), nsid()).prop_map(|(a, b)| format!("repo:{a}?collection={b}")),
        nsid().prop_map(|n| format!("repo:{n}?action=read")),
        Just("repo".to_owned()),
        Just("repo:".to_owned()),
        Just("repo?action=create".to_owned()),
        Just("blob:image".to_owned()),
        Just("blob:*/png".to_owned()),
        Just("blob?accept=".to_owned()),
        Just("identity:email".to_owned()),
        Just("identity:*?".to_owned()),
        Just("account:*".to_owned()),
        Just("account:email?action=delete".to_owned()),
        nsid().prop_map(|n| format!("include:{n}?aud=*")),
        nsid().prop_map(|n| format!("include:{n}?aud=did:web:x.example")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:web:x.example")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=*&aud=*")),
        Just("atproto?".to_owned()),
        Just("transition:generic?x=1".to_owned()),
        Just("transition:other".to_owned()),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:web:localhost%253A99999%23svc")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:web:example.com%253A8443%23svc")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:plc:alice0000000000000000000%23svc")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:web:x.example%23a%2520b")),
        nsid().prop_map(|n| format!("rpc:{n}?aud=did:web:x.example%23a%25zz")),
    ]
}
