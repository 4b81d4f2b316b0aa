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
pub(super) struct Resolved {
    /// Where the path leads, as far as it exists (the rest lexically).
    pub(super) rel: Rel,
    /// Whether that is an existing directory.
    pub(super) is_dir: bool,
    /// Whether it exists.
    pub(super) exists: bool,
}

/// Follows `path` from `base` inside `root`, reading each link itself.
/// `follow_last` follows a link in the last component too. `None` when the
/// path leaves the grant (an absolute link, `..` above the root) or loops:
/// wasmtime-wasi refuses those itself.
pub(super) fn resolve(root: &Dir, base: &[String], path: &str, follow_last: bool) -> Option<Resolved> {
    if path.starts_with('/') {
        return None;
    }
    let mut done: Rel = base.to_vec();
    let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut links = 0;
    let mut is_dir = true;
    // How deep the path existed when a component was first missing.
    let mut missing: Option<usize> = None;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop()?;
                if missing.is_some_and(|depth| done.len() <= depth) {
                    missing = None;
                }
                is_dir = true;
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
        let Ok(meta) = root.symlink_metadata(&here) else {
            missing = Some(done.len());
            is_dir = false;
            done.push(c);
            continue;
        };
        let last = todo.iter().all(|t| t.is_empty() || t == ".");
        if meta.file_type().is_symlink() && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = root.read_link(&here).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                return None;
            }
            for part in target.split('/').rev() {
                todo.push_front(part.to_string());
            }
            continue;
        }
        is_dir = meta.is_dir();
        done.push(c);
    }
    Some(Resolved {
        rel: done,
        is_dir: is_dir && missing.is_none(),
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
        assert!(resolve(&root, &[], "abs/passwd", true).is_none());
        assert!(resolve(&root, &[], "loop", true).is_none());
        let r = resolve(&root, &[], "short/new/file", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner", "new", "file"]));
        assert!(!r.is_dir);
    }
}
