//! The egress broker's rules: `[[net.http]]` entries that admit requests to an
//! origin by method and path, and `[net.secrets]`, credentials the host holds
//! for those entries and the guest never sees.
//!
//! # How a request's path is decided
//!
//! The path a guest sets (`set-path-with-query`) is split at its first `?`;
//! the query is never matched by `paths` or `deny-paths` and is sent as
//! written (it may not hold control bytes, spaces, non-ASCII bytes or `#`).
//! The path is then checked and normalised by [`RequestPath::parse`], and the
//! host sends exactly the normalised path it decided on:
//!
//! - it must start with `/` (origin form); `*` and absolute forms are refused;
//! - a percent-escape of an unreserved character (letters, digits, `-`, `.`,
//!   `_`, `~`) is decoded (`%61` is `a`, `%2e` is `.`); other escapes are kept,
//!   their hex digits written in capitals, except `%2F` (`/`), `%5C` (`\`),
//!   `%3B` (`;`), `%25` (`%`) and control bytes, which are refused: servers
//!   and proxies disagree on whether they separate segments or are decoded
//!   twice;
//! - after decoding, a `.` or `..` segment is refused (so `/a/../admin` and
//!   `/a/%2e%2e/admin` are), and so is an empty segment (`//`) other than a
//!   trailing `/`: the host does not resolve them, since the server might not
//!   resolve them the same way;
//! - a raw `\`, `;` (path parameters, which some servers strip), control or
//!   non-ASCII byte, space or any other byte outside RFC 3986's `pchar` is
//!   refused.
//!
//! Paths are compared case-sensitively, byte for byte, with patterns
//! normalised the same way.

use super::error::invalid;
use super::net::HttpRule;
use super::{Input, Policy, PolicyError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The longest name a secret may have.
const MAX_SECRET_NAME: usize = 64;

/// A request path, checked and normalised (see the module docs): what
/// `[[net.http]]` rules decide and what the host then sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The normalised path, starting with `/`.
    pub path: String,
    /// The query after `?`, as written, if any.
    pub query: Option<String>,
}

impl RequestPath {
    /// Checks and normalises `path_with_query` as the module docs say.
    ///
    /// # Errors
    ///
    /// Why the spelling is refused, in words that fit after "the path has".
    pub fn parse(path_with_query: &str) -> Result<RequestPath, String> {
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_with_query, None),
        };
        if !path.starts_with('/') {
            return Err("no leading `/` (only origin-form paths are sent)".into());
        }
        let path = normalise_path(path)?;
        if let Some(query) = query
            && let Some(b) = query.bytes().find(|&b| b <= b' ' || b >= 0x7f || b == b'#')
        {
            return Err(format!("a query with {}", byte_words(b)));
        }
        Ok(RequestPath {
            path,
            query: query.map(str::to_string),
        })
    }

    /// The path and query as sent.
    pub fn to_sent(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

fn byte_words(b: u8) -> String {
    match b {
        b' ' => "a space".into(),
        b if b < b' ' || b == 0x7f => format!("a control byte (0x{b:02x})"),
        b if b >= 0x80 => "a non-ASCII byte (percent-encode it)".into(),
        b => format!("`{}`", b as char),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Bytes a path may hold as written: `pchar` without `;` and `%` (escapes are
/// read apart), plus `/`.
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,=:@/".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn normalise_path(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let decoded = match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => hi << 4 | lo,
                _ => return Err("a `%` not followed by two hex digits".into()),
            };
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else if b"/\\;%".contains(&decoded) || decoded < b' ' || decoded == 0x7f {
                return Err(format!(
                    "an encoded {} (`%{decoded:02X}`), which servers read differently",
                    byte_words(decoded)
                ));
            } else {
                out.push_str(&format!("%{decoded:02X}"));
            }
            i += 3;
            continue;
        }
        if !is_path_byte(b) {
            return Err(match b {
                b'\\' => "a backslash".into(),
                b';' => "a `;` (path parameters, which some servers strip)".into(),
                b => byte_words(b),
            });
        }
        out.push(b as char);
        i += 1;
    }
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            "" if n + 1 < segments.len() => return Err("an empty segment (`//`)".into()),
            "." | ".." => return Err(format!("a `{segment}` segment (after decoding)")),
            _ => {}
        }
    }
    Ok(out)
}

