//! Refusing grants that overlap with different access.
//!
//! wasmtime-wasi gives each preopen one access for its whole tree. When a
//! read-write grant contains a read-only one (or is the same directory under
//! another guest path), the guest changes the read-only grant's files through
//! the read-write one, so the read-only promise would be false. Two read-write
//! grants that overlap lose nothing (unless one has a write quota, below),
//! nor does a read-only grant inside a
//! read-only one, and a read-write grant inside a read-only one gives the
//! guest no write access it was not granted.
//!
//! A grant with rules overlaps no other directory grant at all, and a file
//! grant may not name a file those rules protect: layers only add grants,
//! so without this a child policy or a `--file` flag would undo a base
//! policy's `deny`. A grant with a write quota (`quota`, `max-files`)
//! overlaps no grant that can write, folder or file: the quota counts only
//! what is written through its own grant.

use super::error::{PolicyError, PolicyErrorKind, invalid};
use super::{Access, DirGrant, FsDecision, FsOp, Policy};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a directory grant came from, for naming both sides of a collision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirSite {
    /// A `[[fs.dirs]]` entry: the file and the line of its `host`.
    File(PathBuf, usize),
    /// A command-line flag (`--dir`, `--ro-dir`).
    Flag(&'static str),
    /// [`PolicyBuilder::grant_dir`](super::PolicyBuilder::grant_dir) called in code.
    Api,
}

impl DirSite {
    /// `e`, placed at this grant: its file and line, or its flag.
    pub(super) fn locate(&self, mut e: PolicyError) -> PolicyError {
        match self {
            DirSite::File(path, line) => {
                e.path = Some(path.clone());
                e.line = Some(*line);
                e.key = Some("fs.dirs".into());
            }
            DirSite::Flag(flag) => e.key = Some((*flag).into()),
            DirSite::Api => e.key = Some("fs.dirs".into()),
        }
        e
    }
}

impl fmt::Display for DirSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirSite::File(path, line) => write!(f, "{}:{line}", path.display()),
            DirSite::Flag(flag) => f.write_str(flag),
            DirSite::Api => f.write_str("granted through the API"),
        }
    }
}

/// Refuses `new` when it and one of `existing` overlap with different access,
/// or overlap at all when either has path rules (the other grant would be a
/// way around them).
/// Grants at the same guest path are left to the caller: the same directory
/// granted again there replaces the earlier access, another one is an error.
pub(super) fn check_overlap<'a>(
    existing: impl IntoIterator<Item = (&'a DirGrant, &'a DirSite)>,
    new: (&DirGrant, &DirSite),
) -> Result<(), PolicyError> {
    for old in existing {
        if old.0.guest == new.0.guest {
            continue;
        }
        // A file grant's folder reaches only its files, which the policy
        // names on purpose, whatever other grants show of the same folder;
        // its access is compared below like any grant's. What it names must
        // not be what another grant's rules protect (whichever came first).
        let files = !old.0.rules.files.is_empty() || !new.0.rules.files.is_empty();
        if files {
            check_file_rules(old, new, new)?;
            check_file_rules(new, old, new)?;
        }
        // A quota counts only what is written through its own grant, so any
        // other grant that can write the same tree would write uncounted.
        let writes_around = |g: &DirGrant, other: &DirGrant| g.rules.has_quota() && other.access == Access::ReadWrite;
        let ruled = [(old.0, new.0), (new.0, old.0)]
            .into_iter()
            .find(|(g, other)| !files && (!g.rules.is_empty() || writes_around(g, other)))
            .map(|(g, _)| g);
        if let Some(ruled) = ruled
            && (reaches(&old.0.host, &new.0.host) || reaches(&new.0.host, &old.0.host))
        {
            let (ruled, other) = if std::ptr::eq(ruled, old.0) {
                (old, new)
            } else {
                (new, old)
            };
            let err = invalid(format!(
                "the grants at `{}` (host `{}`, {}) and `{}` (host `{}`, {}) overlap, and the one at `{}` has \
                 deny or read-only rules or a write quota: the guest could reach what they protect, or write \
                 uncounted, through the other grant; make the grants not overlap",
                ruled.0.guest,
                ruled.0.host.display(),
                place(ruled),
                other.0.guest,
                other.0.host.display(),
                place(other),
                ruled.0.guest
            ))
            .key("fs.dirs");
            return Err(new.1.locate(err));
        }
        if old.0.access == new.0.access {
            continue;
        }
        let (writable, other) = if new.0.access == Access::ReadWrite {
            (new, old)
        } else {
            (old, new)
        };
        if reaches(&writable.0.host, &other.0.host) {
            let err = PolicyError::new(PolicyErrorKind::OverlappingGrants {
                writable: Box::new((writable.0.clone(), writable.1.to_string())),
                other: Box::new((other.0.clone(), other.1.to_string())),
            });
            return Err(new.1.locate(err));
        }
    }
    Ok(())
}

