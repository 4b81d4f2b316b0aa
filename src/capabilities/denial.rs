//! What a refused capability use leaves behind: a [`Denial`], kept in a
//! bounded [`DenialLog`] per run.

use serde::Serialize;

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

/// A capability use the policy refused. Filled by the network capability;
/// the filesystem reports refusals to the guest as errors only.
///
/// The guest chooses `target` (a host name it looked up, say), so it is
/// untrusted text: it is cut to [`DENIAL_FIELD_BYTES`], and wasmcell escapes
/// its control characters before printing it. Escape it yourself before
/// showing it on a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The kind of use, such as `tcp-connect`.
    pub kind: String,
    /// What the guest tried to reach.
    pub target: String,
    /// Why it was refused.
    pub rule: String,
}

/// The refusals of one run, bounded: a guest can refuse itself as often as
/// it likes, with names as long as it likes, and none of that may grow the
/// host's memory or output past these caps.
#[derive(Default)]
pub(super) struct DenialLog {
    pub(super) kept: Vec<Denial>,
    /// Bytes of `kind`, `target` and `rule` in `kept`.
    bytes: usize,
    /// Refusals counted but not kept; once one is dropped, all later ones are.
    pub(super) dropped: u64,
}

impl DenialLog {
    /// Keeps `denial` if it fits; `false` when it was only counted.
    pub(super) fn push(&mut self, denial: Denial) -> bool {
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