/// A `paths` or `deny-paths` pattern: an absolute path whose segments are
/// matched one by one; `*` matches any run of characters within a segment,
/// a whole `**` segment any number of segments (none included).
#[derive(Debug, Clone)]
pub struct HttpPathGlob {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    AnyDepth,
    Literal(String),
    Wild(regex::Regex),
}

impl PartialEq for HttpPathGlob {
    fn eq(&self, other: &HttpPathGlob) -> bool {
        self.text == other.text
    }
}
impl Eq for HttpPathGlob {}

impl HttpPathGlob {
    /// Parses a pattern such as `/repos/acme/**` or `/users/*/keys`.
    ///
    /// # Errors
    ///
    /// A message naming the pattern: it must be a path as the host sends
    /// one (see [`RequestPath::parse`]), without `?`, with `**` standing alone.
    pub fn new(pattern: &str) -> Result<HttpPathGlob, String> {
        let bad = |why: &str| format!("path pattern `{}` {why}", pattern.escape_debug());
        if pattern.len() > 1024 || pattern.contains(['?', '#']) {
            return Err(bad(
                "must be at most 1024 bytes, without `?` or `#` (queries are not matched)",
            ));
        }
        let normal = RequestPath::parse(pattern)
            .map_err(|why| bad(&format!("is not a path the host would send: it has {why}")))?;
        let mut segments = Vec::new();
        for s in normal.path[1..].split('/') {
            segments.push(match s {
                "**" => Segment::AnyDepth,
                s if s.contains("**") => {
                    return Err(bad("has `**` inside a segment; `**` must stand alone, as in \"/a/**\""));
                }
                s if s.contains('*') => {
                    Segment::Wild(super::name_regex(s).map_err(|e| bad(&format!("cannot be matched: {e}")))?)
                }
                s => Segment::Literal(s.to_string()),
            });
        }
        Ok(HttpPathGlob {
            text: normal.path,
            segments,
        })
    }

    /// The pattern, normalised.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches `path`, a path [`RequestPath::parse`] made.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::AnyDepth, rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((first, others)) => {
                let here = match segment {
                    Segment::Literal(l) => l == first,
                    Segment::Wild(re) => re.is_match(first),
                    Segment::AnyDepth => unreachable!("handled above"),
                };
                here && match_segments(rest, others)
            }
            None => false,
        },
    }
}

impl fmt::Display for HttpPathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a secret's value is read from, when a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A host environment variable of the process that runs the guest.
    Env(String),
    /// A host file: a regular file, not a link, readable by its owner only,
    /// at most [`MAX_SECRET_BYTES`] bytes; one trailing newline is dropped.
    File(PathBuf),
}

/// The most bytes a secret's value may have.
pub const MAX_SECRET_BYTES: u64 = 16 * 1024;

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "host environment variable `{var}`"),
            SecretSource::File(path) => write!(f, "host file `{}`", path.display()),
        }
    }
}

/// Checks a secret's name: 1 to 64 ASCII letters, digits, `-` and `_`.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name `{}` must be 1 to {MAX_SECRET_NAME} ASCII letters, digits, `-` or `_`",
            name.escape_debug()
        ))
    }
}

/// One piece of a header template or an environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text as written.
    Literal(String),
    /// `${secret.NAME}`: the secret's value.
    Secret(String),
    /// `${placeholder.NAME}`: the run's placeholder for the secret.
    Placeholder(String),
}

/// Splits `text` into literal text, `${secret.NAME}` and `${placeholder.NAME}`.
///
/// # Errors
///
/// A `${` that opens neither form, or a bad secret name.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(TemplatePart::Literal(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or("a `${` without its closing `}`; write `${secret.NAME}` or `${placeholder.NAME}`")?;
        let inner = &after[..end];
        let part = if let Some(name) = inner.strip_prefix("secret.") {
            check_secret_name(name)?;
            TemplatePart::Secret(name.to_string())
        } else if let Some(name) = inner.strip_prefix("placeholder.") {
            check_secret_name(name)?;
            TemplatePart::Placeholder(name.to_string())
        } else {
            return Err(format!(
                "`${{{}}}` is neither `${{secret.NAME}}` nor `${{placeholder.NAME}}`",
                inner.escape_debug()
            ));
        };
        parts.push(part);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

