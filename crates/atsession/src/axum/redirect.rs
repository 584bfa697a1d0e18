//! Where a browser may be sent after login: a path on this site, never another origin (no
//! open redirect).

/// `to` if it is a path on this site (`/…`, not `//…`, no backslash, no control
/// characters, at most 2048 bytes); otherwise `fallback`.
///
/// ```
/// use atsession::axum::local_path;
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
            p.to_owned()
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
        }
    }
}
