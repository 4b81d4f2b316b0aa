//! What a refused capability use leaves behind: a [`Denial`], kept in a
//! bounded [`DenialLog`] per run.

use super::audit::{AuditHook, CapabilityUse, Decision, HttpOriginCounts, SeenLog, UseCounts, UsesSeen};
use crate::term::{eprint_line, sanitize, truncate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most refusals one run records in [`Outcome::denials`](crate::Outcome::denials); later ones are only
/// counted, in [`Outcome::denials_dropped`](crate::Outcome::denials_dropped).
pub const MAX_DENIALS: usize = 256;

/// Longest `target` or `rule` of a recorded [`Denial`], in bytes; a longer
/// one is cut on a character boundary and ends with `…[+N bytes]`.
pub const DENIAL_FIELD_BYTES: usize = 256;

/// Most bytes of `kind`, `target` and `rule` that one run's recorded
/// denials hold together. Once a refusal would pass it, that one and every
/// later one is only counted.
pub const DENIAL_BYTES: usize = 64 * 1024;

/// A capability use the policy refused: a network use (`tcp-connect`,
/// `dns`, `http`, ...) or a filesystem operation (`fs-read`, `fs-write`,
/// `fs-create`, `fs-remove`, `fs-rename`, `fs-link`, `fs-symlink`).
///
/// The guest chooses `target` (a host name it looked up, a path), so it is
/// untrusted text: it is cut to [`DENIAL_FIELD_BYTES`], and wasmcell escapes
/// its control characters before printing it. Escape it yourself before
/// showing it on a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The kind of use, such as `tcp-connect`.
    pub kind: String,
    /// What the guest tried to reach: an address, a name, a guest path.
    pub target: String,
    /// Why it was refused.
    pub rule: String,
}

/// The refusals of one run, bounded: a guest can refuse itself as often as
/// it likes, with names as long as it likes, and none of that may grow the
/// host's memory or output past these caps.
#[derive(Default)]
struct DenialLog {
    kept: Vec<Denial>,
    /// Bytes of `kind`, `target` and `rule` in `kept`.
    bytes: usize,
    /// Refusals counted but not kept; once one is dropped, all later ones are.
    dropped: u64,
}

impl DenialLog {
    /// Keeps `denial` if it fits; `false` when it was only counted.
    fn push(&mut self, denial: Denial) -> bool {
        let size = denial.kind.len() + denial.target.len() + denial.rule.len();
        if self.dropped > 0 || self.kept.len() >= MAX_DENIALS || self.bytes + size > DENIAL_BYTES {
            self.dropped += 1;
            return false;
        }
        self.bytes += size;
        self.kept.push(denial);
        true
    }
}

/// One run's record of capability uses, shared by every capability that
/// decides one (network and filesystem): refusals kept as [`Denial`]s, every
/// use counted per kind and handed to the run's audit hook, if any. Cloning
/// shares the record.
#[derive(Clone, Default)]
pub(crate) struct Records {
    inner: Arc<Mutex<Inner>>,
    print: bool,
    audit: Option<AuditHook>,
    /// The distinct uses, when the run keeps them (see [`UsesSeen`]).
    seen: Option<Arc<Mutex<SeenLog>>>,
}

#[derive(Default)]
struct Inner {
    denials: DenialLog,
    /// Keyed by kind: names from wasmcell's code, never from the guest.
    counts: BTreeMap<&'static str, UseCounts>,
}

impl Records {
    /// A fresh record for one run; `print` also prints each refusal to
    /// stderr; `audit` receives every use; `keep_seen` keeps the distinct
    /// uses for [`Records::take_seen`].
    pub(crate) fn new(print: bool, audit: Option<AuditHook>, keep_seen: bool) -> Records {
        Records {
            inner: Arc::default(),
            print,
            audit,
            seen: keep_seen.then(Arc::default),
        }
    }

    /// Whether anything reads a use's target and rule.
    fn watched(&self) -> bool {
        self.audit.is_some() || self.seen.is_some()
    }

