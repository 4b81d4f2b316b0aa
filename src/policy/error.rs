//! Policy errors: typed, so that an embedding host can match on them, and
//! displayed as `FILE:LINE: message` with what would be accepted instead.

use super::DirGrant;
use std::fmt;
use std::path::{Path, PathBuf};

/// A policy that could not be used. Nothing ran.
///
/// Displays as `FILE:LINE: message`, where the message says what would be
/// accepted instead.
#[derive(Debug)]
pub struct PolicyError {
    pub(super) path: Option<PathBuf>,
    pub(super) line: Option<usize>,
    pub(super) key: Option<String>,
    pub(super) kind: PolicyErrorKind,
}

/// What was wrong with a policy.
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file is not valid TOML or does not fit the schema (unknown key,
    /// wrong type, bad size or duration). The message is toml's, reworded.
    Parse(String),
    /// Two settings contradict each other, or a value is out of range.
    Invalid(String),
    /// A granted host directory does not exist or is not a directory.
    MissingDir(PathBuf),
    /// `extends` leads back to a file already being loaded.
    Cycle(Vec<PathBuf>),
    /// A read-write grant contains, is, or aliases (same device and inode,
    /// such as through a bind mount) a grant with less access, so the guest
    /// could change the other grant's files through it. wasmtime-wasi cannot
    /// give parts of one directory tree different access, so such a policy is
    /// refused.
    OverlappingGrants {
        /// The read-write grant, with where it was granted (`FILE:LINE` or a flag).
        writable: Box<(DirGrant, String)>,
        /// The grant with less access that it reaches, with where it was granted.
        other: Box<(DirGrant, String)>,
    },
    /// A host path the policy or a flag names could not be opened safely when
    /// a run started (or when the report was written): a component of it has
    /// become a symbolic link, or it is not the kind of file expected (a
    /// FIFO or device for a stdio file). Found at run time, not at load: a
    /// guest with write access can change the tree between runs.
    UnsafePath {
        /// The path as the policy or flag named it (canonical).
        path: PathBuf,
        /// What was found, and what to do.
        reason: String,
    },
}

impl PolicyError {
    pub(super) fn new(kind: PolicyErrorKind) -> PolicyError {
        PolicyError {
            path: None,
            line: None,
            key: None,
            kind,
        }
    }

    /// A `[net.secrets]` secret that could not be read when a run started;
    /// `message` names the secret and its source, never its value.
    pub(crate) fn secret(name: &str, message: String) -> PolicyError {
        let err = PolicyError::new(PolicyErrorKind::Invalid(message));
        if name.is_empty() {
            err
        } else {
            err.key(&format!("net.secrets.{name}"))
        }
    }

    /// A refused host open; `message` names the path and why.
    pub(crate) fn unsafe_path(path: &Path, message: String) -> PolicyError {
        PolicyError::new(PolicyErrorKind::UnsafePath {
            path: path.to_path_buf(),
            reason: message,
        })
    }

    pub(super) fn at(mut self, path: &Path, source: &str, span: Option<std::ops::Range<usize>>) -> Self {
        self.path = Some(path.to_path_buf());
        self.line = span.map(|s| line_of(source, s.start));
        self
    }

    pub(super) fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// The policy file the error is in, when it came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The 1-based line of the offending value, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The key at fault, as `table.key`, when known.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.kind
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display())?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            // Not from a file: from a command-line flag, which the key names.
            (None, _) => {
                if let Some(key) = self.key.as_deref().filter(|k| k.starts_with("--")) {
                    write!(f, "{key}: ")?;
                }
            }
        }
        let message = match &self.kind {
            PolicyErrorKind::Io(e) => format!("cannot read policy file: {e}"),
            PolicyErrorKind::Parse(m) | PolicyErrorKind::Invalid(m) => m.clone(),
            PolicyErrorKind::MissingDir(p) => format!(
                "host directory `{}` does not exist or is not a directory; create it or fix the path (relative paths are resolved from the policy file's folder)",
                p.display()
            ),
            PolicyErrorKind::OverlappingGrants { writable, other } => overlap_message(writable, other),
            PolicyErrorKind::UnsafePath { reason, .. } => reason.clone(),
            PolicyErrorKind::Cycle(chain) => {
                let chain: Vec<_> = chain.iter().map(|p| format!("`{}`", p.display())).collect();
                format!(
                    "`extends` forms a cycle: {}; remove one of these links",
                    chain.join(" -> ")
                )
            }
        };
        // Everything wrong names its key (a file's, so that the line can be
        // found even in a file with many alike, or one set through the API);
        // most messages say it already, and an overlap names both grants
        // with where each was granted.
        if !matches!(self.kind, PolicyErrorKind::OverlappingGrants { .. })
            && let Some(key) = self.key.as_deref().filter(|k| !k.starts_with("--"))
            && !message.contains(key)
        {
            write!(f, "{key}: ")?;
        }
        f.write_str(&message)
    }
}

