//! What a guest did inside each directory and file grant, and the narrowest
//! grants that allow it: dropped when unused, read-only when nothing was
//! written, file grants when a few files of one folder were all it used,
//! the untouched entries of a folder denied and hidden when they are fewer
//! than the ones it used, else the folder whole.

use crate::policy::{Access, DirGrant, FsDecision, FsOp, FsRules, Policy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most files one grant becomes as `[[fs.files]]` grants; past it, the
/// folder is granted.
pub const MAX_LEARNED_FILES: usize = 8;

/// Most entries of a folder listed to find the untouched ones; a larger
/// folder is granted whole.
const MAX_LISTED: usize = 10_000;

/// Most `deny` rules learned for one folder (a policy takes 256 rules per
/// grant); past it, the folder is granted whole.
pub const MAX_LEARNED_DENIALS: usize = 128;

/// What was done to one path below a grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Touch {
    /// Opened for reading.
    pub read: bool,
    /// Looked at (`stat`), or passed through on the way to another path.
    pub stat: bool,
    /// Listed (a folder).
    pub list: bool,
    /// Its contents changed (written, truncated, resized, times set).
    pub write: bool,
    /// Created, removed, renamed, linked: the folder's shape changed.
    pub shape: bool,
}

/// One grant as the runs used it, keyed by its guest path.
#[derive(Debug, Clone)]
pub(super) struct GrantUse {
    pub guest: String,
    pub host: PathBuf,
    /// The access the grant had where it was learned from.
    pub access: Access,
    /// Its rules where it was learned from (files, deny, quotas...).
    pub rules: FsRules,
    /// Paths below it, as components, and what was done to each.
    pub used: BTreeMap<Vec<String>, Touch>,
    /// The folder must stay granted whole (an earlier learned policy granted
    /// it so).
    pub whole: bool,
    /// The folder must stay a folder grant (an earlier learned policy
    /// granted it so), perhaps with some entries denied.
    pub folder: bool,
    /// The grant holds the policy's `fs.cwd`.
    pub holds_cwd: bool,
    /// An earlier learned policy granted it read-write.
    pub wrote_before: bool,
    /// Entry names an earlier policy denied: denied again unless a run
    /// used them, however many other entries were used.
    pub keep_deny: BTreeSet<String>,
}

/// The kind of a use as the filesystem operation it records.
pub(super) fn op_of(kind: &str) -> Option<FsOp> {
    Some(match kind {
        "fs-read" => FsOp::Read,
        "fs-stat" | "fs-list" => FsOp::Stat,
        "fs-write" => FsOp::Write,
        "fs-create" => FsOp::Create,
        "fs-remove" => FsOp::Remove,
        "fs-rename" => FsOp::Rename,
        "fs-link" => FsOp::Link,
        "fs-symlink" => FsOp::Symlink,
        _ => return None,
    })
}

/// The grant of `policy` a guest path is in (the deepest whose guest path is
/// a prefix of it, component by component), with the path's components
/// below it; `None` for a path no grant holds or one that is not plain
/// (`.`, `..` or empty components).
pub(super) fn locate<'p>(policy: &'p Policy, target: &str) -> Option<(&'p DirGrant, Vec<String>)> {
    let plain = target.starts_with('/') && !target.contains("//");
    if !plain || target.split('/').any(|c| matches!(c, "." | "..")) {
        return None;
    }
    // The deepest grant holding it: the one it lies fewest names below.
    policy
        .dirs()
        .iter()
        .filter_map(|g| below(&g.guest, target).map(|rel| (g, rel)))
        .min_by_key(|(_, rel)| rel.len())
}

/// Whether `policy` allows `op` on `rel` in `grant`: what a use the run
/// reported must pass again before it is learned, so a run's report can
/// never add what its policy did not grant.
pub(super) fn allows(grant: &DirGrant, rel: &[String], op: FsOp) -> bool {
    if op.modifies() && grant.access == Access::ReadOnly && grant.rules.files.is_empty() {
        return false;
    }
    if !grant.rules.files.is_empty() && rel.is_empty() && op.modifies() {
        return false;
    }
    matches!(grant.rules.decide(&rel.join("/"), op), FsDecision::Allow)
}