    fn event(&self, kind: &str, target: &str, decision: Decision, rule: &str) -> CapabilityUse {
        CapabilityUse {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            kind: kind.to_string(),
            target: truncate(target, DENIAL_FIELD_BYTES).into_owned(),
            decision,
            rule: truncate(rule, DENIAL_FIELD_BYTES).into_owned(),
        }
    }

    fn audit(&self, kind: &str, target: &str, decision: Decision, rule: &str) {
        if !self.watched() {
            return;
        }
        let event = self.event(kind, target, decision, rule);
        if let Some(seen) = &self.seen {
            seen.lock().unwrap_or_else(|e| e.into_inner()).add(&event);
        }
        if let Some(hook) = &self.audit {
            hook.0.record(&event);
        }
    }

    /// The distinct uses so far, when the run keeps them.
    pub(crate) fn take_seen(&self) -> Option<UsesSeen> {
        let seen = self.seen.as_ref()?;
        Some(seen.lock().unwrap_or_else(|e| e.into_inner()).take())
    }

    /// Counts an allowed use of `kind`; the target and rule are only made
    /// when an audit hook will read them.
    pub(crate) fn allow(&self, kind: &'static str, target: impl FnOnce() -> String, rule: impl FnOnce() -> String) {
        self.allow_seen_as(kind, kind, target, rule);
    }

    /// Like [`Records::allow`], kept among the distinct uses as `seen`: a
    /// finer kind than the audit's (`fs-stat` for the look at a path that
    /// the audit counts as `fs-read`), for learning what a guest needed.
    pub(crate) fn allow_seen_as(
        &self,
        kind: &'static str,
        seen: &'static str,
        target: impl FnOnce() -> String,
        rule: impl FnOnce() -> String,
    ) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.counts.entry(kind).or_default().allowed += 1;
        }
        if self.watched() {
            let (target, rule) = (target(), rule());
            if let Some(log) = &self.seen {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&self.event(seen, &target, Decision::Allowed, &rule));
            }
            if let Some(hook) = &self.audit {
                hook.0.record(&self.event(kind, &target, Decision::Allowed, &rule));
            }
        }
    }

    /// Keeps `kind` on `target` among the distinct uses only, when the run
    /// keeps them: a detail learning needs that the audit does not count
    /// (a listing of a folder the guest opened, `fs-list`).
    pub(crate) fn seen(&self, kind: &'static str, target: impl FnOnce() -> String) {
        if let Some(log) = &self.seen {
            let event = self.event(kind, &target(), Decision::Allowed, "");
            log.lock().unwrap_or_else(|e| e.into_inner()).add(&event);
        }
    }

    /// Hands the audit hook, if any, what became of a use already counted
    /// (an HTTP request's response); counts nothing.
    /// Not a use of its own, so not among the distinct uses kept.
    pub(crate) fn note(&self, kind: &'static str, target: impl FnOnce() -> String, rule: impl FnOnce() -> String) {
        if let Some(hook) = &self.audit {
            hook.0.record(&self.event(kind, &target(), Decision::Allowed, &rule()));
        }
    }

    /// Records a refused use of `kind` on `target`, printing it first when
    /// asked to. `target` is the guest's choice: it is cut to
    /// [`DENIAL_FIELD_BYTES`] and printed escaped. Past the record's caps a
    /// refusal is only counted, and one line says so.
    pub(crate) fn refuse(&self, kind: &'static str, target: &str, rule: &str) {
        self.audit(kind, target, Decision::Denied, rule);
        let denial = Denial {
            kind: kind.to_string(),
            target: truncate(target, DENIAL_FIELD_BYTES).into_owned(),
            rule: truncate(rule, DENIAL_FIELD_BYTES).into_owned(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.counts.entry(kind).or_default().denied += 1;
        let log = &mut inner.denials;
        let kept = log.push(denial);
        if !self.print {
            return;
        }
        // Printed under the lock, so the lines come in the record's order.
        if let (true, Some(d)) = (kept, log.kept.last()) {
            eprint_line(format_args!(
                "wasmcell: denied {} {}: {}",
                d.kind,
                sanitize(&d.target),
                sanitize(&d.rule)
            ));
        } else if log.dropped == 1 {
            eprint_line(format_args!(
                "wasmcell: further refusals are only counted (`denials_dropped` in the report); {} recorded",
                log.kept.len()
            ));
        }
    }

    /// Everything so far: the kept refusals, how many were dropped, and the
    /// uses counted per kind.
    pub(crate) fn take(&self) -> (Vec<Denial>, u64, BTreeMap<String, UseCounts>) {
        let inner = std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()));
        let counts = inner.counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        (inner.denials.kept, inner.denials.dropped, counts)
    }
}