/// `parts` written back as the template text a policy writes them in
/// (`${secret.NAME}`, `${placeholder.NAME}` and literal text).
pub fn template_text(parts: &[TemplatePart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            TemplatePart::Literal(text) => text.clone(),
            TemplatePart::Secret(name) => format!("${{secret.{name}}}"),
            TemplatePart::Placeholder(name) => format!("${{placeholder.{name}}}"),
        })
        .collect()
}

/// The names of the secrets `parts` refers to in the given form.
pub(crate) fn secrets_in(parts: &[TemplatePart]) -> impl Iterator<Item = &str> {
    parts.iter().filter_map(|p| match p {
        TemplatePart::Secret(name) | TemplatePart::Placeholder(name) => Some(name.as_str()),
        TemplatePart::Literal(_) => None,
    })
}

/// A header an entry sets on every request it admits, replacing any header of
/// that name the guest set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedHeader {
    /// The header's name, lower-cased.
    pub name: String,
    /// Its value: text and `${secret.NAME}` references.
    pub value: Vec<TemplatePart>,
}

/// Header names an entry may not set: the host decides them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

impl InjectedHeader {
    /// Parses one `headers` pair.
    ///
    /// # Errors
    ///
    /// A bad header name, one the host decides, a value with control bytes or
    /// a placeholder (headers carry the secret itself).
    pub fn parse(name: &str, value: &str) -> Result<InjectedHeader, String> {
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!("`{}` is not a header name", name.escape_debug()));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!("header `{lower}` is set by the host and cannot be injected"));
        }
        let parts = parse_template(value).map_err(|why| format!("header `{lower}`: {why}"))?;
        for part in &parts {
            match part {
                TemplatePart::Placeholder(_) => {
                    return Err(format!(
                        "header `{lower}` names a placeholder; an injected header carries the secret itself: write `${{secret.NAME}}`"
                    ));
                }
                TemplatePart::Literal(text) if text.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) => {
                    return Err(format!("header `{lower}` has a control character in its value"));
                }
                _ => {}
            }
        }
        Ok(InjectedHeader {
            name: lower,
            value: parts,
        })
    }
}

/// Where a bound secret's placeholder is replaced with its value. Headers
/// always; the query only when an entry says so. Bodies never: the body is
/// streamed after the request is decided, in chunks a placeholder may
/// straddle, under a `Content-Length` the guest already set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaceholderIn {
    /// Also in the query string.
    pub query: bool,
}

/// One `[[net.http]]` entry: requests to its origin are admitted when their
/// method is listed (absent: any) and their path matches one of `paths`
/// (absent: any) and none of `deny-paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEntry {
    /// The origin, as `[net] http` entries are written.
    pub origin: HttpRule,
    /// Methods admitted, in capitals; empty: all.
    pub methods: Vec<String>,
    /// Paths admitted; empty: all.
    pub paths: Vec<HttpPathGlob>,
    /// Paths refused whatever `paths` and other entries say.
    pub deny_paths: Vec<HttpPathGlob>,
    /// Headers set on every request the entry admits.
    pub headers: Vec<InjectedHeader>,
    /// Secrets whose placeholders the entry's requests may carry (those
    /// named by `secrets` and those its headers use), sorted.
    pub secrets: Vec<String>,
    /// Where placeholders are replaced.
    pub placeholder_in: PlaceholderIn,
}

impl HttpEntry {
    /// Whether the entry lists `method` (or lists none).
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// Whether `path` matches `paths` (or there are none).
    pub fn allows_path(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|g| g.matches(path))
    }

    /// The first `deny-paths` pattern matching `path`.
    pub fn denies(&self, path: &str) -> Option<&HttpPathGlob> {
        self.deny_paths.iter().find(|g| g.matches(path))
    }
}

impl fmt::Display for HttpEntry {
    /// One line: origin, methods, paths, deny-paths, secrets (names only).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: Vec<&str>| items.join(", ");
        write!(f, "{}", self.origin)?;
        if self.methods.is_empty() {
            f.write_str(", any method")?;
        } else {
            write!(
                f,
                ", methods {}",
                list(self.methods.iter().map(String::as_str).collect())
            )?;
        }
        if self.paths.is_empty() {
            f.write_str(", any path")?;
        } else {
            write!(
                f,
                ", paths {}",
                list(self.paths.iter().map(HttpPathGlob::as_str).collect())
            )?;
        }
        if !self.deny_paths.is_empty() {
            write!(
                f,
                ", except {}",
                list(self.deny_paths.iter().map(HttpPathGlob::as_str).collect())
            )?;
        }
        for header in &self.headers {
            let names: Vec<&str> = secrets_in(&header.value).collect();
            write!(f, ", sets header `{}` from secret {}", header.name, names.join(", "))?;
        }
        if !self.secrets.is_empty() {
            write!(f, ", may carry secret {}", self.secrets.join(", "))?;
            if self.placeholder_in.query {
                f.write_str(" (placeholders replaced in headers and query)")?;
            }
        }
        Ok(())
    }
}

