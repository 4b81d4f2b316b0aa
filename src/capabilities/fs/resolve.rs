//! Where a guest path leads inside a grant: lexically (the path as the
//! guest wrote it) and after following links ourselves, one component at a
//! time and never through the OS, so that a link cannot route around a rule.
//!
//! Both walks show the caller every name the path passes on its way (a
//! `passing` callback), before anything below or after that name is looked
//! at: a name a rule hides or denies then ends the walk, so what the answer
//! says cannot depend on what lies behind the rule (`hidden/../x` must not
//! tell whether `hidden` is a folder, a file or nothing).

use crate::policy::FsRules;
use cap_std::fs::Dir;
use std::collections::VecDeque;

/// Links followed in one resolution before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// A path inside a grant, normalized: components without `.`, `..` or
/// empty ones; the root has none.
pub(super) type Rel = Vec<String>;

/// `path` (as the guest wrote it) taken from `base`, normalized without
/// looking at the disk, to name it in records. `None` when it is absolute
/// or `..` climbs above the grant's root.
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

/// `path` taken from the folder at `base`, normalized without looking at
/// the disk, as the decision sees it. Each name the path enters and then
/// leaves by `..` is handed to `passing` first (with the path to it), which
/// may end the walk; the names that remain are prefixes of the result and
/// are the caller's to decide with it. `Ok(None)` when the path is
/// absolute or `..` climbs above `base`: wasmtime-wasi refuses those itself
/// (every folder handle is confined to its folder), whatever follows.
pub(super) fn walk<E>(
    base: &[String],
    path: &str,
    mut passing: impl FnMut(&[String]) -> Result<(), E>,
) -> Result<Option<Rel>, E> {
    if path.starts_with('/') {
        return Ok(None);
    }
    let mut out = base.to_vec();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if out.len() == base.len() => return Ok(None),
            ".." => {
                passing(&out)?;
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(Some(out))
}

/// `rel` (in the folder of file grants, normalized, as the guest names it)
/// as the host names it: its first component is a granted name or the
/// folder's hidden entries, which are never read.
pub(super) fn host_rel(rules: &FsRules, rel: &[String]) -> String {
    let mut parts = rel.iter().map(String::as_str);
    let first = parts.next().map(|name| rules.host_name(name));
    first.into_iter().chain(parts).collect::<Vec<_>>().join("/")
}

/// `path` (as the guest wrote it) taken from the folder at depth `depth` of a
/// folder of file grants (0 for the folder itself), with every granted name
/// the folder's entries are reached by written as the host calls it. What
/// follows a `..` above the folder is left as written: the path leaves the
/// handle's folder there, and wasmtime-wasi refuses it before reading on.
pub(super) fn host_path<'p>(rules: &FsRules, depth: usize, path: &'p str) -> std::borrow::Cow<'p, str> {
    let mut depth = Some(depth);
    let mut changed = false;
    let parts: Vec<&str> = path
        .split('/')
        .map(|c| match (c, depth) {
            ("" | ".", _) | (_, None) => c,
            ("..", Some(d)) => {
                depth = d.checked_sub(1);
                c
            }
            (c, Some(d)) => {
                depth = Some(d + 1);
                let host = if d == 0 { rules.host_name(c) } else { c };
                changed |= host != c;
                host
            }
        })
        .collect();
    match changed {
        true => parts.join("/").into(),
        false => path.into(),
    }
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
pub(super) enum Unresolved<E> {
    /// It leaves the folder it is taken from: an absolute link or `..`
    /// above it (wasmtime-wasi refuses it too), or too many links.
    Leaves,
    /// A component could not be read (a link that is not UTF-8, a path too
    /// long for the host, an I/O error): where it leads is unknown.
    Unreadable,
    /// `passing` ended the walk at a name it passes.
    Ruled(E),
}

