//! Where a browser may be sent after login: a path on this site, never another origin (no
//! open redirect).

/// `to` if it is a path on this site (`/…`, not `//…`, no backslash, no control
/// characters, at most 2048 bytes), with non-ASCII characters percent-encoded (so that it is
/// always a valid `Location`); otherwise `fallback`.
///
/// ```
/// use atsession::auth::local_path;
/// assert_eq!(local_path(Some("/app?tab=1"), "/"), "/app?tab=1");
/// assert_eq!(local_path(Some("https://evil.example/"), "/"), "/");
/// assert_eq!(local_path(Some("//evil.example/"), "/home"), "/home");
/// ```
#[must_use]
pub fn local_path(to: Option<&str>, fallback: &str) -> String {
    match to {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 2048
                && !p.bytes().any(|b| b.is_ascii_control()) =>
        {
            let mut out = String::with_capacity(p.len());
            for c in p.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
            }
            out
        }
        _ => fallback.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn redirects_stay_on_this_site() {
        assert_eq!(local_path(Some("/app?x=1"), "/"), "/app?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "\\\\evil",
            "evil",
            "",
            "/a\nb",
            "/a\tb",
            "javascript:alert(1)",
        ] {
            assert_eq!(local_path(Some(bad), "/"), "/", "{bad:?}");
        }
        assert_eq!(
            local_path(Some(&format!("/{}", "a".repeat(3000))), "/"),
            "/"
        );
        assert_eq!(local_path(None, "/home"), "/home");
        assert_eq!(
            local_path(Some("/caf\u{e9}?q=\u{2603}"), "/"),
            "/caf%C3%A9?q=%E2%98%83"
        );
    }

    proptest::proptest! {
        /// Whatever is asked for, the answer is a path on this site.
        #[test]
        fn never_another_origin(
            prefix in proptest::sample::select(vec!["", "/", "//", "/\\", "\\\\", "/\t", "https://"]),
            rest in "\\PC{0,40}",
        ) {
            let p = local_path(Some(&format!("{prefix}{rest}")), "/");
            proptest::prop_assert!(p.starts_with('/'));
            proptest::prop_assert!(!p.starts_with("//"));
            proptest::prop_assert!(!p.contains('\\'));
            proptest::prop_assert!(!p.bytes().any(|b| b.is_ascii_control()));
            proptest::prop_assert!(http::HeaderValue::from_str(&p).is_ok());
            proptest::prop_assert!(p.is_ascii());
        }
    }
}