/// Checks a method name as an entry lists it.
///
/// # Errors
///
/// A name that is not an HTTP token in capitals.
pub fn check_method(method: &str) -> Result<String, String> {
    let ok = !method.is_empty()
        && method.len() <= 32
        && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    if ok {
        Ok(method.to_string())
    } else {
        Err(format!(
            "method `{}` must be written in capitals, as sent (`GET`, `POST`)",
            method.escape_debug()
        ))
    }
}

/// `[net.secrets]`, resolved: each secret's name and where its value is read.
pub type Secrets = BTreeMap<String, SecretSource>;

/// The host file a secret is read from, with its folder canonicalised (the
/// file itself is opened without following a link when a run starts).
fn canonical_file(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |p| p.join(name))
        }
        _ => path.to_path_buf(),
    }
}

/// What only the merged policy can show about its secrets: every secret an
/// entry or `env.vars` names is declared; no `env.vars` value holds a
/// secret itself; and no secret is reachable by the guest another way (its
/// variable inherited, its file inside a filesystem grant or the stdin file).
/// Secret files are made canonical here.
pub(super) fn check_secrets(policy: &mut Policy) -> Result<(), PolicyError> {
    let undeclared = |name: &str, whose: &str, key: &str| {
        invalid(format!(
            "{whose} names secret `{name}`, which [net.secrets] does not declare; add `{name} = {{ env = \"VARIABLE\" }}` to [net.secrets]"
        ))
        .key(key)
    };
    for entry in &policy.net.http_entries {
        if let Some(name) = entry.secrets.iter().find(|n| !policy.net.secrets.contains_key(*n)) {
            return Err(undeclared(
                name,
                &format!("the [[net.http]] entry for `{}`", entry.origin),
                "net.http",
            ));
        }
    }
    for (var, value) in &policy.env_vars {
        let key = format!("env.vars.{var}");
        if value.contains("${secret.") {
            return Err(invalid(format!(
                "env.vars `{var}` would hand the guest a secret's value; write `${{placeholder.NAME}}` for a stand-in the host swaps for the value in requests the secret is bound to"
            ))
            .key(&key));
        }
        for name in placeholders_in(value) {
            let name = name.map_err(|why| invalid(format!("env.vars `{var}`: {why}")).key(&key))?;
            if !policy.net.secrets.contains_key(name) {
                return Err(undeclared(name, &format!("env.vars `{var}`"), &key));
            }
        }
    }
    let stdin = match &policy.stdin {
        Input::File(path) => Some(canonical_file(path)),
        _ => None,
    };
    for (name, source) in &mut policy.net.secrets {
        let key = format!("net.secrets.{name}");
        match source {
            SecretSource::Env(var) if policy.env_inherit.contains(var) => {
                return Err(invalid(format!(
                    "secret `{name}` is read from host variable `{var}`, which env.inherit hands to the guest; remove `{var}` from env.inherit"
                ))
                .key(&key));
            }
            SecretSource::Env(_) => {}
            SecretSource::File(path) => {
                *path = canonical_file(path);
                let granted = policy.dirs.iter().find(|d| path.starts_with(&d.host));
                if let Some(dir) = granted {
                    return Err(invalid(format!(
                        "secret `{name}`'s file `{}` is inside the grant of `{}` (guest `{}`), so the guest could read or replace it; keep secrets outside every [[fs.dirs]] and [[fs.files]] grant",
                        path.display(),
                        dir.host.display(),
                        dir.guest
                    ))
                    .key(&key));
                }
                if stdin.as_ref() == Some(path) {
                    return Err(invalid(format!(
                        "secret `{name}`'s file `{}` is also stdio.stdin, which the guest reads; use another file",
                        path.display()
                    ))
                    .key(&key));
                }
            }
        }
    }
    Ok(())
}