/// Most origins one run's report counts apart; requests to further origins
/// (an entry such as `http://127.0.0.1:*` admits many) are counted under
/// [`OTHER_ORIGINS`].
pub const MAX_HTTP_ORIGINS: usize = 256;

/// The key requests past [`MAX_HTTP_ORIGINS`] origins are counted under.
pub const OTHER_ORIGINS: &str = "(other origins)";

/// One run's HTTP requests per decided origin (`scheme://host:port`, made by
/// wasmcell from what it checked, never the guest's spelling), bounded.
#[derive(Clone, Default)]
pub(crate) struct OriginCounts {
    inner: Arc<Mutex<BTreeMap<String, HttpOriginCounts>>>,
}

impl OriginCounts {
    fn update(&self, origin: &str, f: impl FnOnce(&mut HttpOriginCounts)) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.contains_key(origin) || map.len() < MAX_HTTP_ORIGINS {
            origin
        } else {
            OTHER_ORIGINS
        };
        f(map.entry(key.to_string()).or_default());
    }

    /// Counts a request to `origin` that was sent.
    pub(crate) fn allowed(&self, origin: &str) {
        self.update(origin, |c| c.requests += 1);
    }

    /// Counts a request to an admitted `origin` refused for its method, path,
    /// a placeholder or `limits.http-requests`.
    pub(crate) fn denied(&self, origin: &str) {
        self.update(origin, |c| c.denied += 1);
    }

    /// Adds body bytes sent to, or received from, `origin`.
    pub(crate) fn bytes(&self, origin: &str, sent: u64, received: u64) {
        self.update(origin, |c| {
            c.request_body_bytes += sent;
            c.response_body_bytes += received;
        });
    }

    /// Everything counted so far.
    pub(crate) fn take(&self) -> BTreeMap<String, HttpOriginCounts> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_log_keeps_a_prefix_within_count_and_bytes() {
        let audit = Records::new(false, None, false);
        for i in 0..MAX_DENIALS + 10 {
            audit.refuse("dns", &format!("host{i}"), "rule");
        }
        let (kept, dropped, _) = audit.take();
        assert_eq!((kept.len(), dropped), (MAX_DENIALS, 10));
        assert_eq!(kept[MAX_DENIALS - 1].target, format!("host{}", MAX_DENIALS - 1));

        // Long targets are cut, and the byte budget stops the record before
        // the count does; a short refusal after that is still only counted.
        let audit = Records::new(false, None, false);
        for _ in 0..MAX_DENIALS {
            audit.refuse("dns", &"x".repeat(100_000), &"r".repeat(100_000));
        }
        audit.refuse("dns", "short", "rule");
        let (kept, dropped, _) = audit.take();
        let bytes: usize = kept.iter().map(|d| d.kind.len() + d.target.len() + d.rule.len()).sum();
        assert!(bytes <= DENIAL_BYTES && !kept.is_empty(), "{bytes}");
        assert!(
            kept.iter()
                .all(|d| d.target.starts_with(&"x".repeat(DENIAL_FIELD_BYTES)))
        );
        assert!(kept.iter().all(|d| {
            d.target
                .ends_with(&format!("…[+{} bytes]", 100_000 - DENIAL_FIELD_BYTES))
        }));
        assert_eq!(kept.len() as u64 + dropped, MAX_DENIALS as u64 + 1);
    }
}