impl GrantUse {
    pub(super) fn new(grant: &DirGrant, cwd: Option<&str>) -> GrantUse {
        let mut used = GrantUse {
            guest: grant.guest.clone(),
            host: grant.host.clone(),
            access: grant.access,
            rules: grant.rules.clone(),
            used: BTreeMap::new(),
            whole: false,
            folder: false,
            holds_cwd: false,
            wrote_before: false,
            keep_deny: BTreeSet::new(),
        };
        used.mark_cwd(cwd);
        used
    }

    /// Marks `fs.cwd`, when it lies in this grant, as needed, so that it
    /// stays reachable: never an untouched entry, never left out of a file
    /// grant.
    pub(super) fn mark_cwd(&mut self, cwd: Option<&str>) {
        if let Some(rel) = cwd.and_then(|cwd| below(&self.guest, cwd)) {
            self.holds_cwd = true;
            self.touch(rel, FsOp::Stat);
        }
    }

    /// Whether the grant's host path (and each granted file's) is still
    /// the path it names, with no link anywhere on it: a folder a guest
    /// swapped for a link since the policy was resolved is not granted.
    pub(super) fn host_unchanged(&self) -> bool {
        unlinked(&self.host) && self.rules.files.iter().all(|f| unlinked(&self.host.join(&f.host)))
    }

    pub(super) fn touch(&mut self, rel: Vec<String>, op: FsOp) {
        let touch = self.used.entry(rel).or_default();
        match op {
            FsOp::Read => touch.read = true,
            FsOp::Stat => touch.stat = true,
            FsOp::Write => touch.write = true,
            FsOp::Create | FsOp::Remove | FsOp::Rename | FsOp::Link | FsOp::Symlink => touch.shape = true,
        }
    }

    /// Whether anything was written or created below it.
    pub(super) fn written(&self) -> bool {
        self.wrote_before || self.used.values().any(|t| t.write || t.shape)
    }

    /// Whether the runs needed the grant at all.
    pub(super) fn needed(&self) -> bool {
        !self.used.is_empty() || self.whole || self.holds_cwd
    }
}

/// How one used grant is written, with the reason in words for the file.
#[derive(Debug)]
pub(super) enum Shape {
    /// `[[fs.files]]` grants: (host file, guest path, access).
    Files(Vec<(PathBuf, String, Access)>),
    /// `[[fs.dirs]]`, its access, rules and the entries learned to deny.
    Folder { access: Access, deny: Vec<String> },
}

/// The narrowest grant for `used`, and why it was chosen. `nested`: another
/// learned grant lies inside or around this one (a grant with rules may
/// overlap none, so no rule is added).
pub(super) fn shape(used: &GrantUse, nested: bool) -> (Shape, String) {
    let access = access_for(used.written());
    let ro_note = if access == Access::ReadOnly && used.access == Access::ReadWrite {
        " read-only: nothing was written there;"
    } else {
        ""
    };
    if !used.rules.files.is_empty() {
        return (
            Shape::Files(file_grants_of_folder(used)),
            format!("{ro_note} the granted files the guest used"),
        );
    }
    if let Some(files) = as_files(used).filter(|_| !nested) {
        let why = format!(
            "{ro_note} the guest used {} file(s) of this folder, and nothing else there: granted as files, not the folder",
            files.len()
        );
        return (Shape::Files(files), why);
    }
    let (deny, why) = untouched(used, nested);
    (Shape::Folder { access, deny }, format!("{ro_note} {why}"))
}

/// The components of the guest path `path` below the guest path `root`
/// (empty for `root` itself); `None` when it is not below it.
pub(super) fn below(root: &str, path: &str) -> Option<Vec<String>> {
    let components = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect()
    };
    let (root, path) = (components(root), components(path));
    path.strip_prefix(root.as_slice()).map(<[String]>::to_vec)
}

/// The access a grant needs: read-write only where something was written.
fn access_for(written: bool) -> Access {
    if written { Access::ReadWrite } else { Access::ReadOnly }
}

/// Whether `path` is itself, with no link anywhere on it (its last name
/// included): what a learned grant may name.
fn unlinked(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_symlink())
        && std::fs::canonicalize(path).is_ok_and(|c| c == path)
}