/// Refuses a file grant (`[[fs.files]]`, `--file`, `--ro-file`) of a file
/// that the rules of directory grant `ruled` protect: one it denies (and so
/// may hide), or, when the file is granted read-write, one it keeps
/// read-only. A file grant shows the file at a guest path of its own,
/// outside the directory grant and its rules, so a later layer (a file that
/// `extends` a base, or a flag) could otherwise undo a base's `deny`. The
/// error is placed at `at`, the grant added last, and names both.
fn check_file_rules(
    file: (&DirGrant, &DirSite),
    ruled: (&DirGrant, &DirSite),
    at: (&DirGrant, &DirSite),
) -> Result<(), PolicyError> {
    let quota = ruled.0.rules.has_quota();
    if (ruled.0.rules.is_empty() && !quota) || !ruled.0.rules.files.is_empty() {
        return Ok(());
    }
    for granted in &file.0.rules.files {
        let host = file.0.host.join(&granted.host);
        let Some(rel) = path_inside(&ruled.0.host, &host) else {
            continue;
        };
        if quota && granted.access == Access::ReadWrite {
            let err = invalid(format!(
                "the read-write file grant of `{}` ({}) reaches `{rel}` in the grant at `{}` ({}), which has a \
                 write quota: writes through the file grant would not be counted; grant the file read-only, or \
                 reach it through the quota grant",
                host.display(),
                place(file),
                ruled.0.guest,
                place(ruled),
            ));
            return Err(locate_file_error(at, err));
        }
        let op = match granted.access {
            Access::ReadWrite => FsOp::Write,
            Access::ReadOnly => FsOp::Read,
        };
        if let FsDecision::Deny { rule, .. } = ruled.0.rules.decide(&rel, op) {
            let err = invalid(format!(
                "the file grant of `{}` ({}) reaches `{rel}` in the grant at `{}` ({}), which its rule {rule} \
                 protects: a file grant cannot undo a directory grant's rules, whichever layer adds it; \
                 remove the file grant, or the rule if the file is meant to be reached",
                host.display(),
                place(file),
                ruled.0.guest,
                place(ruled),
            ));
            return Err(locate_file_error(at, err));
        }
    }
    Ok(())
}

/// `err` placed at `at`, the grant added last; a flag keeps its own name as
/// the key.
fn locate_file_error(at: (&DirGrant, &DirSite), err: PolicyError) -> PolicyError {
    let err = at.1.locate(err);
    match at.1 {
        DirSite::File(..) => err.key(key_of(at.0)),
        _ => err,
    }
}

/// Which key a grant was written with.
fn key_of(grant: &DirGrant) -> &'static str {
    if grant.rules.files.is_empty() {
        "fs.dirs"
    } else {
        "fs.files"
    }
}

/// Where a grant was made, for a message that names two: `fs.dirs at
/// FILE:LINE`, the flag, or the API.
fn place((grant, site): (&DirGrant, &DirSite)) -> String {
    match site {
        DirSite::File(path, line) => format!("{} at {}:{line}", key_of(grant), path.display()),
        DirSite::Flag(flag) => format!("`{flag}`"),
        DirSite::Api => "granted through the API".into(),
    }
}

