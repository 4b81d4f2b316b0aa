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
    let comps: Vec<&str> = target.strip_prefix('/')?.split('/').filter(|c| !c.is_empty()).collect();
    if comps.iter().any(|c| matches!(*c, "." | "..")) || target.contains("//") {
        return None;
    }
    policy
        .dirs()
        .iter()
        .filter_map(|g| {
            let root: Vec<&str> = g.guest.split('/').filter(|c| !c.is_empty()).collect();
            comps.starts_with(&root).then_some((g, root.len()))
        })
        .max_by_key(|(_, depth)| *depth)
        .map(|(g, depth)| (g, comps[depth..].iter().map(|c| c.to_string()).collect()))
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
        let guest = grant.guest.trim_end_matches('/');
        let holds_cwd = cwd
            .is_some_and(|cwd| cwd == grant.guest || cwd.strip_prefix(guest).is_some_and(|rest| rest.starts_with('/')));
        GrantUse {
            guest: grant.guest.clone(),
            host: grant.host.clone(),
            access: grant.access,
            rules: grant.rules.clone(),
            used: BTreeMap::new(),
            whole: false,
            folder: false,
            holds_cwd,
            wrote_before: false,
        }
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

/// The narrowest grant for `used`, and why it was chosen.
pub(super) fn shape(used: &GrantUse) -> (Shape, String) {
    let access = if used.written() {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
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
    if let Some(files) = as_files(used) {
        let why = format!(
            "{ro_note} the guest used {} file(s) of this folder, and nothing else there: granted as files, not the folder",
            files.len()
        );
        return (Shape::Files(files), why);
    }
    let (deny, why) = untouched(used);
    (Shape::Folder { access, deny }, format!("{ro_note} {why}"))
}

/// The `[[fs.files]]` of a folder of file grants that the runs used.
fn file_grants_of_folder(used: &GrantUse) -> Vec<(PathBuf, String, Access)> {
    let guest = used.guest.trim_end_matches('/');
    used.rules
        .files
        .iter()
        .filter_map(|f| {
            let touch = used.used.get(std::slice::from_ref(&f.name))?;
            let access = if touch.write {
                Access::ReadWrite
            } else {
                Access::ReadOnly
            };
            Some((used.host.join(&f.host), format!("{guest}/{}", f.name), access))
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
            let mut host = used.host.clone();
            for c in rel {
                host.push(c);
                // Each step is looked at itself: a folder on the way that is
                // now a link (a guest may plant one) makes no file grant.
                let meta = std::fs::symlink_metadata(&host).ok()?;
                if meta.file_type().is_symlink() {
                    return None;
                }
            }
            let meta = std::fs::symlink_metadata(&host).ok()?;
            meta.file_type().is_file().then(|| {
                let access = if touch.write {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                };
                (host, format!("{guest}/{}", rel.join("/")), access)
            })
        })
        .collect()
}

/// The top-level entries of the folder no run used, to deny and hide when
/// they are fewer than the entries used, and why.
fn untouched(used: &GrantUse) -> (Vec<String>, String) {
    if used.whole {
        return (Vec::new(), "an earlier learned policy granted the whole folder".into());
    }
    if used.used.get(&Vec::new()).is_some_and(|t| t.list || t.write || t.shape) {
        return (
            Vec::new(),
            "the guest listed the folder itself: granted whole, so that it lists the same".into(),
        );
    }
    let first: BTreeSet<&str> = used
        .used
        .keys()
        .filter_map(|rel| rel.first())
        .map(String::as_str)
        .collect();
    let Some(names) = list(&used.host) else {
        return (Vec::new(), "the folder could not be listed: granted whole".into());
    };
    let others: Vec<String> = names
        .into_iter()
        .filter(|n| !first.contains(n.as_str()) && !used.rules.deny.iter().any(|g| g.covers(n)))
        .collect();
    if others.is_empty() {
        return (Vec::new(), "the guest used every entry of the folder".into());
    }
    if others.len() > first.len() {
        return (
            Vec::new(),
            format!(
                "the guest used {} name(s) at the top of the folder; denying the {} entries it never touched would list more than it used, so the folder is granted whole",
                first.len(),
                others.len()
            ),
        );
    }
    let why = format!(
        "the guest used {} name(s) at the top of the folder; the {} entries there it never touched are denied and hidden",
        first.len(),
        others.len()
    );
    (others, why)
}

/// The folder's entry names a `deny` rule can name exactly (UTF-8, no glob
/// character), or `None` when it cannot be listed, is too large, or holds a
/// name no rule can name (then it is granted whole rather than half-denied).
fn list(dir: &Path) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let name = entry.ok()?.file_name().into_string().ok()?;
        if name.contains(['*', '?']) || names.len() >= MAX_LISTED {
            return None;
        }
        names.push(name);
    }
    names.sort();
    Some(names)
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
        // A folder granted below this grant: needed whole, as a folder.
        used.touch(below.to_vec(), FsOp::Read);
        if grant.access == Access::ReadWrite {
            used.touch(below.to_vec(), FsOp::Write);
        }
        return;
    }
    used.folder = true;
    used.wrote_before |= grant.access == Access::ReadWrite;
    if learned_denials(&grant.rules).next().is_none() || !grant.rules.hide {
        used.whole = true;
        return;
    }
    match list(&grant.host) {
        Some(names) => {
            for name in names
                .into_iter()
                .filter(|n| !grant.rules.deny.iter().any(|g| g.covers(n)))
            {
                used.touch(vec![name], FsOp::Read);
            }
        }
        None => used.whole = true,
    }
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
