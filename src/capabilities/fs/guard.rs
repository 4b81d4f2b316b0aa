//! The one decision point every guest filesystem operation passes, preview 1
//! and preview 2 alike: [`FsGuard`] knows where each open handle points,
//! decides the path an operation names against its grant's rules (as the
//! guest wrote it and where it leads), and records every refusal.

use super::quota::Quota;
use super::resolve::{Rel, Unresolved, host_path, lexical, resolve, walk};
use crate::capabilities::denial::Records;
use crate::policy::{DirGrant, FsDecision, FsOp, FsRules};
use cap_std::fs::Dir;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// One granted directory as the guard sees it.
struct Grant {
    guest: String,
    /// The granted host folder, to name a renamed file's host file in records.
    host: std::path::PathBuf,
    read_only: bool,
    rules: FsRules,
    /// The grant's root, opened without following links: paths in a grant
    /// with rules or a quota are resolved by following links ourselves.
    root: Dir,
    quota: Option<Arc<Quota>>,
}

impl Grant {
    /// The rules, when this is a folder of file grants that shows a file
    /// under another name than the host's.
    fn renamed(&self) -> Option<&FsRules> {
        self.rules.renames().then_some(&self.rules)
    }
}

/// Where a handle or path points: a grant and a normalized path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    grant: usize,
    rel: Rel,
}

/// Why an operation is refused, as the guest will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The path is hidden: it does not exist, as far as the guest can tell.
    NotFound,
    /// Permission denied.
    Denied,
    /// The grant's quota is used up: no space left.
    Full,
    /// The path is longer than any host path can be.
    TooLong,
    /// A rename or link between grants the guard keeps apart.
    CrossDevice,
}

/// A rule that refuses a path, found before it is recorded: the path (or
/// the name on its way) it refuses, the rule as written, and the answer.
#[derive(Debug)]
struct Ruled {
    rel: Rel,
    rule: String,
    refusal: Refusal,
}

/// Longest path the guard takes (Linux's `PATH_MAX`): longer ones could not
/// be opened by the host anyway, and every check costs time in their length.
const MAX_PATH: usize = 4096;

/// An allowed operation's path: where it leads, when the guard knows.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// `None` when the base handle is unknown (not a directory the guest
    /// holds) or the path leaves the grant: wasmtime-wasi refuses those.
    pub(crate) loc: Option<Loc>,
    /// Whether it is an existing directory (known only in grants with rules
    /// or a quota).
    pub(crate) is_dir: bool,
    /// Whether it is a symbolic link, not followed (likewise).
    pub(crate) is_link: bool,
    /// Whether it exists, when the guard followed the path (in grants with
    /// rules or a quota) from the grant's root: `None` when it did not look,
    /// or looked from a folder handle whose place may be stale.
    pub(crate) exists: Option<bool>,
}

/// A preview 1 fd open for writing below a grant with a byte quota, and
/// whether it appends. Neither its size nor its position is kept here: other
/// handles (and other processes) resize the file, so each write asks both of
/// wasmtime-wasi.
pub(crate) struct Written {
    pub(crate) quota: Arc<Quota>,
    pub(crate) target: String,
    pub(crate) append: bool,
}

/// Per-run filesystem state: the grants, where each guest handle points and
/// the run's refusal record.
#[derive(Default)]
pub(crate) struct FsGuard {
    grants: Vec<Grant>,
    denials: Records,
    /// Preview 1 fds, or preview 2 descriptors by resource index.
    handles: HashMap<u32, Loc>,
    /// Preview 2 directory listings being read (by resource index) in a
    /// grant that hides paths: the directory listed.
    listings: HashMap<u32, Loc>,
    /// Preview 1 fds written below a grant with a byte quota.
    written: HashMap<u32, Written>,
    /// Preview 1 folder fds listed in a grant that hides paths: the cookie
    /// the last listing gave its last whole entry, and wasmtime-wasi's.
    listed: HashMap<u32, (u64, i64)>,
    /// Whether any grant has path rules: then a path from a handle the
    /// guard does not know is refused rather than left to wasmtime-wasi.
    any_rules: bool,
}

