//! The one path every guarded filesystem call takes, preview 1 and preview 2
//! alike: **decide** (the [`FsGuard`]'s check, and a `max-files` charge for
//! what the call creates), **perform** (wasmtime-wasi's own call, in the
//! ABI's words), **settle** (record the use, or the refusal wasmtime-wasi made
//! on its own, and give back a charge the call did not use). The name
//! shortcuts take it too: [`by_name`] tries a call decided by its name alone
//! ([`FsGuard::check_name`]) and says whether its answer stands, and [`open`]
//! is the whole open, by name first.
//!
//! An ABI brings only translations, as wasmtime-wasi's own preview 1 is a
//! translation onto its preview 2 host: its arguments into a path and an
//! [`FsOp`], its answer into a [`Verdict`] ([`Answer`]), a [`Refusal`] into its
//! error ([`Refuse`]), and for [`open`] its two calls ([`Open`]).
//!
//! # The seam for other decisions
//!
//! [`perform`], [`Verdict`], [`Answer`], [`Refuse`] and [`Settle`] know nothing
//! of files. A network or wall decision takes the same path by bringing its
//! own refusal type (each ABI's answers implement [`Refuse`] for it) and its
//! own bookkeeping (a [`Settle`] that records in the run's `NetAudit`, say);
//! these five then move up to `capabilities/` unchanged. [`Decided`] and the
//! `decide_*` functions are the filesystem's half.

use super::FsGuard;
use super::guard::{Loc, Refusal};
use super::quota::{Growth, Quota};
use crate::policy::FsOp;
use std::sync::Arc;

/// How a performed call went, as far as the bookkeeping after it cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It was done.
    Done,
    /// It failed with an answer the guest sees (a missing file, say): still
    /// a use the policy allowed.
    Failed,
    /// wasmtime-wasi refused it on its own: a change in a read-only grant, a
    /// path leaving its grant, the host's permissions.
    Refused,
    /// It trapped, the trap carried in the answer (preview 2's `FsError`):
    /// counted as a use, as a failure is, and the run ends.
    Trapped,
    /// It ended the run before answering (preview 1's host error, returned
    /// beside the errno): nothing is recorded or given back.
    Ended,
}

/// An ABI's answer to a call, read the same way whoever decided the call.
pub(crate) trait Answer {
    fn verdict(&self) -> Verdict;
}

/// An ABI's answer for a refusal of type `R`: what the guest is told when
/// the decision refuses the call, which is then not performed.
pub(crate) trait Refuse<R>: Answer {
    fn refused(refusal: R) -> Self;
}

/// What a decided call leaves to do once it has been performed.
pub(crate) trait Settle {
    fn settle(self, verdict: Verdict);
}

/// Performs `call` when `decided` lets it through and settles it; a refusal
/// is answered without performing anything. `call` is only polled here, so
/// building it before the decision is made performs nothing.
pub(crate) async fn perform<R, S: Settle, A: Refuse<R>>(decided: Result<S, R>, call: impl Future<Output = A>) -> A {
    match decided {
        Err(refusal) => A::refused(refusal),
        Ok(decided) => settled(decided, call).await,
    }
}

/// Performs `call`, which `decided` let through, and settles it.
pub(crate) async fn settled<S: Settle, A: Answer>(decided: S, call: impl Future<Output = A>) -> A {
    let answer = call.await;
    decided.settle(answer.verdict());
    answer
}

/// A filesystem call the guard let through, and what is left to do when it
/// is over.
#[must_use]
pub(crate) struct Decided<'a> {
    guard: &'a FsGuard,
    /// The use recorded when it is over: `op` on `path` from `base`.
    used: Option<(u32, &'a str, FsOp)>,
    /// The `max-files` charge given back if the call does not succeed.
    charged: Option<Arc<Quota>>,
}

impl<'a> Decided<'a> {
    /// A call no rule decided, recording `used` (if any) when it is over:
    /// preview 1's path could not be read from guest memory, and
    /// wasmtime-wasi refuses the call itself.
    pub(crate) fn unchecked(guard: &'a FsGuard, used: Option<(u32, &'a str, FsOp)>) -> Decided<'a> {
        Decided {
            guard,
            used,
            charged: None,
        }
    }

    fn new(guard: &'a FsGuard, used: (u32, &'a str, FsOp), charged: Option<Arc<Quota>>) -> Decided<'a> {
        Decided {
            guard,
            used: Some(used),
            charged,
        }
    }

    fn refund(&self) {
        if let Some(quota) = &self.charged {
            quota.refund_file();
        }
    }
}

