//! The audit of capability uses: every file operation and network use the
//! policy decides, allowed or refused, handed to an [`AuditSink`] as it
//! happens (the CLI's `--audit FILE` writes them as JSON lines through
//! [`AuditFile`]), and counted per kind in [`Outcome::uses`](crate::Outcome::uses).

use crate::hostfs::HostFile;
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::sync::{Arc, Mutex};

/// Whether a use was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The policy allowed it (the OS may still have failed it, say a missing file).
    Allowed,
    /// Refused, by a rule of the policy or by its grants.
    Denied,
}

/// One capability use, as an [`AuditSink`] receives it.
///
/// `target` is the guest's choice (a path, an address, a name): cut to
/// [`DENIAL_FIELD_BYTES`](crate::DENIAL_FIELD_BYTES) like a denial's, and
/// untrusted text; escape it before showing it on a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityUse {
    /// When, as an RFC 3339 UTC instant with milliseconds.
    pub time: String,
    /// The kind of use, as in denials: `fs-read`, `fs-write`, `fs-create`,
    /// `fs-remove`, `fs-rename`, `fs-link`, `fs-symlink`, `fs-quota`,
    /// `tcp-connect`, `tcp-bind`, `tcp-listen`, `tcp-accept`, `udp-bind`,
    /// `udp-send`, `dns`, `http`.
    pub kind: String,
    /// What the guest used: a guest path, a socket address, a name, an origin.
    pub target: String,
    /// Allowed or denied.
    pub decision: Decision,
    /// The grant or rule that decided.
    pub rule: String,
}

/// Receives every capability use of a run as it happens, on the thread that
/// decides it: keep it quick. A plain `Fn(&CapabilityUse)` is one.
pub trait AuditSink: Send + Sync + 'static {
    /// One use.
    fn record(&self, event: &CapabilityUse);
}

impl<F: Fn(&CapabilityUse) + Send + Sync + 'static> AuditSink for F {
    fn record(&self, event: &CapabilityUse) {
        self(event)
    }
}

/// Most distinct uses [`UsesSeen`] keeps of one run; further ones are
/// only counted (`dropped`).
pub const MAX_USES_SEEN: usize = 4096;

/// The distinct capability uses of one run, kept when the sandbox was asked
/// to ([`SandboxBuilder::record_uses`](crate::SandboxBuilder::record_uses)),
/// for learning a policy from what a guest did ([`crate::learn`]): each
/// `(kind, target, decision, rule)` once, in the order first seen, at most
/// [`MAX_USES_SEEN`]. Targets and rules are cut as a [`CapabilityUse`]'s are,
/// and are the guest's choice: untrusted text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsesSeen {
    /// The distinct uses, first seen first.
    pub uses: Vec<SeenUse>,
    /// Distinct uses past [`MAX_USES_SEEN`], not kept.
    pub dropped: u64,
}

/// One distinct use in [`UsesSeen`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeenUse {
    /// As [`CapabilityUse::kind`].
    pub kind: String,
    /// As [`CapabilityUse::target`].
    pub target: String,
    /// Allowed or denied.
    pub decision: Decision,
    /// As [`CapabilityUse::rule`].
    pub rule: String,
}

/// A run's [`UsesSeen`] as it grows, shared by every capability that
/// decides a use.
#[derive(Debug, Default)]
pub(crate) struct SeenLog {
    seen: std::collections::HashSet<SeenUse>,
    kept: UsesSeen,
}

impl SeenLog {
    /// Keeps `event` unless it was seen already or the log is full.
    pub(crate) fn add(&mut self, event: &CapabilityUse) {
        let use_ = SeenUse {
            kind: event.kind.clone(),
            target: event.target.clone(),
            decision: event.decision,
            rule: event.rule.clone(),
        };
        if self.seen.contains(&use_) {
            return;
        }
        if self.kept.uses.len() >= MAX_USES_SEEN {
            self.kept.dropped += 1;
            return;
        }
        self.seen.insert(use_.clone());
        self.kept.uses.push(use_);
    }