impl FsGuard {
    pub(super) fn new(denials: Records) -> FsGuard {
        FsGuard {
            denials,
            ..FsGuard::default()
        }
    }

    /// Adds the next grant (grants are numbered in policy order, as
    /// wasmtime-wasi numbers its preopens).
    pub(super) fn add_grant(&mut self, grant: &DirGrant, root: Dir) {
        self.any_rules |= !grant.rules.is_empty();
        let rules = &grant.rules;
        let quota = rules
            .has_quota()
            .then(|| Quota::new(rules.quota, rules.max_files, &grant.guest, self.denials.clone()));
        self.grants.push(Grant {
            guest: grant.guest.clone(),
            host: grant.host.clone(),
            read_only: grant.access == crate::policy::Access::ReadOnly,
            rules: grant.rules.clone(),
            root,
            quota,
        });
    }

    /// Preview 1: preopened directories are fds 3, 4, ... in grant order.
    pub(crate) fn p1_preopens(&mut self) {
        for grant in 0..self.grants.len() {
            self.handles.insert(3 + grant as u32, Loc { grant, rel: Vec::new() });
        }
    }

    /// Preview 2: a preopened directory descriptor the guest was handed.
    pub(crate) fn preopened(&mut self, handle: u32, guest: &str) {
        if let Some(grant) = self.grants.iter().position(|g| g.guest == guest) {
            self.handles.insert(handle, Loc { grant, rel: Vec::new() });
        }
    }

    /// A handle opened at `loc` (unknown: forgotten, so a reused number never
    /// inherits another file's place).
    pub(crate) fn opened(&mut self, handle: u32, loc: Option<Loc>) {
        self.listed.remove(&handle);
        match loc {
            Some(loc) => self.handles.insert(handle, loc),
            None => self.handles.remove(&handle),
        };
    }

    pub(crate) fn closed(&mut self, handle: u32) {
        self.handles.remove(&handle);
        self.listings.remove(&handle);
        self.written.remove(&handle);
        self.listed.remove(&handle);
    }

    /// Preview 1 `fd_renumber`: `to` now holds what `from` held.
    pub(crate) fn renumbered(&mut self, from: u32, to: u32) {
        let loc = self.handles.remove(&from);
        self.opened(to, loc);
        match self.listed.remove(&from) {
            Some(at) => self.listed.insert(to, at),
            None => self.listed.remove(&to),
        };
        match self.written.remove(&from) {
            Some(w) => self.written.insert(to, w),
            None => self.written.remove(&to),
        };
    }

    /// The byte quota `loc`'s grant counts writes against, with `loc`'s
    /// guest path for the record.
    pub(crate) fn byte_quota(&self, loc: &Loc) -> Option<(Arc<Quota>, String)> {
        let quota = self.grants[loc.grant].quota.as_ref().filter(|q| q.counts_bytes())?;
        Some((quota.clone(), self.guest_path(loc)))
    }

    /// As [`byte_quota`](Self::byte_quota), for what `handle` points at.
    pub(crate) fn handle_quota(&self, handle: u32) -> Option<(Arc<Quota>, String)> {
        self.byte_quota(self.handles.get(&handle)?)
    }

    /// The `max-files` quota creating what `checked` names is counted
    /// against, if its grant has one.
    pub(crate) fn file_quota(&self, checked: &Checked) -> Option<&Arc<Quota>> {
        let quota = self.grants[checked.loc.as_ref()?.grant].quota.as_ref();
        quota.filter(|q| q.counts_files())
    }

    /// Preview 1: `fd` was opened for writing at `loc`.
    pub(crate) fn track_write(&mut self, fd: u32, loc: &Loc, append: bool) {
        if let Some((quota, target)) = self.byte_quota(loc) {
            self.written.insert(fd, Written { quota, target, append });
        }
    }

    pub(crate) fn written(&mut self, fd: u32) -> Option<&mut Written> {
        self.written.get_mut(&fd)
    }