/// `inner` relative to `outer` (components joined by `/`, as grant rules
/// take paths), when a grant of `outer` reaches it: by path, or through an
/// ancestor of `inner` that is `outer` by device and inode. Both canonical.
fn path_inside(outer: &Path, inner: &Path) -> Option<String> {
    let rel = match inner.strip_prefix(outer) {
        Ok(rel) => rel,
        Err(_) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt as _;
                let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
                let outer = id(outer)?;
                let ancestor = inner.ancestors().find(|a| id(a) == Some(outer))?;
                inner.strip_prefix(ancestor).ok()?
            }
            #[cfg(not(unix))]
            return None;
        }
    };
    let parts: Vec<_> = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect();
    Some(parts.join("/"))
}

impl Policy {
    /// The first read-write grant through which a guest could write in the
    /// folder `path` or below it: a folder grant that contains it, is it, or
    /// lies inside it, or a file grant of a file inside it, by path (as
    /// written and with links resolved) or by device and inode (the folder or
    /// one of its ancestors is the granted folder, such as through a bind
    /// mount). Returns the granted folder or file on the host and its guest
    /// path. Rules inside a grant (`deny`, `hide`) do not count: a host that
    /// will later trust what lies in `path` should not depend on them.
    ///
    /// `path` need not exist; a relative one is taken from the current
    /// directory. The compile cache uses this to stay out of a run that could
    /// write it (see [`CacheInGrant`](crate::CacheInGrant)).
    ///
    /// # Example
    ///
    /// ```
    /// let tmp = tempfile::tempdir()?;
    /// let policy = wasmcell::Policy::builder()
    ///     .grant_dir(tmp.path(), "/work", wasmcell::policy::Access::ReadWrite)
    ///     .build()?;
    /// let (host, guest) = policy.writable_overlap(&tmp.path().join("cache")).unwrap();
    /// assert_eq!((host, guest.as_str()), (tmp.path().canonicalize()?, "/work"));
    /// assert!(wasmcell::Policy::deny_all().writable_overlap(tmp.path()).is_none());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn writable_overlap(&self, path: &Path) -> Option<(PathBuf, String)> {
        let written = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let resolved = resolve_existing(&written);
        let paths = [&written, &resolved];
        for grant in self.dirs().iter().filter(|g| g.access == Access::ReadWrite) {
            if grant.rules.files.is_empty() {
                if paths.iter().any(|p| reaches(&grant.host, p) || reaches(p, &grant.host)) {
                    return Some((grant.host.clone(), grant.guest.clone()));
                }
                continue;
            }
            for file in grant.rules.files.iter().filter(|f| f.access == Access::ReadWrite) {
                let host = grant.host.join(&file.host);
                if paths.iter().any(|p| reaches(p, &host)) {
                    let guest = format!("{}/{}", grant.guest.trim_end_matches('/'), file.name);
                    return Some((host, guest));
                }
            }
        }
        None
    }
}

/// `path` (absolute) with its longest existing ancestor canonicalized and the
/// rest appended, `.` and `..` taken lexically there.
fn resolve_existing(path: &Path) -> PathBuf {
    let parts: Vec<_> = path.components().collect();
    for split in (1..=parts.len()).rev() {
        let Ok(mut resolved) = parts[..split].iter().collect::<PathBuf>().canonicalize() else {
            continue;
        };
        for part in &parts[split..] {
            match part {
                std::path::Component::ParentDir => {
                    resolved.pop();
                }
                std::path::Component::Normal(name) => resolved.push(name),
                _ => {}
            }
        }
        return resolved;
    }
    path.to_path_buf()
}

