//! The egress broker's run-time half: the secrets of `[net.secrets]`, read
//! when a run starts, the run's placeholders for them, and what happens to an
//! outgoing request once `[[net.http]]` has admitted it (headers injected,
//! placeholders swapped for values) or found it carrying a placeholder where
//! its secret is not bound (refused as `secret-leak`).
//!
//! # Security
//!
//! A secret's value lives only here and in the requests the host sends: the
//! guest's environment holds a placeholder (`wasmcell-secret-` and 32 random
//! hex digits, new for every run), the guest's grants never include the file
//! (the policy refuses that), and every record of a request is made from what
//! the guest wrote, before anything is injected, then passed through
//! [`Broker::redact`]. Values are swapped into a request only after wasmcell
//! has checked that the guest holds no handle on its headers, so the guest
//! cannot read them back. A server that echoes a secret in its response
//! hands it to the guest: that is the server's doing, and the entry's.

use crate::policy::{HttpEntry, MAX_SECRET_BYTES, Policy, PolicyError, SecretSource};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::io::Read as _;
use std::path::Path;

/// A secret's value: never printed, wiped when dropped.
struct SecretValue(Vec<u8>);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        for b in &mut self.0 {
            // A volatile write, so the wipe is not optimised away.
            // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// One declared secret, as a run holds it.
#[derive(Debug)]
struct Held {
    name: String,
    value: SecretValue,
    placeholder: String,
}

/// One run's secrets and placeholders.
#[derive(Debug, Default)]
pub(crate) struct Broker {
    held: Vec<Held>,
}

/// Where a placeholder was found that its secret does not allow.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Leak {
    /// The secret whose placeholder it is.
    pub(crate) secret: String,
    /// `authority`, `path`, `query` or `header NAME`.
    pub(crate) place: String,
}

impl Broker {
    /// Reads every `[net.secrets]` value and makes the run's placeholders.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] naming the secret and its key (never the value): a
    /// variable that is not set or not text, a file that is a link, not a
    /// regular file, readable or writable by others than its owner, over
    /// [`MAX_SECRET_BYTES`], empty, or holding control characters.
    pub(crate) fn start(policy: &Policy) -> Result<Broker, PolicyError> {
        let mut held = Vec::new();
        for (name, source) in &policy.net().secrets {
            let value = read_secret(source).map_err(|why| {
                PolicyError::secret(name, format!("secret `{name}` cannot be used: its {source} {why}"))
            })?;
            held.push(Held {
                name: name.clone(),
                value,
                placeholder: placeholder()?,
            });
        }
        Ok(Broker { held })
    }

    fn find(&self, name: &str) -> Option<&Held> {
        self.held.iter().find(|h| h.name == name)
    }

    /// `value` of `env.vars` with each `${placeholder.NAME}` replaced by the
    /// run's placeholder for `NAME` (the policy checked every name).
    pub(crate) fn guest_value(&self, value: &str) -> String {
        let mut out = value.to_string();
        for held in &self.held {
            out = out.replace(&format!("${{placeholder.{}}}", held.name), &held.placeholder);
        }
        out
    }

    /// `text` with every secret value and placeholder written as
    /// `${secret.NAME}` or `${placeholder.NAME}`: what the host records.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for held in &self.held {
            if let Ok(value) = std::str::from_utf8(&held.value.0) {
                out = out.replace(value, &format!("${{secret.{}}}", held.name));
            }
            out = out.replace(&held.placeholder, &format!("${{placeholder.{}}}", held.name));
        }
        out
    }

    /// Whether this run has any secret to swap in or watch for.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The first placeholder the request carries where `entry` (the
    /// `[[net.http]]` entry admitting it, if any) does not allow it: anywhere
    /// in the authority or path; in the query unless the entry binds the
    /// secret with `placeholder-in = ["query"]`; in a header unless it binds it.
    pub(crate) fn find_leak(
        &self,
        authority: &str,
        path_with_query: &str,
        headers: &HeaderMap,
        entry: Option<&HttpEntry>,
    ) -> Option<Leak> {
        let (path, query) = path_with_query.split_once('?').unwrap_or((path_with_query, ""));
        for held in &self.held {
            let token = held.placeholder.as_bytes();
            let bound = entry.is_some_and(|e| e.secrets.contains(&held.name));
            let query_ok = bound && entry.is_some_and(|e| e.placeholder_in.query);
            let leak = |place: String| {
                Some(Leak {
                    secret: held.name.clone(),
                    place,
                })
            };
            if contains(authority.as_bytes(), token) {
                return leak("authority".into());
            }
            if contains(path.as_bytes(), token) {
                return leak("path".into());
            }
            if !query_ok && contains(query.as_bytes(), token) {
                return leak("query".into());
            }
            if !bound {
                for (name, value) in headers {
                    if contains(name.as_str().as_bytes(), token) || contains(value.as_bytes(), token) {
                        return leak(format!("header `{name}`"));
                    }
                }
            }
        }
        None
    }

    /// The headers and query of a request `entry` admitted, as sent: each
    /// bound secret's placeholder replaced by its value (in the query only
    /// with `placeholder-in = ["query"]`), then the entry's headers set,
    /// replacing any of those names the guest set.
    ///
    /// # Errors
    ///
    /// A message (naming no value) when a header would not be valid.
    pub(crate) fn rewrite(
        &self,
        entry: &HttpEntry,
        headers: &mut HeaderMap,
        mut query: Option<&mut String>,
    ) -> Result<(), String> {
        for name in &entry.secrets {
            let Some(held) = self.find(name) else { continue };
            let token = held.placeholder.as_bytes();
            for value in headers.values_mut() {
                if contains(value.as_bytes(), token) {
                    let swapped = replace(value.as_bytes(), token, &held.value.0);
                    *value = sensitive(&swapped).ok_or_else(|| {
                        format!("secret `{name}` does not fit in a header in place of its placeholder")
                    })?;
                }
            }
            if entry.placeholder_in.query
                && let Some(query) = query.as_deref_mut()
                && query.contains(&held.placeholder)
            {
                let value = std::str::from_utf8(&held.value.0).map_err(|_| format!("secret `{name}` is not text"))?;
                *query = query.replace(&held.placeholder, &percent_encode(value));
            }
        }
        for header in &entry.headers {
            let mut value = Vec::new();
            for part in &header.value {
                match part {
                    crate::policy::TemplatePart::Literal(text) => value.extend_from_slice(text.as_bytes()),
                    crate::policy::TemplatePart::Secret(name) | crate::policy::TemplatePart::Placeholder(name) => {
                        let held = self.find(name).ok_or_else(|| format!("secret `{name}` is not held"))?;
                        value.extend_from_slice(&held.value.0);
                    }
                }
            }
            let name =
                HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| format!("header `{}`", header.name))?;
            let value =
                sensitive(&value).ok_or_else(|| format!("header `{name}` would not be a valid header value"))?;
            headers.remove(&name);
            headers.insert(name, value);
        }
        Ok(())
    }
}