    /// Charges the creation of what `checked` names against its grant's
    /// `max-files`, unless `exists` (from [`Checked::exists`], else asked of
    /// wasmtime-wasi, whose answer does not depend on the guard's picture of
    /// the tree). The
    /// quota charged is given back, to refund a creation that then fails.
    pub(crate) fn charge_create(&self, checked: &Checked, exists: bool) -> Result<Option<Arc<Quota>>, Refusal> {
        let Some(loc) = checked.loc.as_ref().filter(|_| !exists) else {
            return Ok(None);
        };
        let Some(quota) = self.grants[loc.grant].quota.as_ref() else {
            return Ok(None);
        };
        if quota.charge_file(&self.guest_path(loc)) {
            Ok(Some(quota.clone()))
        } else {
            Err(Refusal::Full)
        }
    }

    /// Decides `op` on `path`, taken from the directory `base`; `follow`
    /// follows a link in the last component. Both the path as written and
    /// where it leads are decided, and so is every name either passes on
    /// the way (see [`ruling`](Self::ruling)); a refusal is recorded.
    ///
    /// The path as written is decided before the disk is read, so a rule's
    /// answer never depends on what lies behind it.
    pub(crate) fn check(&self, base: u32, path: &str, follow: bool, op: FsOp) -> Result<Checked, Refusal> {
        if path.len() > MAX_PATH {
            return Err(Refusal::TooLong);
        }
        let Some(from) = self.folder(base, path, op)? else {
            return Ok(Checked::default());
        };
        let grant = &self.grants[from.grant];
        let passing = |rel: &[String]| match self.ruling(from.grant, rel, FsOp::Stat) {
            Some(ruled) => Err(ruled),
            None => Ok(()),
        };
        let lex = match walk(&from.rel, path, passing) {
            Ok(Some(lex)) => lex,
            // Absolute, or `..` above the folder: wasmtime-wasi refuses it.
            Ok(None) => return Ok(Checked::default()),
            Err(ruled) => return Err(self.refuse(from, (path, follow), op, ruled)),
        };
        let lexical_only = |lex: Rel| Checked {
            loc: Some(Loc {
                grant: from.grant,
                rel: lex,
            }),
            ..Checked::default()
        };
        if grant.rules.is_empty() && !grant.rules.has_quota() {
            return Ok(lexical_only(lex));
        }
        // A creation is decided as a write until the disk tells which it is:
        // every rule that refuses a write refuses the creation too.
        let early = if op == FsOp::Create { FsOp::Write } else { op };
        if let Some(ruled) = self.ruling(from.grant, &lex, early) {
            return Err(self.refuse(from, (path, follow), op, ruled));
        }
        let resolved = match resolve(&grant.root, &from.rel, (path, grant.renamed()), follow, passing) {
            Ok(r) => r,
            Err(Unresolved::Ruled(ruled)) => return Err(self.refuse(from, (path, follow), op, ruled)),
            // A link out of the grant, or a loop: wasmtime-wasi refuses it.
            Err(Unresolved::Leaves) => return Ok(Checked::default()),
            Err(Unresolved::Unreadable) if grant.rules.is_empty() => return Ok(lexical_only(lex)),
            Err(Unresolved::Unreadable) => {
                let loc = Loc {
                    grant: from.grant,
                    rel: lex,
                };
                self.record(op, &loc, "the path passes a link or name the guard cannot follow");
                return Err(Refusal::Denied);
            }
        };
        // Opening an existing file with "create" only writes it.
        let op = if op == FsOp::Create && resolved.exists {
            FsOp::Write
        } else {
            op
        };
        if op != early {
            self.decide(from.grant, &lex, op)?;
        }
        if resolved.rel != lex {
            self.decide(from.grant, &resolved.rel, op)?;
        }
        Ok(Checked {
            loc: Some(Loc {
                grant: from.grant,
                rel: resolved.rel,
            }),
            is_dir: resolved.is_dir,
            is_link: resolved.is_link,
            // Only from a grant's root: a folder handle keeps the place it
            // was opened at, and the guest may since have renamed that
            // folder (in a grant whose rules do not reach into it), so
            // wasmtime-wasi, which opens below the real folder, is asked.
            exists: from.rel.is_empty().then_some(resolved.exists),
        })
    }