fn overlap_message(writable: &(DirGrant, String), other: &(DirGrant, String)) -> String {
    let ((w, w_site), (o, o_site)) = (writable, other);
    let relation = if w.host == o.host {
        "is the same directory as"
    } else if o.host.starts_with(&w.host) {
        "contains"
    } else {
        "reaches (same device and inode, such as a bind mount)"
    };
    let access = o.access;
    format!(
        "read-write grant `{}` at guest path `{}` ({w_site}) {relation} {access} grant `{}` at guest path `{}` \
         ({o_site}): the guest could change `{}` through `{}`, and access cannot differ within one directory \
         tree; grant both read-write, or grant directories that do not overlap",
        w.host.display(),
        w.guest,
        o.host.display(),
        o.guest,
        o.guest,
        w.guest
    )
}

/// The message already includes any I/O error, so it is not also given as a
/// `source` (that would print it twice in `{:#}` chains); match on
/// [`PolicyError::kind`] to get at it.
impl std::error::Error for PolicyError {}

pub(super) fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::new(PolicyErrorKind::Invalid(msg.into()))
}

pub(super) fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The `[table]` header in force at `offset`, for "unknown key ... in [limits]".
pub(super) fn table_at(source: &str, offset: usize) -> Option<String> {
    source[..offset.min(source.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
}

/// The dotted key (`limits.memory`, `fs.dirs.access`) whose value covers
/// `offset`, for naming the key of a value serde refused. Array indices are
/// left out: `net.tcp-connect`, not `net.tcp-connect[2]`.
pub(super) fn key_at(source: &str, offset: usize) -> Option<String> {
    use toml::Spanned;
    use toml::de::{DeTable, DeValue};

    // Policy keys are at most three deep; a deeper search is not needed and
    // must not recurse as deep as a hostile file nests.
    const DEPTH: usize = 8;

    fn in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            if in_value(value, offset, path) {
                return true;
            }
            path.pop();
        }
        false
    }

    fn in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
        if path.len() <= DEPTH {
            let inner = match value.get_ref() {
                DeValue::Table(table) => in_table(table, offset, path),
                DeValue::Array(items) => items.iter().any(|item| in_value(item, offset, path)),
                _ => false,
            };
            if inner {
                return true;
            }
        }
        let span = value.span();
        span.start <= offset && offset < span.end.max(span.start + 1)
    }

    let doc = DeTable::parse(source).ok()?;
    let mut path = Vec::new();
    in_table(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// The span of the value at dotted `key` (`stdio.stdin`, `env.vars.NAME`),
/// for values checked after deserializing, which carry no span of their own.
pub(super) fn span_of_key(source: &str, key: &str) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};

    let doc = DeTable::parse(source).ok()?;
    let mut table = doc.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.iter().find(|(k, _)| k.get_ref() == part).map(|(_, v)| v)?;
        if parts.peek().is_none() {
            return Some(value.span());
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

/// Turns toml's message into ours: "unknown field" becomes "unknown key ... in
/// [table]", and backticks around the expected names are dropped for reading.
pub(super) fn reword_parse_error(err: &toml::de::Error, source: &str) -> String {
    let message = err.message().trim().to_string();
    let Some(rest) = message.strip_prefix("unknown field ") else {
        return message;
    };
    let (name, expected) = match rest.split_once(", expected ") {
        Some((name, expected)) => (name, expected.replace('`', "")),
        None => (rest, String::new()),
    };
    let place = match err.span().and_then(|s| table_at(source, s.start)) {
        Some(table) => format!(" in [{table}]"),
        None => " at the top level".to_string(),
    };
    if expected.is_empty() {
        format!("unknown key {name}{place}")
    } else {
        format!("unknown key {name}{place}; expected {expected}")
    }
}