/// The `[[fs.files]]` of a folder of file grants that the runs used.
fn file_grants_of_folder(used: &GrantUse) -> Vec<(PathBuf, String, Access)> {
    let guest = used.guest.trim_end_matches('/');
    used.rules
        .files
        .iter()
        .filter_map(|f| {
            let touch = used.used.get(std::slice::from_ref(&f.name))?;
            Some((
                used.host.join(&f.host),
                format!("{guest}/{}", f.name),
                access_for(touch.write),
            ))
        })
        .collect()
}

/// The grant as a few file grants, when that allows all it did: only
/// existing regular files of one folder were used (not the folder itself,
/// nothing created or removed), at most [`MAX_LEARNED_FILES`], reached
/// through no link, and the grant does not hold `fs.cwd` or count what is
/// written there (a file grant has no quota). The grant's own rules allowed
/// each of these files, so the file grants are narrower still.
fn as_files(used: &GrantUse) -> Option<Vec<(PathBuf, String, Access)>> {
    if used.whole || used.folder || used.holds_cwd || (used.rules.has_quota() && used.written()) {
        return None;
    }
    // A look at the grant's own folder is still allowed when the files are
    // granted in that very folder.
    let root_looked_at = used
        .used
        .get(&Vec::new())
        .is_some_and(|t| !(t.list || t.write || t.shape));
    let files: Vec<_> = used.used.iter().filter(|(rel, _)| !rel.is_empty()).collect();
    if files.len() + usize::from(root_looked_at) != used.used.len() {
        return None;
    }
    if files.len() > MAX_LEARNED_FILES || files.iter().any(|(_, t)| t.shape) {
        return None;
    }
    let mut parents = files.iter().map(|(rel, _)| &rel[..rel.len() - 1]);
    let first = parents.next()?;
    if parents.any(|p| p != first) || (root_looked_at && !first.is_empty()) {
        return None;
    }
    let guest = used.guest.trim_end_matches('/');
    files
        .into_iter()
        .map(|(rel, touch)| {
            let host = rel.iter().fold(used.host.clone(), |p, c| p.join(c));
            // A folder on the way that is now a link (a guest may plant one)
            // makes no file grant: the grant names the file a later load finds.
            let meta = std::fs::symlink_metadata(&host).ok()?;
            (unlinked(&host) && meta.file_type().is_file())
                .then(|| (host, format!("{guest}/{}", rel.join("/")), access_for(touch.write)))
        })
        .collect()
}

/// The top-level entries of the folder no run used, to deny and hide when
/// they are fewer than the names used (and the names an earlier policy
/// denied that no run used, always), and why.
fn untouched(used: &GrantUse, nested: bool) -> (Vec<String>, String) {
    let first: BTreeSet<&str> = used
        .used
        .keys()
        .filter_map(|rel| rel.first())
        .map(String::as_str)
        .collect();
    let denied = |n: &str| first.contains(n) || used.rules.deny.iter().any(|g| g.covers(n));
    // What an earlier policy denied stays denied on every path below, even
    // when the rest of the folder is granted whole.
    let kept: Vec<String> = used.keep_deny.iter().filter(|n| !denied(n)).cloned().collect();
    if used.whole {
        return (kept, "an earlier learned policy granted the whole folder".into());
    }
    if used.used.get(&Vec::new()).is_some_and(|t| t.list || t.write || t.shape) {
        return (
            kept,
            "the guest listed the folder itself: granted whole, so that it lists the same".into(),
        );
    }
    if nested {
        return (
            kept,
            "another grant lies inside or around this one, and a grant with rules may overlap none: granted whole"
                .into(),
        );
    }
    let Some((names, unnamed)) = list(&used.host) else {
        return (
            kept,
            "the folder could not be listed or is too large: granted whole".into(),
        );
    };
    let others: Vec<String> = names.into_iter().filter(|n| !denied(n) && !kept.contains(n)).collect();
    let unnamed = match unnamed {
        0 => String::new(),
        n => format!("; {n} entr(y/ies) whose names a rule cannot spell (not UTF-8, or with `*` or `?`) stay visible"),
    };
    if others.is_empty() {
        return (kept, format!("the guest used every entry of the folder{unnamed}"));
    }
    // A grant takes 256 `deny` and `read-only` patterns in all.
    let room = MAX_LEARNED_DENIALS.min(256usize.saturating_sub(used.rules.deny.len() + used.rules.read_only.len()));
    if others.len() > first.len() || others.len() + kept.len() > room {
        return (
            kept,
            format!(
                "the guest used {} name(s) at the top of the folder; denying the {} entries it never touched would list more than it used, so the folder is granted whole{unnamed}",
                first.len(),
                others.len()
            ),
        );
    }
    let why = format!(
        "the guest used {} name(s) at the top of the folder; the {} entries there it never touched are denied and hidden{unnamed}",
        first.len(),
        others.len()
    );
    let mut deny = kept;
    deny.extend(others);
    deny.sort();
    (deny, why)
}