    /// Where the folder `base` a path is taken from is. `None` when the
    /// guard does not know it and no grant has rules: wasmtime-wasi decides.
    fn folder(&self, base: u32, path: &str, op: FsOp) -> Result<Option<&Loc>, Refusal> {
        match self.handles.get(&base) {
            Some(from) => Ok(Some(from)),
            None if !self.any_rules => Ok(None),
            None => {
                // Every directory the guest holds came from a preopen or an
                // open the guard saw; a path from anything else cannot be
                // placed.
                let why = "not relative to a directory the guest opened in a grant";
                self.denials.refuse(op.kind(), path, why);
                Err(Refusal::Denied)
            }
        }
    }

    /// Records `ruled`, which refused `op` on `path` (from `from`, its last
    /// link followed as `follow` says) before anything behind the rule was
    /// read, and gives its answer. Only then is the disk read, and only to
    /// name the refusal in the record: a creation of what exists is a write.
    fn refuse(&self, from: &Loc, (path, follow): (&str, bool), op: FsOp, ruled: Ruled) -> Refusal {
        let op = match op == FsOp::Create && self.exists(from, path, follow) {
            true => FsOp::Write,
            false => op,
        };
        let loc = Loc {
            grant: from.grant,
            rel: ruled.rel,
        };
        self.record(op, &loc, &ruled.rule);
        ruled.refusal
    }

    /// Whether `path` from `from` exists, for a record only.
    fn exists(&self, from: &Loc, path: &str, follow: bool) -> bool {
        let grant = &self.grants[from.grant];
        let at = (path, grant.renamed());
        resolve(&grant.root, &from.rel, at, follow, |_| Ok::<(), ()>(())).is_ok_and(|r| r.exists)
    }

    /// Decides `op` on `path` by its name alone, without reading the disk,
    /// when that is the whole decision: `path` is one name in a directory
    /// the guest holds, in a grant with rules or a quota, the rules allow
    /// the name.
    /// `None` otherwise, and then [`check`](Self::check) decides, recording
    /// a refusal.
    ///
    /// The caller must then perform the operation *without following* a
    /// link at the name, so that what it reaches is the name itself: an
    /// operation that follows one is tried that way first (an open of a
    /// link fails, a stat shows the link), and on any failure checked again
    /// with [`check`](Self::check) and performed as the guest asked. Unlike
    /// a look at the disk before the operation, this leaves no moment in
    /// which a link planted at the name could be followed unchecked.
    pub(crate) fn check_name(&self, base: u32, path: &str, op: FsOp) -> Option<Checked> {
        if path.is_empty() || path.len() > MAX_PATH || path.contains('/') || path == "." || path == ".." {
            return None;
        }
        let from = self.handles.get(&base)?;
        let grant = &self.grants[from.grant];
        if grant.rules.is_empty() && !grant.rules.has_quota() {
            return None;
        }
        let mut rel = from.rel.clone();
        rel.push(path.to_string());
        if grant.rules.decide(&rel.join("/"), op) != FsDecision::Allow {
            return None;
        }
        Some(Checked {
            loc: Some(Loc { grant: from.grant, rel }),
            ..Checked::default()
        })
    }

    /// Decides creating a symbolic link at `path`: as [`check`](Self::check),
    /// and refused where a rule reaches inside the name (a link `.git` would
    /// stand in for the folder `.git/hooks/**` protects).
    pub(crate) fn check_symlink(&self, base: u32, path: &str) -> Result<Checked, Refusal> {
        let checked = self.check(base, path, false, FsOp::Symlink)?;
        self.no_rule_inside(&checked, FsOp::Symlink, "a link there would stand in for that folder")?;
        Ok(checked)
    }

