//! The OAuth client is built in layers, one folder each under `src/oauth/`, and a layer
//! imports only the layers below it:
//!
//! `wire` < `discovery` < `client` < `session`, and `scope` stands alone (it imports no
//! other layer; `client` and `session` may import it).
//!
//! This test reads the code (not the comments) of every file under `src/oauth/<layer>/`,
//! resolves each path that names a module of `crate::oauth` (written from `crate::`, or
//! relative with `super::`/`self::`, by the module the line sits in, inline modules such as
//! `mod tests` included) and fails on each one that reaches a layer the file's layer may
//! not import, or goes through `oauth`'s own re-exports instead of naming a layer. It
//! names the file and the line.

use std::fs;
use std::path::{Path, PathBuf};

/// The layers, and which layers each may import (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("wire", &[]),
    ("discovery", &["wire"]),
    ("scope", &[]),
    ("client", &["wire", "discovery", "scope"]),
    ("session", &["wire", "discovery", "scope", "client"]),
];

fn allowed(from: &str, to: &str) -> bool {
    from == to
        || LAYERS
            .iter()
            .any(|(layer, may)| *layer == from && may.contains(&to))
}

fn is_layer(name: &str) -> bool {
    LAYERS.iter().any(|(layer, _)| *layer == name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `["crate", "oauth", "wire", "dpop"]` for
/// `src/oauth/wire/dpop.rs`, `["crate", "oauth", "wire"]` for `src/oauth/wire/mod.rs`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut path = vec!["crate".to_owned()];
    for part in rel.iter() {
        let part = part.to_string_lossy();
        let part = part.strip_suffix(".rs").unwrap_or(&part);
        if part != "mod" {
            path.push(part.to_owned());
        }
    }
    path
}

/// The code of a line: nothing of a comment line, and a line's trailing `// …` cut off.
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    line.find(" //").map_or(line, |i| &line[..i])
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The names at the top of a `{…}` group that starts `s` (after the `{`): `a` and `b` in
/// `{a::x, b::{y, z}}`.
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expect = true;
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' if depth == 0 => break,
            b'}' => depth -= 1,
            b',' if depth == 0 => expect = true,
            c if expect && (c.is_ascii_alphabetic() || c == b'_') => {
                let id = ident_at(&s[i..]);
                heads.push(id.to_owned());
                i += id.len();
                expect = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// Every module of `crate::oauth` that a line's paths reach: `Ok(layer)` for a layer,
/// `Err(name)` for anything else under `oauth` (its re-exports, or `oauth` itself).
fn reached(code: &str, module: &[String]) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = i == 0
            || !code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let start = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| rest.starts_with(**p));
        let (Some(_), true) = (start, boundary) else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        // Read the path: `seg::seg::…`, ending at a group `{`, a name, or anything else.
        let mut path: Vec<String> = Vec::new();
        let mut j = 0;
        let mut group = None;
        loop {
            let seg = ident_at(&rest[j..]);
            if seg.is_empty() {
                if rest[j..].starts_with('{') {
                    group = Some(group_heads(&rest[j + 1..]));
                }
                break;
            }
            path.push(seg.to_owned());
            j += seg.len();
            if rest[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        i += j.max(1);
        // Resolve it from the module the line is in.
        let mut resolved: Vec<String> = Vec::new();
        let mut segs = path.into_iter().peekable();
        match segs.peek().map(String::as_str) {
            Some("crate") => {
                segs.next();
                resolved.push("crate".to_owned());
            }
            Some("super" | "self") => {
                resolved.extend(module.iter().cloned());
                while let Some(s) = segs.peek() {
                    match s.as_str() {
                        "super" => {
                            resolved.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    segs.next();
                }
            }
            _ => continue,
        }
        resolved.extend(segs);
        if resolved.len() < 2 || resolved[0] != "crate" || resolved[1] != "oauth" {
            continue;
        }
        let heads = match (resolved.get(2), group) {
            (Some(name), _) => vec![name.clone()],
            (None, Some(heads)) => heads,
            (None, None) => vec![String::new()],
        };
        for head in heads {
            if is_layer(&head) {
                out.push(Ok(head));
            } else if head != "*" {
                out.push(Err(head));
            }
        }
    }
    out
}

/// The import violations of the code under `src/` (the crate's source directory).
fn violations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    rust_files(&src.join("oauth"), &mut files);
    for file in files {
        let module = module_of(src, &file);
        // Files directly in `oauth/` (its `mod.rs`) sit above every layer.
        let Some(layer) = module.get(2).filter(|l| is_layer(l)).cloned() else {
            continue;
        };
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        // Inline modules (`mod tests {`), by their indentation (the code is rustfmt'ed).
        let mut inline: Vec<(usize, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim();
            if let Some((open, _)) = inline.last()
                && *open == indent
                && trimmed.starts_with('}')
            {
                inline.pop();
                continue;
            }
            let code = code_of(line);
            let mut here = module.clone();
            here.extend(inline.iter().map(|(_, m)| m.clone()));
            for target in reached(code, &here) {
                let why = match target {
                    Ok(to) if allowed(&layer, &to) => continue,
                    Ok(to) => format!("the {layer} layer imports the {to} layer"),
                    Err(name) if name.is_empty() => {
                        format!("the {layer} layer imports `crate::oauth` itself")
                    }
                    Err(name) => format!(
                        "the {layer} layer reaches `crate::oauth::{name}` through oauth's \
                         re-exports: name the layer it lives in"
                    ),
                };
                found.push(format!(
                    "{}:{}: {why}: {}",
                    file.strip_prefix(src).unwrap_or(&file).display(),
                    n + 1,
                    line.trim()
                ));
            }
            let decl = trimmed
                .strip_prefix("pub(crate) ")
                .or_else(|| trimmed.strip_prefix("pub(super) "))
                .or_else(|| trimmed.strip_prefix("pub "))
                .unwrap_or(trimmed);
            if let Some(rest) = decl.strip_prefix("mod ")
                && rest.trim_end().ends_with('{')
            {
                inline.push((indent, ident_at(rest).to_owned()));
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_layer_has_its_folder() {
    for (layer, _) in LAYERS {
        let dir = src().join("oauth").join(layer);
        assert!(
            dir.join("mod.rs").is_file(),
            "{} has no mod.rs",
            dir.display()
        );
    }
}

#[test]
fn no_layer_imports_one_above_it() {
    let found = violations(&src());
    assert!(
        found.is_empty(),
        "imports against the layering of src/oauth:\n{}",
        found.join("\n")
    );
}

/// The checker itself: it sees upward imports however they are written.
#[test]
fn the_check_finds_upward_imports() {
    let module = |s: &str| -> Vec<String> { s.split("::").map(str::to_owned).collect() };
    let wire = module("crate::oauth::wire::dpop");
    let layers = |code: &str, m: &[String]| -> Vec<Result<String, String>> { reached(code, m) };
    let ok = |s: &str| Ok::<String, String>(s.to_owned());
    assert_eq!(
        layers("use crate::oauth::client::PROBE;", &wire),
        vec![ok("client")]
    );
    assert_eq!(
        layers("use super::super::session::getter::X;", &wire),
        vec![ok("session")]
    );
    assert_eq!(layers("use super::http::Fetched;", &wire), vec![ok("wire")]);
    assert_eq!(
        layers("use crate::oauth::{wire::http, client::{a, b}};", &wire),
        vec![ok("wire"), ok("client")]
    );
    assert_eq!(
        layers(
            "let x = crate::oauth::session::f(crate::syntax::is_nsid(s));",
            &wire
        ),
        vec![ok("session")]
    );
    assert_eq!(
        layers("use crate::oauth::SessionGetter;", &wire),
        vec![Err("SessionGetter".to_owned())]
    );
    assert_eq!(layers("use crate::oauth;", &wire), vec![Err(String::new())]);
    // In `mod tests` of wire/dpop.rs, `super::super` is the wire layer.
    let tests = module("crate::oauth::wire::dpop::tests");
    assert_eq!(
        layers("use super::super::http::X;", &tests),
        vec![ok("wire")]
    );
    assert_eq!(layers("use super::*;", &tests), vec![ok("wire")]);
    assert!(layers("use crate::store::oauth::GrantId;", &wire).is_empty());
    assert!(!allowed("discovery", "scope"));
    assert!(!allowed("scope", "wire"));
    assert!(allowed("client", "scope"));
    assert!(!allowed("client", "session"));
}