/// A header value marked sensitive (kept out of HPACK tables and `Debug`).
fn sensitive(bytes: &[u8]) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_bytes(bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Everything but unreserved characters percent-encoded, for a query.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A new placeholder: `wasmcell-secret-` and 32 hex digits from the OS.
fn placeholder() -> Result<String, PolicyError> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes
        // for the duration of the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                let err = std::io::Error::last_os_error();
                return Err(PolicyError::secret(
                    "",
                    format!("no randomness for a secret's placeholder: {err}"),
                ));
            }
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("wasmcell-secret-{hex}"))
}

/// Reads one secret's value; the error says what is wrong (never the value).
fn read_secret(source: &SecretSource) -> Result<SecretValue, String> {
    let bytes = match source {
        SecretSource::Env(var) => match std::env::var_os(var) {
            None => return Err("is not set; set it in the environment wasmcell runs in".into()),
            Some(value) => value
                .into_string()
                .map_err(|_| "is not valid UTF-8".to_string())?
                .into_bytes(),
        },
        SecretSource::File(path) => read_secret_file(path)?,
    };
    let value = SecretValue(bytes);
    if value.0.is_empty() {
        return Err("is empty".into());
    }
    if value.0.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("is over {MAX_SECRET_BYTES} bytes"));
    }
    if value.0.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err("holds a control character or line break; a secret must fit in one header line".into());
    }
    Ok(value)
}

/// A secret file: not a link, a regular file with one name, owned by this
/// user and readable or writable by no one else, at most [`MAX_SECRET_BYTES`]; one
/// trailing newline (`\n` or `\r\n`) is dropped.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link; name the file itself".to_string(),
            _ => format!("cannot be opened: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    // A second name could sit inside a grant, where the path checks made
    // when the policy loaded never look.
    if meta.nlink() > 1 {
        return Err(format!(
            "has {} names (hard links), and another could be inside a grant; keep the secret in a file of its own",
            meta.nlink()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "can be read or written by others than its owner (mode {:o}); run `chmod 600` on it",
            meta.mode() & 0o777
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "is owned by user {}, not by the user running wasmcell ({me})",
            meta.uid()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 3)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(value: &str) -> Broker {
        Broker {
            held: vec![Held {
                name: "gh".into(),
                value: SecretValue(value.as_bytes().to_vec()),
                placeholder: "wasmcell-secret-00ff".into(),
            }],
        }
    }

    #[test]
    fn redact_hides_values_and_placeholders() {
        let b = broker("hunter2");
        assert_eq!(
            b.redact("a hunter2 b wasmcell-secret-00ff"),
            "a ${secret.gh} b ${placeholder.gh}"
        );
        assert_eq!(b.guest_value("Bearer ${placeholder.gh}"), "Bearer wasmcell-secret-00ff");
        assert_eq!(format!("{:?}", b.held[0].value), "SecretValue(***)");
    }

    #[test]
    fn leaks_are_found_where_the_entry_does_not_bind() {
        let b = broker("v");
        let mut headers = HeaderMap::new();
        headers.insert("x-t", HeaderValue::from_static("wasmcell-secret-00ff"));
        let leak = b.find_leak("h", "/", &headers, None).unwrap();
        assert_eq!((leak.secret.as_str(), leak.place.as_str()), ("gh", "header `x-t`"));
        let empty = HeaderMap::new();
        assert_eq!(
            b.find_leak("h", "/a?wasmcell-secret-00ff", &empty, None).unwrap().place,
            "query"
        );
        assert_eq!(
            b.find_leak("h", "/wasmcell-secret-00ff", &empty, None).unwrap().place,
            "path"
        );
        assert_eq!(
            b.find_leak("wasmcell-secret-00ff.x", "/", &empty, None).unwrap().place,
            "authority"
        );
        assert_eq!(b.find_leak("h", "/a", &empty, None), None);
    }
}