    fn no_rule_inside(&self, checked: &Checked, op: FsOp, why: &str) -> Result<(), Refusal> {
        let Some(loc) = &checked.loc else {
            return Ok(());
        };
        match self.grants[loc.grant].rules.rule_inside(&loc.rel.join("/")) {
            Some(rule) => {
                self.record(op, loc, &format!("{rule} reaches inside it; {why}"));
                Err(Refusal::Denied)
            }
            None => Ok(()),
        }
    }

    /// Whether `loc` is a directory or a link (what could carry a folder's
    /// contents to another place when moved), reading the disk if needed.
    fn moves_a_tree(&self, checked: &Checked) -> bool {
        if checked.is_dir || checked.is_link {
            return true;
        }
        let Some(loc) = &checked.loc else {
            return false;
        };
        let rel = loc.rel.join("/");
        let grant = &self.grants[loc.grant];
        grant.rules.is_empty()
            && !grant.rules.has_quota()
            && !rel.is_empty()
            && grant
                .root
                .symlink_metadata(&rel)
                .is_ok_and(|m| m.is_dir() || m.file_type().is_symlink())
    }

    /// Decides `op` on what `handle` itself points at (changing an open
    /// file's times, say).
    pub(crate) fn check_handle(&self, handle: u32, op: FsOp) -> Result<(), Refusal> {
        match self.handles.get(&handle) {
            Some(loc) => self.decide(loc.grant, &loc.rel, op),
            None => Ok(()),
        }
    }

    /// Decides a rename (or a link, with `op`) of `old` from `old_base` to
    /// `new` from `new_base`: both ends, and for a directory, whether a
    /// rule reaches inside it at either place. Gives where `new` leads.
    pub(crate) fn check_move(
        &self,
        (old_base, old, follow_old): (u32, &str, bool),
        (new_base, new): (u32, &str),
        op: FsOp,
    ) -> Result<Checked, Refusal> {
        let from = self.check(old_base, old, follow_old, op)?;
        let to = self.check(new_base, new, false, op)?;
        if let (Some(f), Some(t)) = (&from.loc, &to.loc)
            && f.grant != t.grant
            && self.grants[t.grant].quota.is_some()
        {
            // What moves in would bring bytes and entries the quota never
            // charged; answered as a move across file systems, so the guest
            // copies instead, and the copy is charged.
            self.record(
                op,
                t,
                "a grant with a quota takes no renames or links from another grant",
            );
            return Err(Refusal::CrossDevice);
        }
        if !self.moves_a_tree(&from) {
            return Ok(to);
        }
        if let (Some(f), Some(t)) = (&from.loc, &to.loc)
            && f.grant != t.grant
            && !(self.grants[f.grant].rules.is_empty() && self.grants[t.grant].rules.is_empty())
        {
            self.record(
                op,
                f,
                "a folder or link cannot move between grants when either has rules",
            );
            return Err(Refusal::Denied);
        }
        self.no_rule_inside(&from, op, "moving it would carry files out from under the rule")?;
        self.no_rule_inside(&to, op, "moving a folder there would carry files under the rule")?;
        Ok(to)
    }

    fn decide(&self, grant: usize, rel: &[String], op: FsOp) -> Result<(), Refusal> {
        match self.ruling(grant, rel, op) {
            None => Ok(()),
            Some(ruled) => {
                let loc = Loc { grant, rel: ruled.rel };
                self.record(op, &loc, &ruled.rule);
                Err(ruled.refusal)
            }
        }
    }

    /// The rule refusing `op` on `rel`, if one does (not yet recorded).
    /// `FsOp::Stat` asks whether a path may pass through `rel` on its way
    /// (into it and out by `..`, or on below it): refused when a rule hides
    /// or denies it, as a path ending there would be; a `read-only` rule
    /// lets it pass, since the guest may look there.
    fn ruling(&self, grant: usize, rel: &[String], op: FsOp) -> Option<Ruled> {
        let rules = &self.grants[grant].rules;
        if rules.is_empty() {
            return None;
        }
        match rules.decide(&rel.join("/"), op) {
            FsDecision::Allow => None,
            FsDecision::Deny { rule, hide } => Some(Ruled {
                rel: rel.to_vec(),
                rule,
                refusal: if hide { Refusal::NotFound } else { Refusal::Denied },
            }),
        }
    }