/// Follows `path` from `base` inside `root`, reading each link itself.
/// `follow_last` follows a link in the last component too; a component
/// followed by anything (even a trailing `/` or `/.`) is always followed, as
/// the OS does.
///
/// Until a link is followed the walk passes the names [`walk`] passed, which
/// the caller has decided; after one, every name it reaches is handed to
/// `passing` before it is looked at on the disk.
///
/// `renamed` is the rules of a folder of file grants that shows a file under
/// another name: the disk is then read under each granted name's host name,
/// and a link met on the way cannot be followed (its target names host
/// entries, which the guest names otherwise), so it is [`Unresolved::Unreadable`].
pub(super) fn resolve<E>(
    root: &Dir,
    base: &[String],
    (path, renamed): (&str, Option<&FsRules>),
    follow_last: bool,
    mut passing: impl FnMut(&[String]) -> Result<(), E>,
) -> Result<Resolved, Unresolved<E>> {
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
            // A folder handle is confined to its folder, as wasmtime-wasi's is.
            ".." if done.len() == base.len() => return Err(Unresolved::Leaves),
            ".." => {
                done.pop();
                if missing.is_some_and(|depth| done.len() <= depth) {
                    missing = None;
                }
                (is_dir, is_link) = (true, false);
                continue;
            }
            _ => {}
        }
        done.push(c);
        if links > 0 {
            passing(&done).map_err(Unresolved::Ruled)?;
        }
        if missing.is_some() {
            // Below a missing component nothing exists to follow.
            continue;
        }
        let here = match renamed {
            Some(rules) => host_rel(rules, &done),
            None => done.join("/"),
        };
        let meta = match root.symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                missing = Some(done.len() - 1);
                (is_dir, is_link) = (false, false);
                continue;
            }
            Err(_) => return Err(Unresolved::Unreadable),
        };
        if meta.file_type().is_symlink() && (!todo.is_empty() || follow_last) {
            if renamed.is_some() {
                return Err(Unresolved::Unreadable);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Unresolved::Leaves);
            }
            let target = root.read_link_contents(&here).map_err(|_| Unresolved::Unreadable)?;
            let target = target.to_str().ok_or(Unresolved::Unreadable)?;
            if target.starts_with('/') {
                return Err(Unresolved::Leaves);
            }
            done.pop();
            for part in target.split('/').rev() {
                todo.push_front(part.to_string());
            }
            continue;
        }
        (is_dir, is_link) = (meta.is_dir(), meta.file_type().is_symlink());
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

    /// [`resolve`] with nothing ruled.
    fn follow(root: &Dir, path: &str, follow_last: bool) -> Result<Resolved, Unresolved<()>> {
        resolve(root, &[], (path, None), follow_last, |_| Ok(()))
    }

    #[test]
    fn granted_names_are_handed_to_the_host_under_its_names() {
        let file = |name: &str, host: &str| crate::policy::FileRule {
            name: name.into(),
            host: host.into(),
            access: crate::policy::Access::ReadOnly,
        };
        let rules = FsRules {
            files: vec![file("app.conf", "one.conf"), file("one.conf", "app.conf")],
            hide: true,
            ..FsRules::default()
        };
        for (depth, path, host) in [
            (0, "app.conf", "one.conf"),
            (0, "./app.conf", "./one.conf"),
            (0, "app.conf/../one.conf", "one.conf/../app.conf"),
            (0, "x/app.conf", "x/app.conf"),
            (0, "x/../app.conf", "x/../one.conf"),
            (0, "../etc/app.conf", "../etc/app.conf"),
            (1, "../app.conf", "../one.conf"),
            (0, "other", "other"),
        ] {
            assert_eq!(host_path(&rules, depth, path), host, "{path}");
        }
        assert_eq!(host_rel(&rules, &rel(&["app.conf"])), "one.conf");
        assert_eq!(host_rel(&rules, &[]), "");
    }

    #[test]
    fn walks_hand_over_every_name_they_leave() {
        let mut left = Vec::new();
        let walked = walk(&rel(&["a"]), "b/c/../../d/./e/..", |p: &[String]| {
            left.push(p.join("/"));
            Ok::<(), ()>(())
        });
        assert_eq!(walked, Ok(Some(rel(&["a", "d"]))));
        assert_eq!(left, ["a/b/c", "a/b", "a/d/e"]);
        // `..` above the folder the path is taken from: refused whatever
        // follows, before anything is passed.
        assert_eq!(walk(&rel(&["a"]), "../a/b", |_| Err(())), Ok(None));
        assert_eq!(walk(&[], "/etc", |_| Err(())), Ok(None));
        // A name ruled on the way ends the walk.
        let ruled = |p: &[String]| {
            if p.last().is_some_and(|c| c == "hidden") {
                Err("hidden")
            } else {
                Ok(())
            }
        };
        assert_eq!(walk(&[], "hidden/../x", ruled), Err("hidden"));
        assert_eq!(walk(&[], "x/hidden/..//../y", ruled), Err("hidden"));
        assert_eq!(walk(&[], "hidden/../../y", ruled), Err("hidden"));
    }

    #[test]
    fn names_reached_through_a_link_are_passed_before_they_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("hidden/inner")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("hidden/abs")).unwrap();
        std::os::unix::fs::symlink("hidden/abs", p.join("via")).unwrap();
        std::os::unix::fs::symlink("hidden/../x", p.join("back")).unwrap();
        let root = Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap();
        let ruled = |p: &[String]| match p.first().is_some_and(|c| c == "hidden") {
            true => Err("hidden"),
            false => Ok(()),
        };
        // Ruled before the absolute link inside is found (which would leave).
        assert_eq!(
            resolve(&root, &[], ("via", None), true, ruled).unwrap_err(),
            Unresolved::Ruled("hidden")
        );
        assert_eq!(
            resolve(&root, &[], ("back", None), true, ruled).unwrap_err(),
            Unresolved::Ruled("hidden")
        );
        // Names of the path as written are the caller's (from `walk`).
        assert!(resolve(&root, &[], ("hidden/inner", None), true, ruled).is_ok());
        // A folder handle is confined to its folder.
        let sub = rel(&["hidden"]);
        assert_eq!(
            resolve(&root, &sub, ("../x", None), true, |_| Ok::<(), ()>(())).unwrap_err(),
            Unresolved::Leaves
        );
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

        let r = follow(&root, "short/secret", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner", "secret"]));
        assert!(!r.is_dir);
        let r = follow(&root, "short/up/inner", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner"]));
        assert!(r.is_dir);
        // The last link is left alone unless asked (unlink, rename, readlink).
        assert_eq!(follow(&root, "short", false).unwrap().rel, rel(&["short"]));
        assert_eq!(follow(&root, "short", true).unwrap().rel, rel(&["real", "inner"]));
        assert_eq!(follow(&root, "abs/passwd", true).unwrap_err(), Unresolved::Leaves);
        assert_eq!(follow(&root, "loop", true).unwrap_err(), Unresolved::Leaves);
        // A trailing `/` or `/.` follows the link even when the last
        // component is not to be followed, as Linux does.
        assert_eq!(follow(&root, "short/", false).unwrap().rel, rel(&["real", "inner"]));
        assert_eq!(follow(&root, "short/.", false).unwrap().rel, rel(&["real", "inner"]));
        assert!(follow(&root, "short", false).unwrap().is_link);
        // A link whose target is not UTF-8 cannot be placed.
        use std::os::unix::ffi::OsStrExt as _;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"\xff"), p.join("odd")).unwrap();
        assert_eq!(follow(&root, "odd", true).unwrap_err(), Unresolved::Unreadable);
        let r = follow(&root, "short/new/file", true).unwrap();
        assert_eq!(r.rel, rel(&["real", "inner", "new", "file"]));
        assert!(!r.is_dir);
    }
}