impl Settle for Decided<'_> {
    /// Gives back a creation charged for a call that did not succeed, and
    /// counts (and audits) the call: what wasmtime-wasi refused on its own as
    /// a refusal, any other answer (a missing file, say) as a use the policy
    /// allowed.
    fn settle(self, verdict: Verdict) {
        if !matches!(verdict, Verdict::Done | Verdict::Ended) {
            self.refund();
        }
        match (verdict, self.used) {
            (Verdict::Ended, _) | (_, None) => {}
            (Verdict::Refused, Some((base, path, op))) => self.guard.refused_by_wasi(base, path, op),
            (_, Some((base, path, op))) => self.guard.allowed(base, path, op),
        }
    }
}

/// A byte charge ([`Quota::charge_growth`]) settles as a creation's does:
/// given back when the change it paid for did not happen.
impl Settle for Option<Growth> {
    fn settle(self, verdict: Verdict) {
        if let Some(growth) = self
            && !matches!(verdict, Verdict::Done | Verdict::Ended)
        {
            growth.failed();
        }
    }
}

/// Decides `op` on `path` from `base`, its last link followed when `follow`
/// ([`FsGuard::check`]).
pub(crate) fn decide<'a>(
    guard: &'a FsGuard,
    base: u32,
    path: &'a str,
    follow: bool,
    op: FsOp,
) -> Result<Decided<'a>, Refusal> {
    guard.check(base, path, follow, op)?;
    Ok(Decided::new(guard, (base, path, op), None))
}

/// Decides `op` on what `handle` itself points at ([`FsGuard::check_handle`]);
/// nothing is recorded after.
pub(crate) fn decide_handle(guard: &FsGuard, handle: u32, op: FsOp) -> Result<Decided<'_>, Refusal> {
    guard.check_handle(handle, op)?;
    Ok(Decided::unchecked(guard, None))
}

/// Decides creating at `path` a folder (`FsOp::Create`) or a symbolic link
/// (`FsOp::Symlink`, [`FsGuard::check_symlink`]), charged to the grant's
/// `max-files`: creating over an existing entry fails (`EEXIST`) and is
/// given back.
pub(crate) fn decide_create<'a>(
    guard: &'a FsGuard,
    base: u32,
    path: &'a str,
    op: FsOp,
) -> Result<Decided<'a>, Refusal> {
    let checked = match op {
        FsOp::Symlink => guard.check_symlink(base, path),
        op => guard.check(base, path, false, op),
    }?;
    let charged = guard.charge_create(&checked, false)?;
    Ok(Decided::new(guard, (base, path, op), charged))
}

/// Decides removing the file `path`: a link at the name is removed, not
/// followed, so when the name decides ([`named`]) that is the decision.
pub(crate) fn decide_unlink<'a>(guard: &'a FsGuard, base: u32, path: &'a str) -> Result<Decided<'a>, Refusal> {
    match named(guard, base, path, FsOp::Remove) {
        Some(decided) => Ok(decided),
        None => decide(guard, base, path, false, FsOp::Remove),
    }
}

/// Decides a rename of `old` to `new` (`FsOp::Rename`, recorded at `old`) or
/// a hard link (`FsOp::Link`, charged to `max-files` and recorded at `new`)
/// ([`FsGuard::check_move`]).
pub(crate) fn decide_move<'a>(
    guard: &'a FsGuard,
    old: (u32, &'a str, bool),
    new: (u32, &'a str),
    op: FsOp,
) -> Result<Decided<'a>, Refusal> {
    let to = guard.check_move(old, new, op)?;
    if op != FsOp::Link {
        return Ok(Decided::new(guard, (old.0, old.1, op), None));
    }
    let charged = guard.charge_create(&to, false)?;
    Ok(Decided::new(guard, (new.0, new.1, op), charged))
}

/// Decides a look at `path` (its last link followed when `follow`) that may
/// be an entry of the folder `base`: one name, no link followed, is where it
/// leads, and only a hidden one is refused ([`FsGuard::check_entry`]), so
/// that what a listing shows may be looked at; any other path is decided as
/// a stat.
pub(crate) fn decide_entry<'a>(
    guard: &'a FsGuard,
    base: u32,
    path: &'a str,
    follow: bool,
) -> Result<Decided<'a>, Refusal> {
    let entry = !follow && !path.is_empty() && !path.contains('/') && path != "." && path != "..";
    if !entry {
        return decide(guard, base, path, follow, FsOp::Stat);
    }
    guard.check_entry(base, path)?;
    Ok(Decided::new(guard, (base, path, FsOp::Stat), None))
}