    fn record(&self, op: FsOp, loc: &Loc, rule: &str) {
        let rule = format!("{rule} in {}", self.grant_words(loc));
        self.denials.refuse(op.kind(), &self.guest_path(loc), &rule);
    }

    /// The grant `loc` is in, for a record: its guest path, and the host file
    /// when `loc` is a file granted under another name (records speak of the
    /// guest's names; this shows which host file one stands for).
    fn grant_words(&self, loc: &Loc) -> String {
        let grant = &self.grants[loc.grant];
        if let (Some(rules), [name]) = (grant.renamed(), loc.rel.as_slice())
            && let Some(file) = rules.files.iter().find(|f| &f.name == name && f.host != f.name)
        {
            let host = grant.host.join(&file.host);
            return format!("the grant at {} of host file `{}`", grant.guest, host.display());
        }
        format!("the grant at {}", grant.guest)
    }

    /// Counts (and audits) an operation that was allowed and done.
    pub(crate) fn allowed(&self, base: u32, path: &str, op: FsOp) {
        let rule = || match self.handles.get(&base) {
            Some(from) => {
                let grant = &self.grants[from.grant];
                let access = if grant.read_only { "read-only" } else { "read-write" };
                let rel = lexical(&from.rel, path).unwrap_or_default();
                let words = self.grant_words(&Loc { grant: from.grant, rel });
                format!("{words} ({access})")
            }
            None => "no grant".to_string(),
        };
        let target = || match self.handles.get(&base) {
            Some(from) => self.target(from, path),
            None => path.to_string(),
        };
        let seen = if op == FsOp::Stat { "fs-stat" } else { op.kind() };
        self.denials.allow_seen_as(op.kind(), seen, target, rule);
    }

    /// Records a refusal wasmtime-wasi made on its own (a change in a
    /// read-only grant, a path leaving its grant, the host's permissions).
    pub(crate) fn refused_by_wasi(&self, base: u32, path: &str, op: FsOp) {
        let Some(from) = self.handles.get(&base) else {
            let rule = "not below a granted directory";
            return self.denials.refuse(op.kind(), path, rule);
        };
        let guest = &self.grants[from.grant].guest;
        let rule = if lexical(&from.rel, path).is_none() {
            format!("the path leaves the grant at {guest}")
        } else if self.grants[from.grant].read_only && op.modifies() {
            format!("the grant at {guest} is read-only")
        } else {
            format!("refused by the host in the grant at {guest} (its permissions or links)")
        };
        self.denials.refuse(op.kind(), &self.target(from, path), &rule);
    }

    /// `path` from `from`, named for a record: inside the grant when it stays
    /// there, else as written after `from`'s own name.
    fn target(&self, from: &Loc, path: &str) -> String {
        match lexical(&from.rel, path) {
            Some(rel) => self.guest_path(&Loc { grant: from.grant, rel }),
            None => format!("{}/{path}", self.guest_path(from).trim_end_matches('/')),
        }
    }

    /// Notes that the guest lists the folder `handle` (kept for learning
    /// only: see [`Records::seen`]).
    pub(crate) fn note_listing(&self, handle: u32) {
        if let Some(loc) = self.handles.get(&handle) {
            self.denials.seen("fs-list", || self.guest_path(loc));
        }
    }

    /// The directory `handle` lists, when its grant hides paths.
    pub(crate) fn hiding_in(&self, handle: u32) -> Option<Loc> {
        let loc = self.handles.get(&handle)?;
        self.grant_hides(loc.grant).then(|| loc.clone())
    }

    /// Whether `handle` (a folder or file the guest holds) is in a grant
    /// that hides paths: then what a stat counts of a folder's entries is
    /// not given out (see `fs::p1::masked_filestat`).
    pub(crate) fn hides(&self, handle: u32) -> bool {
        self.handles.get(&handle).is_some_and(|loc| self.grant_hides(loc.grant))
    }