/// The folder's entry names a `deny` rule can spell exactly (UTF-8, no
/// glob character), sorted, and how many it cannot; `None` when it cannot
/// be listed or holds more than [`MAX_LISTED`] entries.
fn list(dir: &Path) -> Option<(Vec<String>, usize)> {
    let mut names = Vec::new();
    let mut unnamed = 0;
    for (i, entry) in std::fs::read_dir(dir).ok()?.enumerate() {
        if i >= MAX_LISTED {
            return None;
        }
        match entry.ok()?.file_name().into_string() {
            Ok(name) if !name.contains(['*', '?']) => names.push(name),
            _ => unnamed += 1,
        }
    }
    names.sort();
    Some((names, unnamed))
}

/// Adds what an earlier learned policy granted in `grant`, found at `below`
/// inside `used` (empty when it is `used`'s own grant), as uses: a file
/// grant's files as read (and written when read-write), a folder granted
/// with denied entries as its other entries used, a folder granted whole as
/// needed whole.
pub(super) fn add_granted(used: &mut GrantUse, below: &[String], grant: &DirGrant) {
    let at = |name: &str| {
        let mut rel = below.to_vec();
        rel.push(name.to_string());
        rel
    };
    if !grant.rules.files.is_empty() {
        for f in &grant.rules.files {
            used.touch(at(&f.name), FsOp::Read);
            if f.access == Access::ReadWrite {
                used.touch(at(&f.name), FsOp::Write);
            }
        }
        return;
    }
    if !below.is_empty() {
        // A folder granted below this grant, folded in only when that
        // widens nothing (see `fits_below`): needed whole, as a folder.
        used.touch(below.to_vec(), FsOp::Read);
        used.touch(below.to_vec(), FsOp::Stat);
        if grant.access == Access::ReadWrite {
            used.touch(below.to_vec(), FsOp::Write);
        }
        return;
    }
    used.folder = true;
    used.wrote_before |= grant.access == Access::ReadWrite;
    let denied: Vec<String> = learned_denials(&grant.rules).map(|g| g.as_str().to_string()).collect();
    if grant.rules.deny.is_empty() {
        used.whole = true;
        return;
    }
    match list(&grant.host) {
        Some((names, _)) => {
            for name in names
                .into_iter()
                .filter(|n| !grant.rules.deny.iter().any(|g| g.covers(n)))
            {
                used.touch(vec![name], FsOp::Stat);
            }
        }
        None => used.whole = true,
    }
    used.keep_deny.extend(denied);
}

/// Whether an earlier policy's `grant`, lying inside `used`, can be folded
/// into it without widening anything: it adds no access `used` lacks and
/// carries no rules of its own.
pub(super) fn fits_below(used: &GrantUse, grant: &DirGrant) -> bool {
    (grant.access == Access::ReadOnly || used.access == Access::ReadWrite)
        && (grant.rules.is_empty() || !grant.rules.files.is_empty())
        && !grant.rules.has_quota()
}

/// Whether a `deny` rule is one `learn` writes: one plain entry name.
fn is_learned_denial(glob: &crate::policy::PathGlob) -> bool {
    let text = glob.as_str();
    !text.contains(['/', '*', '?'])
}

/// Drops the `deny` rules `learn` wrote from `rules` (of a grant taken from
/// an earlier learned policy): the names they denied are untouched entries
/// again, decided afresh with this run's uses; the rules a person wrote stay.
pub(super) fn forget_learned_denials(rules: &mut FsRules) {
    let had = rules.deny.len();
    rules.deny.retain(|g| !is_learned_denial(g));
    if had > 0 && rules.deny.is_empty() {
        rules.hide = false;
    }
}

fn learned_denials(rules: &FsRules) -> impl Iterator<Item = &crate::policy::PathGlob> {
    rules.deny.iter().filter(|g| is_learned_denial(g))
}
