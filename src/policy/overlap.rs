//! Refusing grants that overlap with different access.
//!
//! wasmtime-wasi gives each preopen one access for its whole tree. When a
//! read-write grant contains a read-only one (or is the same directory under
//! another guest path), the guest changes the read-only grant's files through
//! the read-write one, so the read-only promise would be false. Two read-write
//! grants that overlap lose nothing, nor does a read-only grant inside a
//! read-only one, and a read-write grant inside a read-only one gives the
//! guest no write access it was not granted.

use super::error::{PolicyError, PolicyErrorKind, invalid};
use super::{Access, DirGrant};
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
        // its access is compared below like any grant's.
        let files = !old.0.rules.files.is_empty() || !new.0.rules.files.is_empty();
        let ruled = [old.0, new.0].into_iter().find(|g| !files && !g.rules.is_empty());
        if let Some(ruled) = ruled
            && (reaches(&old.0.host, &new.0.host) || reaches(&new.0.host, &old.0.host))
        {
            let other = if std::ptr::eq(ruled, old.0) { new.0 } else { old.0 };
            let err = invalid(format!(
                "the grants at `{}` (host `{}`) and `{}` (host `{}`) overlap, and the one at `{}` has deny or \
                 read-only rules: the guest could reach what they protect through the other grant; make the \
                 grants not overlap",
                ruled.guest,
                ruled.host.display(),
                other.guest,
                other.host.display(),
                ruled.guest
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
    fn same_guest_path_is_left_to_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let rw = grant(tmp.path(), "/d", Access::ReadWrite);
        let ro = grant(tmp.path(), "/d", Access::ReadOnly);
        check(&rw, &ro).unwrap();
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