/// The secret names of each `${placeholder.NAME}` in `value`.
pub(crate) fn placeholders_in(value: &str) -> impl Iterator<Item = Result<&str, String>> {
    value.split("${placeholder.").skip(1).map(|rest| {
        let name = rest
            .split_once('}')
            .map(|(name, _)| name)
            .ok_or("`${placeholder.` without its closing `}`")?;
        check_secret_name(name)?;
        Ok(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: a path as the guest sets it, then what is sent or `!` and a
    /// word of the refusal.
    const PATHS: &[(&str, &str)] = &[
        ("/repos/acme/x", "/repos/acme/x"),
        ("/", "/"),
        ("/a/", "/a/"),
        ("/%61cme", "/acme"),
        ("/a%2eb", "/a.b"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a?q=1&b=%2f", "/a?q=1&b=%2f"),
        ("/repos/acme/../../admin", "!`..`"),
        ("/repos/acme/./x", "!`.`"),
        ("/repos/%2e%2e/admin", "!`..`"),
        ("/repos/%2E./admin", "!`..`"),
        ("/repos%2fadmin", "!encoded `/`"),
        ("/repos%5cadmin", "!encoded `\\`"),
        ("/repos%3badmin", "!encoded `;`"),
        ("/a%252e", "!encoded `%`"),
        ("/a%00", "!control"),
        ("/a%", "!hex"),
        ("/a%zz", "!hex"),
        ("//admin", "!empty segment"),
        ("/a//b", "!empty segment"),
        ("/admin;x=1", "!`;`"),
        ("/a\\b", "!backslash"),
        ("/a b", "!space"),
        ("/a\0", "!control"),
        ("/é", "!non-ASCII"),
        ("*", "!leading"),
        ("http://x/a", "!leading"),
        ("", "!leading"),
        ("/a?b#c", "!`#`"),
        ("/a?b c", "!space"),
    ];

    #[test]
    fn request_paths_are_normalised_or_refused() {
        for &(written, then) in PATHS {
            match (RequestPath::parse(written), then.strip_prefix('!')) {
                (Ok(p), None) => assert_eq!(p.to_sent(), then, "{written:?}"),
                (Err(why), Some(word)) => assert!(why.contains(word), "{written:?}: {why}"),
                (got, _) => panic!("{written:?}: {got:?}, expected {then}"),
            }
        }
    }

    #[test]
    fn path_globs_match_segments() {
        let glob = |p: &str| HttpPathGlob::new(p).unwrap_or_else(|e| panic!("{e}"));
        let deep = glob("/repos/acme/**");
        for path in ["/repos/acme", "/repos/acme/", "/repos/acme/x/y"] {
            assert!(deep.matches(path), "{path}");
        }
        for path in ["/repos/acmex", "/repos", "/repos/other/acme"] {
            assert!(!deep.matches(path), "{path}");
        }
        assert!(glob("/user").matches("/user"));
        assert!(!glob("/user").matches("/user/keys"));
        assert!(!glob("/user").matches("/user/"));
        assert!(glob("/users/*/keys").matches("/users/bob/keys"));
        assert!(!glob("/users/*/keys").matches("/users/a/b/keys"));
        assert!(glob("/%61").matches("/a"), "patterns are normalised as paths are");
        for bad in ["user", "/a/../b", "/a?x", "/a/**b", "//x", "/a;b"] {
            assert!(HttpPathGlob::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_name_secrets_and_placeholders() {
        assert_eq!(
            parse_template("Bearer ${secret.gh}").unwrap(),
            [
                TemplatePart::Literal("Bearer ".into()),
                TemplatePart::Secret("gh".into())
            ]
        );
        assert_eq!(
            parse_template("${placeholder.a-b}").unwrap(),
            [TemplatePart::Placeholder("a-b".into())]
        );
        assert_eq!(
            parse_template("$HOME").unwrap(),
            [TemplatePart::Literal("$HOME".into())]
        );
        for bad in ["${secret.}", "${env.X}", "${secret.a", "${secret.a b}"] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
        assert!(InjectedHeader::parse("Host", "${secret.a}").is_err());
        assert!(InjectedHeader::parse("Authorization", "${placeholder.a}").is_err());
        assert!(InjectedHeader::parse("X-A", "a\nb").is_err());
        assert_eq!(
            InjectedHeader::parse("Authorization", "${secret.a}").unwrap().name,
            "authorization"
        );
    }

    #[test]
    fn methods_are_capitals() {
        assert!(check_method("GET").is_ok());
        assert!(check_method("get").is_err());
        assert!(check_method("").is_err());
    }
}