    /// What was kept, leaving the log empty.
    pub(crate) fn take(&mut self) -> UsesSeen {
        self.seen.clear();
        std::mem::take(&mut self.kept)
    }
}

/// How many uses of one kind a run made, allowed and denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseCounts {
    /// Allowed uses.
    pub allowed: u64,
    /// Refused uses (each also a denial, recorded or only counted).
    pub denied: u64,
}

/// The sink a run was given, shared with everything that decides a use.
#[derive(Clone)]
pub(crate) struct AuditHook(pub(crate) Arc<dyn AuditSink>);

impl std::fmt::Debug for AuditHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditHook")
    }
}

/// Room kept for the closing `truncated` line.
const CLOSING_ROOM: u64 = 128;

/// An [`AuditSink`] writing one JSON object per line to a file, at most
/// `max_bytes` in all: past that, one `{"truncated": true, ...}` line ends the
/// file and later uses are only counted (in the report's `uses`). A guest
/// decides how many uses it makes and what they name, so the cap is what
/// keeps the audit from filling the host's disk.
pub struct AuditFile {
    state: Mutex<AuditState>,
    max_bytes: u64,
}

struct AuditState {
    out: BufWriter<File>,
    written: u64,
    truncated: bool,
    error: Option<std::io::Error>,
}

impl AuditFile {
    /// Creates (or truncates) `file`, without following links (see
    /// [`HostFile`]), for at most `max_bytes` of audit (at least 1 KiB).
    ///
    /// # Errors
    ///
    /// When the file cannot be created, or a component of its path is now a
    /// symbolic link.
    pub fn create(file: &HostFile, max_bytes: u64) -> Result<Arc<AuditFile>> {
        let out = file.create()?;
        Ok(Arc::new(AuditFile {
            state: Mutex::new(AuditState {
                out: BufWriter::new(out),
                written: 0,
                truncated: false,
                error: None,
            }),
            max_bytes: max_bytes.max(1024),
        }))
    }

    /// Flushes what is buffered.
    ///
    /// # Errors
    ///
    /// The first write error of the run, if any.
    pub fn finish(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = state.error.take() {
            return Err(e).context("failed to write the audit");
        }
        state.out.flush().context("failed to write the audit")
    }

    /// Writes the line that opens a run's audit: the module's name and its
    /// SHA-256 (`null` for precompiled code, which records none), and the
    /// policy's digest, so that the audit proves which program made the uses
    /// after it, under which rules.
    pub fn header(&self, module: &str, module_sha256: Option<&str>, policy_sha256: &str) {
        let header = serde_json::json!({
            "module": module,
            "module_sha256": module_sha256,
            "policy_sha256": policy_sha256,
        });
        self.write_line(header.to_string());
    }

    /// Appends `line` (one JSON object) unless the cap is reached; the first
    /// line past it is the closing `truncated` line.
    fn write_line(&self, line: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.truncated || state.error.is_some() {
            return;
        }
        let line = line + "\n";
        let result = if state.written + line.len() as u64 + CLOSING_ROOM > self.max_bytes {
            state.truncated = true;
            let closing = serde_json::json!({
                "truncated": true,
                "max_bytes": self.max_bytes,
                "note": "later uses are only counted, in the report's `uses`",
            });
            writeln!(state.out, "{closing}")
        } else {
            state.written += line.len() as u64;
            state.out.write_all(line.as_bytes())
        };
        if let Err(e) = result {
            state.error = Some(e);
        }
    }
}

impl AuditSink for AuditFile {
    fn record(&self, event: &CapabilityUse) {
        self.write_line(serde_json::to_string(event).unwrap_or_default());
    }
}

/// One origin's outgoing HTTP requests in a run, as the report's `http`
/// object counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpOriginCounts {
    /// Requests sent.
    pub requests: u64,
    /// Requests to the origin refused for their method, path, a secret's
    /// placeholder or `limits.http-requests`.
    pub denied: u64,
    /// Request body bytes sent.
    pub request_body_bytes: u64,
    /// Response body bytes the guest was handed.
    pub response_body_bytes: u64,
}