/// `op` on `path` decided by its name alone ([`FsGuard::check_name`]), to be
/// performed on the name itself, not following a link there; `None` when the
/// name does not decide.
pub(crate) fn named<'a>(guard: &'a FsGuard, base: u32, path: &'a str, op: FsOp) -> Option<Decided<'a>> {
    guard.check_name(base, path, op)?;
    Some(Decided::new(guard, (base, path, op), None))
}

/// Tries a call [`named`] decided, made on the name itself. `tried` gives
/// `None` when its answer cannot stand for the guest's call (it found a link
/// the guest asked to follow, say). An answer that is done, or ends the run,
/// stands; so does a failure, unless `retry` (the guest asked to follow a
/// link, or an exclusive creation stood in for its own open). An answer that
/// stands is settled and given; otherwise the charge is given back and the
/// caller takes the full way (`None`).
pub(crate) async fn by_name<A: Answer>(
    decided: Decided<'_>,
    retry: bool,
    tried: impl Future<Output = Option<A>>,
) -> Option<A> {
    let answer = tried.await;
    let verdict = answer.as_ref().map(Answer::verdict);
    match verdict {
        Some(Verdict::Failed | Verdict::Refused) if retry => {}
        Some(verdict) => {
            decided.settle(verdict);
            return answer;
        }
        None => {}
    }
    decided.refund();
    None
}

/// One ABI's open, as [`open`] drives it.
pub(crate) trait Open: Send {
    type Answer: Refuse<Refusal> + Send;
    /// Opens the path as the guest asked or, given `Some(exclusive)`, the
    /// name itself (not following a link there), exclusively when
    /// `exclusive`.
    fn open(&mut self, by_name: Option<bool>) -> impl Future<Output = Self::Answer> + Send;
    /// Whether the path exists, its links followed as the guest asked; `Err`
    /// with the answer when asking ended the run.
    fn exists(&mut self) -> impl Future<Output = Result<bool, Self::Answer>> + Send;
}

/// Opens `path` from `base` for `op`, its last link followed when `follow`:
/// by the name when that decides ([`FsGuard::check_name`]), else checked and,
/// for a creation counted by `max-files` of what does not exist, charged.
/// Gives the answer, and where the new handle points once the open is done.
pub(crate) async fn open<O: Open>(
    guard: &FsGuard,
    (base, path, follow): (u32, &str, bool),
    op: FsOp,
    how: &mut O,
) -> (O::Answer, Option<Loc>) {
    if let Some(checked) = guard.check_name(base, path, op) {
        // A counted creation is charged before anyone knows whether the name
        // exists, recording nothing, and made exclusive: an existing name (a
        // rewrite, which is not charged) then fails, the charge is given
        // back, and the full way decides, as it does when `max-files` is used
        // up (refusing and recording, or finding a rewrite).
        let counted = guard.file_quota(&checked).filter(|_| op == FsOp::Create);
        if counted.is_none_or(|quota| quota.reserve_file()) {
            let exclusive = counted.is_some();
            let decided = Decided::new(guard, (base, path, op), counted.cloned());
            let tried = async { Some(how.open(Some(exclusive)).await) };
            if let Some(answer) = by_name(decided, follow || exclusive, tried).await {
                return (answer, checked.loc);
            }
        }
    }
    let checked = match guard.check(base, path, follow, op) {
        Ok(checked) => checked,
        Err(refusal) => return (O::Answer::refused(refusal), None),
    };
    let mut charged = None;
    if op == FsOp::Create && guard.file_quota(&checked).is_some() {
        let exists = match checked.exists {
            Some(exists) => exists,
            None => match how.exists().await {
                Ok(exists) => exists,
                Err(ended) => return (ended, None),
            },
        };
        charged = match guard.charge_create(&checked, exists) {
            Ok(charged) => charged,
            Err(refusal) => return (O::Answer::refused(refusal), None),
        };
    }
    let decided = Decided::new(guard, (base, path, op), charged);
    (settled(decided, how.open(None)).await, checked.loc)
}