    fn grant_hides(&self, grant: usize) -> bool {
        let rules = &self.grants[grant].rules;
        rules.hide && !(rules.deny.is_empty() && rules.files.is_empty())
    }

    /// Preview 1: a listing of `fd` in a grant that hides paths gave `ours`
    /// as its last whole entry's cookie, which is wasmtime-wasi's `theirs`.
    pub(crate) fn listed(&mut self, fd: u32, ours: u64, theirs: i64) {
        self.listed.insert(fd, (ours, theirs));
    }

    /// wasmtime-wasi's cookie for our cookie `ours` of `fd`, when the fd's
    /// last listing ended there.
    pub(crate) fn listed_to(&self, fd: u32, ours: u64) -> Option<i64> {
        self.listed
            .get(&fd)
            .filter(|(at, _)| *at == ours && ours > 0)
            .map(|(_, theirs)| *theirs)
    }

    /// Preview 2: a listing of `dir` (from [`FsGuard::hiding_in`]) started.
    pub(crate) fn listing(&mut self, stream: u32, dir: Loc) {
        self.listings.insert(stream, dir);
    }

    pub(crate) fn listing_of(&self, stream: u32) -> Option<&Loc> {
        self.listings.get(&stream)
    }

    /// Decides a look at `name`, an entry of the directory `handle` (one
    /// name, its last link not followed, so the path as written is where it
    /// leads and the disk need not be read): only a hidden entry is refused,
    /// as absent, and recorded.
    pub(crate) fn check_entry(&self, handle: u32, name: &str) -> Result<(), Refusal> {
        let Some(dir) = self.hiding_in(handle) else {
            return Ok(());
        };
        let mut rel = dir.rel;
        rel.push(name.to_string());
        match self.grants[dir.grant].rules.decide(&rel.join("/"), FsOp::Stat) {
            FsDecision::Deny { rule, hide: true } => {
                self.record(FsOp::Stat, &Loc { grant: dir.grant, rel }, &rule);
                Err(Refusal::NotFound)
            }
            _ => Ok(()),
        }
    }

    /// The name a listing of directory `dir` shows for its entry `name` (as
    /// the host lists it): the name the guest calls it, `None` when hidden.
    pub(crate) fn shown<'n>(&'n self, dir: &Loc, name: &'n str) -> Option<&'n str> {
        let rules = &self.grants[dir.grant].rules;
        // In the folder of file grants, a granted file is shown under its
        // guest name, and a host name no grant shows is hidden, even when it
        // is another file's guest name.
        let name = match dir.rel.is_empty() && rules.renames() {
            true => rules.guest_name(name)?,
            false => name,
        };
        let mut rel = dir.rel.clone();
        rel.push(name.to_string());
        match rules.decide(&rel.join("/"), FsOp::Stat) {
            FsDecision::Deny { hide: true, .. } => None,
            _ => Some(name),
        }
    }

    /// The path wasmtime-wasi is to be handed for `path` from `base`, which
    /// the guard decided (or refused) as the guest wrote it: the same, but
    /// in the folder of file grants that shows a file under another name,
    /// with each granted name written as the host calls it. Every call that
    /// names a path hands this one on, never the guest's, so a guest name
    /// reaches the host only as the file it was decided for (`app.conf` as
    /// `one.conf`, never the host's own `app.conf`).
    pub(crate) fn host_path<'p>(&self, base: u32, path: &'p str) -> Cow<'p, str> {
        let Some(from) = self.handles.get(&base) else {
            return path.into();
        };
        match self.grants[from.grant].renamed() {
            Some(rules) => host_path(rules, from.rel.len(), path),
            None => path.into(),
        }
    }

    fn guest_path(&self, loc: &Loc) -> String {
        let guest = self.grants[loc.grant].guest.trim_end_matches('/');
        if loc.rel.is_empty() {
            return if guest.is_empty() { "/".into() } else { guest.into() };
        }
        format!("{guest}/{}", loc.rel.join("/"))
    }
}
