//! Where a guest path leads inside a grant: lexically (the path as the
//! guest wrote it) and after following links ourselves, one component at a
//! time and never through the OS, so that a link cannot route around a rule.

use cap_std::fs::Dir;
use std::collections::VecDeque;

/// Links followed in one resolution before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// A path inside a grant, normalized: components without `.`, `..` or
/// empty ones; the root has none.
pub(super) type Rel = Vec<String>;

/// `path` (as the guest wrote it) taken from `base`, normalized without
/// looking at the disk. `None` when it is absolute or `..` climbs above the
/// grant's root: wasmtime-wasi refuses such paths itself.
pub(super) fn lexical(base: &[String], path: &str) -> Option<Rel> {
    if path.starts_with('/') {
        return None;
    }
    let mut out = base.to_vec();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_string()),
        }
    }
    Some(out)
}

/// What following the links of a path found.
#[derive(Debug)]
pub(super) struct Resolved {
    /// Where the path leads, as far as it exists (the rest lexically).
    pub(super) rel: Rel,
    /// Whether that is an existing directory.
    pub(super) is_dir: bool,
    /// Whether it is a symbolic link, left unfollowed.
    pub(super) is_link: bool,
    /// Whether it exists.
    pub(super) exists: bool,
}

/// Why a path could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unresolved {
    /// It leaves the grant: an absolute link or `..` above the root
    /// (wasmtime-wasi refuses it too), or too many links.
    Leaves,
    /// A component could not be read (a link that is not UTF-8, a path too
    /// long for the host, an I/O error): where it leads is unknown.
    Unreadable,
}

/// Follows `path` from `base` inside `root`, reading each link itself.
/// `follow_last` follows a link in the last component too; a component
/// followed by anything (even a trailing `/` or `/.`) is always followed, as
/// the OS does.
pub(super) fn resolve(root: &Dir, base: &[String], path: &str, follow_last: bool) -> Result<Resolved, Unresolved> {
    if path.starts_with('/') {
        return Err(Unresolved::Leaves);
    }
    let mut done: Rel = base.to_vec();
    let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut links = 0;
    let (mut is_dir, mut is_link) = (true, false);
    // How deep the path existed when a component was first missing.
    let mut missing: Option<usize> = None;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop().ok_or(Unresolved::Leaves)?;
                if missing.is_some_and(|depth| done.len() <= depth) {
                    missing = None;
                }
                (is_dir, is_link) = (true, false);
                continue;
            }
            _ => {}
        }
        if missing.is_some() {
            // Below a missing component nothing exists to follow.
            done.push(c);
            continue;
        }
        let here = if done.is_empty() {
            c.clone()
        } else {
            format!("{}/{c}", done.join("/"))
        };
        let meta = match root.symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                missing = Some(done.len());
                (is_dir, is_link) = (false, false);
                done.push(c);
                continue;
            }
            Err(_) => return Err(Unresolved::Unreadable),
        };
        if meta.file_type().is_symlink() && (!todo.is_empty() || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(Unresolved::Leaves);
            }
            let target = root.read_link_contents(&here).map_err(|_| Unresolved::Unreadable)?;
            let target = target.to_str().ok_or(Unresolved::Unreadable)?;
            if target.starts_with('/') {
                return Err(Unresolved::Leaves);
            }
            for part in target.split('/').rev() {
                todo.push_front(part.to_string());
            }
            continue;
        }
        (is_dir, is_link) = (meta.is_dir(), meta.file_type().is_symlink());
        done.push(c);
    }
    Ok(Resolved {
        rel: done,
        is_dir: is_dir && missing.is_none(),
        is_link: is_link && missing.is_none(),
        exists: missing.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(parts: &[&str]) -> Rel {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn lexical_paths_stay_inside_the_grant() {
        assert_eq!(lexical(&rel(&["a"]), "b/./c"), Some(rel(&["a", "b", "c"])));
        assert_eq!(lexical(&rel(&["a"]), "../b"), Some(rel(&["b"])));
        assert_eq!(lexical(&rel(&["a"]), "../../b"), None);
        assert_eq!(lexical(&[], "/etc"), None);
        assert_eq!(lexical(&[], "dir/"), Some(rel(&["dir"])));
    }

    #[test]
    fn links_are_followed_inside_the_grant_only() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("real/inner")).unwrap();
        std::fs::write(p.join("real/inner/secret"), "x").unwrap();
        std::os::unix::fs::symlink("real/inner", p.join("short")).unwrap();
        std::os::unix::fs::symlink("../../real", p.join("real/inner/up")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", p.join("loop")).unwrap();
        let root = Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap();

        let r = resolve(&root, &[], "short/secret", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner", "secret"]));
        assert!(!r.is_dir);
        let r = resolve(&root, &[], "short/up/inner", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner"]));
        assert!(r.is_dir);
        // The last link is left alone unless asked (unlink, rename, readlink).
        assert_eq!(resolve(&root, &[], "short", false).unwrap().rel, rel(&["short"]));
        assert_eq!(resolve(&root, &[], "short", true).unwrap().rel, rel(&["real", "inner"]));
        assert_eq!(resolve(&root, &[], "abs/passwd", true).unwrap_err(), Unresolved::Leaves);
        assert_eq!(resolve(&root, &[], "loop", true).unwrap_err(), Unresolved::Leaves);
        // A trailing `/` or `/.` follows the link even when the last
        // component is not to be followed, as Linux does.
        assert_eq!(
            resolve(&root, &[], "short/", false).unwrap().rel,
            rel(&["real", "inner"])
        );
        assert_eq!(
            resolve(&root, &[], "short/.", false).unwrap().rel,
            rel(&["real", "inner"])
        );
        assert!(resolve(&root, &[], "short", false).unwrap().is_link);
        // A link whose target is not UTF-8 cannot be placed.
        use std::os::unix::ffi::OsStrExt as _;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"\xff"), p.join("odd")).unwrap();
        assert_eq!(resolve(&root, &[], "odd", true).unwrap_err(), Unresolved::Unreadable);
        let r = resolve(&root, &[], "short/new/file", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner", "new", "file"]));
        assert!(!r.is_dir);
    }
}
