//! `fs.cwd`: the guest's initial working directory. A guest path, checked
//! on its own when a layer sets it (absolute, no `.` or `..`), then against
//! the whole policy once: it must lie in a grant, where the grant's rules
//! let the guest read, and agree with any `PWD` the environment sets.

use super::error::{PolicyError, invalid};
use super::resolve::locate;
use super::{DirGrant, FsDecision, FsOp, Setting};
use std::collections::BTreeMap;

/// The variable preview 1 programs read the working directory from (Go's
/// `syscall` does; wasi-libc reads none), set from `fs.cwd`.
pub(super) const PWD: &str = "PWD";

/// `fs.cwd` as one layer set it: the path, checked and normalized, and the
/// line of a file that set it.
#[derive(Debug, Clone)]
pub(super) struct CwdLayer {
    pub(super) path: Setting<String>,
    pub(super) line: Option<usize>,
}

impl CwdLayer {
    /// `e` about this value, at the file and line, flag or key that set it.
    fn locate(&self, e: PolicyError) -> PolicyError {
        let mut e = locate(e, &self.path.origin, "fs.cwd");
        if e.line.is_none() {
            e.line = self.line;
        }
        e
    }
}

/// An `fs.cwd` value: an absolute guest path without `.` or `..`, returned
/// with repeated and trailing slashes removed (`/work//src/` is `/work/src`).
pub(super) fn check_cwd(path: &str) -> Result<String, PolicyError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(invalid(format!(
            "fs.cwd `{}` must be an absolute guest path, such as `/work`",
            path.escape_debug()
        )));
    }
    let parts: Vec<&str> = components(path).collect();
    if parts.iter().any(|c| matches!(*c, "." | "..")) {
        return Err(invalid(format!(
            "fs.cwd `{}` must not contain `.` or `..`; write the folder's own path, such as `/work/src`",
            path.escape_debug()
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Checks `cwd` against the resolved grants and environment: it must lie in
/// a granted directory (the grant with the longest guest path holding it, as
/// wasi-libc picks), not in the folder of file grants below that folder, not
/// where a `deny` rule reaches, and `env` may not set `PWD` otherwise.
pub(super) fn check_cwd_in_policy(
    cwd: &CwdLayer,
    dirs: &[DirGrant],
    env_vars: &BTreeMap<String, String>,
    env_inherit: &[String],
) -> Result<(), PolicyError> {
    let path = &cwd.path.value;
    let parts: Vec<&str> = components(path).collect();
    let holder = dirs
        .iter()
        .filter_map(|d| {
            let guest: Vec<&str> = components(&d.guest).filter(|c| *c != ".").collect();
            parts.starts_with(&guest).then_some((guest.len(), d))
        })
        .max_by_key(|(depth, _)| *depth);
    let Some((depth, grant)) = holder else {
        return Err(cwd.locate(outside_every_grant(path, dirs)));
    };
    let rel = parts[depth..].join("/");
    if !grant.rules.files.is_empty() && !rel.is_empty() {
        return Err(cwd.locate(invalid(format!(
            "fs.cwd `{path}` is inside `{}`, the folder of [[fs.files]] grants, where only the granted files are \
             visible; use `{}` itself or a folder inside a [[fs.dirs]] grant",
            grant.guest, grant.guest
        ))));
    }
    if let FsDecision::Deny { rule, hide } = grant.rules.decide(&rel, FsOp::Read) {
        let how = if hide { "hidden" } else { "denied" };
        return Err(cwd.locate(invalid(format!(
            "fs.cwd `{path}` is {how} to the guest by {rule} in the grant at `{}`; choose a folder the guest may read",
            grant.guest
        ))));
    }
    match env_vars.get(PWD) {
        Some(value) if value != path => {
            return Err(cwd.locate(invalid(format!(
                "fs.cwd `{path}` sets PWD for the guest, and env.vars sets PWD to `{}`; remove PWD from env.vars or \
                 set it to the same path",
                value.escape_debug()
            ))));
        }
        _ => {}
    }
    if env_inherit.iter().any(|n| n == PWD) {
        return Err(cwd.locate(invalid(format!(
            "fs.cwd `{path}` sets PWD for the guest, and env.inherit copies PWD from the host, where it names a host \
             path; remove PWD from env.inherit"
        ))));
    }
    Ok(())
}

fn outside_every_grant(path: &str, dirs: &[DirGrant]) -> PolicyError {
    if dirs.is_empty() {
        return invalid(format!(
            "fs.cwd `{path}` is not inside a granted directory: none is granted; grant the directory that holds it \
             in [[fs.dirs]], or remove fs.cwd"
        ));
    }
    let mut guests: Vec<String> = dirs.iter().map(|d| format!("`{}`", d.guest)).collect();
    guests.dedup();
    invalid(format!(
        "fs.cwd `{path}` is not inside a granted directory ({}); choose a path inside one, or grant the directory \
         that holds it in [[fs.dirs]]",
        guests.join(", ")
    ))
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_is_absolute_without_dots_and_normalized() {
        assert_eq!(check_cwd("/").unwrap(), "/");
        assert_eq!(check_cwd("/work//src/").unwrap(), "/work/src");
        for bad in ["", "work", "./work", "/work/../etc", "/work/./src", "/a\0b"] {
            let e = check_cwd(bad).expect_err(bad);
            assert!(e.to_string().starts_with("fs.cwd `"), "{bad:?}: {e}");
        }
    }
}