/// Whether the guest can reach `inner` through a grant of `outer`: `inner`
/// is `outer` or below it by path, or `outer` is `inner` or one of its
/// ancestors by device and inode (a bind mount shows one directory at two
/// paths). Both paths are canonical.
fn reaches(outer: &Path, inner: &Path) -> bool {
    if inner.starts_with(outer) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        if let Some(outer) = id(outer) {
            return inner.ancestors().any(|a| id(a) == Some(outer));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &Path, guest: &str, access: Access) -> DirGrant {
        DirGrant {
            host: host.canonicalize().unwrap(),
            guest: guest.into(),
            access,
            rules: Default::default(),
        }
    }

    fn check(a: &DirGrant, b: &DirGrant) -> Result<(), PolicyError> {
        let (sa, sb) = (DirSite::Flag("--dir"), DirSite::Flag("--ro-dir"));
        check_overlap([(a, &sa)], (b, &sb))
    }

    #[test]
    fn read_write_over_less_access_is_refused_either_order() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        std::fs::create_dir_all(outer.join("inner/deep")).unwrap();
        let rw = grant(&outer, "/rw", Access::ReadWrite);
        for ro in [
            grant(&outer, "/same", Access::ReadOnly),
            grant(&outer.join("inner"), "/ro", Access::ReadOnly),
            grant(&outer.join("inner/deep"), "/deep", Access::ReadOnly),
        ] {
            for (a, b) in [(&rw, &ro), (&ro, &rw)] {
                let e = check(a, b).unwrap_err();
                assert!(matches!(e.kind(), PolicyErrorKind::OverlappingGrants { .. }), "{e}");
                let msg = e.to_string();
                let needles = [
                    rw.host.display().to_string(),
                    ro.host.display().to_string(),
                    "`/rw`".into(),
                    format!("`{}`", ro.guest),
                ];
                for needle in needles {
                    assert!(msg.contains(&needle), "{msg} lacks {needle}");
                }
            }
        }
    }

    #[test]
    fn overlaps_that_lose_no_access_are_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        let sibling = tmp.path().join("sibling");
        std::fs::create_dir_all(outer.join("inner")).unwrap();
        std::fs::create_dir_all(&sibling).unwrap();
        let pairs = [
            // Two read-write grants.
            (
                grant(&outer, "/a", Access::ReadWrite),
                grant(&outer.join("inner"), "/b", Access::ReadWrite),
            ),
            // Read-only inside read-only.
            (
                grant(&outer, "/a", Access::ReadOnly),
                grant(&outer.join("inner"), "/b", Access::ReadOnly),
            ),
            // Read-write inside read-only: nothing is writable that was not granted so.
            (
                grant(&outer, "/a", Access::ReadOnly),
                grant(&outer.join("inner"), "/b", Access::ReadWrite),
            ),
            // Disjoint, and a prefix by name only (`outer` vs `outer-2`).
            (
                grant(&outer, "/a", Access::ReadWrite),
                grant(&sibling, "/b", Access::ReadOnly),
            ),
        ];
        for (a, b) in &pairs {
            check(a, b).unwrap();
            check(b, a).unwrap();
        }
        std::fs::create_dir(tmp.path().join("outer-2")).unwrap();
        let a = grant(&outer, "/a", Access::ReadWrite);
        let b = grant(&tmp.path().join("outer-2"), "/b", Access::ReadOnly);
        check(&a, &b).unwrap();
    }

    #[test]
    fn writable_overlap_finds_every_read_write_grant_that_reaches_a_folder() {
        use crate::policy::Policy;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        for dir in ["ws/cache/sub", "ws-2", "ro", "files"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("files/notes.txt"), "").unwrap();
        let policy = |dir: &str, access| {
            Policy::builder()
                .grant_dir(root.join(dir), "/g", access)
                .build()
                .unwrap()
        };
        let rw = |dir: &str| policy(dir, Access::ReadWrite);
        let cache = root.join("ws/cache");
        // The grant contains the folder, is it, or lies inside it; the folder
        // need not exist, and may be named through `..`.
        for (grant, folder) in [
            ("ws", cache.clone()),
            ("ws", root.join("ws/not-yet/cache")),
            ("ws/cache", cache.clone()),
            ("ws/cache/sub", cache.clone()),
            ("ws", root.join("ro/../ws/cache")),
        ] {
            let found = rw(grant).writable_overlap(&folder);
            assert_eq!(found, Some((root.join(grant), "/g".into())), "{grant} over {folder:?}");
        }
        // Read-only grants, and a sibling whose name only starts the same.
        assert_eq!(policy("ws", Access::ReadOnly).writable_overlap(&cache), None);
        assert_eq!(rw("ws-2").writable_overlap(&root.join("ws")), None);
        // A file grant reaches the folder it lies in, read-write only.
        let file = |access| {
            Policy::builder()
                .grant_file(root.join("files/notes.txt"), "/notes.txt", access)
                .build()
                .unwrap()
        };
        let host = root.join("files/notes.txt");
        assert_eq!(
            file(Access::ReadWrite).writable_overlap(&root.join("files")),
            Some((host, "/notes.txt".into()))
        );
        assert_eq!(file(Access::ReadOnly).writable_overlap(&root.join("files")), None);
        assert_eq!(file(Access::ReadWrite).writable_overlap(&root.join("ws")), None);
        // A link leading into the grant is the grant's folder.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("ws"), root.join("link")).unwrap();
            assert!(rw("ws").writable_overlap(&root.join("link/cache")).is_some());
        }
    }

    #[test]
    fn same_guest_path_is_left_to_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let rw = grant(tmp.path(), "/d", Access::ReadWrite);
        let ro = grant(tmp.path(), "/d", Access::ReadOnly);
        check(&rw, &ro).unwrap();
    }

    /// The grant of one file of `dir` at `/etc`, as `[[fs.files]]` makes it.
    fn file_grant(dir: &Path, name: &str, access: Access) -> DirGrant {
        let mut g = grant(dir, "/etc", access);
        g.rules.files = vec![super::super::FileRule {
            name: name.into(),
            host: name.into(),
            access,
        }];
        g.rules.hide = true;
        g
    }

    // See: #20
    #[test]
    fn file_grants_of_ruled_files_are_refused_in_either_order() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
        let mut ruled = grant(tmp.path(), "/w", Access::ReadWrite);
        ruled.rules.deny = vec![crate::policy::PathGlob::new("sub/secret").unwrap()];
        ruled.rules.read_only = vec![crate::policy::PathGlob::new("sub/*.conf").unwrap()];
        let sub = tmp.path().join("sub");
        let (s1, s2) = (DirSite::File("base.toml".into(), 2), DirSite::Flag("--file"));
        for (file, refused) in [
            (file_grant(&sub, "secret", Access::ReadOnly), true),
            (file_grant(&sub, "app.conf", Access::ReadWrite), true),
            (file_grant(&sub, "notes", Access::ReadWrite), false),
        ] {
            let name = &file.rules.files[0].name;
            let forward = check_overlap([(&ruled, &s1)], (&file, &s2));
            let backward = check_overlap([(&file, &s2)], (&ruled, &s1));
            assert_eq!(forward.is_err(), refused, "{name}: {forward:?}");
            assert_eq!(backward.is_err(), refused, "{name}: {backward:?}");
            if let (Err(f), Err(b)) = (forward, backward) {
                assert_eq!(f.key_name(), Some("--file"), "{f}");
                assert_eq!((b.key_name(), b.line()), (Some("fs.dirs"), Some(2)), "{b}");
                for e in [f.to_string(), b.to_string()] {
                    assert!(e.contains("fs.dirs at base.toml:2") && e.contains("`--file`"), "{e}");
                }
            }
        }
        assert_eq!(
            path_inside(tmp.path(), &sub.join("secret")).as_deref(),
            Some("sub/secret")
        );
        assert_eq!(path_inside(&sub, tmp.path()), None);
    }

    #[test]
    fn site_of_the_later_grant_is_the_error_position() {
        let tmp = tempfile::tempdir().unwrap();
        let rw = grant(tmp.path(), "/rw", Access::ReadWrite);
        let ro = grant(tmp.path(), "/ro", Access::ReadOnly);
        let file = PathBuf::from("p.toml");
        let (s1, s2) = (DirSite::Flag("--dir"), DirSite::File(file.clone(), 7));
        let e = check_overlap([(&rw, &s1)], (&ro, &s2)).unwrap_err();
        assert_eq!((e.path(), e.line()), (Some(file.as_path()), Some(7)));
        assert!(e.to_string().starts_with("p.toml:7: read-write grant"), "{e}");
        assert!(e.to_string().contains("(--dir)"), "{e}");
    }
}
