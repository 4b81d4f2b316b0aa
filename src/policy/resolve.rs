//! Resolution: the merged layers made into a [`Policy`], with the
//! filesystem calls that needs (canonical paths, links inside writable
//! grants), and the shortcuts from a file or text.

use super::check::check_clocks;
use super::cwd;
use super::error::invalid;
use super::load::{self, Layer};
use super::model::{Written, key_for};
use super::overlap::{DirSite, check_overlap};
use super::{
    Access, ClockMode, Clocks, DEFAULT_FROZEN_START, DirGrant, Input, NetGrants, Origin, Output, Policy, PolicyError,
    Setting,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A refusal of the `[[fs.files]]` grants into `dir`'s guest folder, placed
/// at `site` (its file and line, or its flag).
fn file_error(site: &DirSite, dir: &DirGrant, why: &str) -> PolicyError {
    let e = site.locate(invalid(format!(
        "[[fs.files]] grants of `{}` in guest folder `{}`: {why}",
        dir.host.display(),
        dir.guest
    )));
    match site {
        DirSite::Flag(_) => e,
        _ => e.key("fs.files"),
    }
}

/// A stdio file's path with its folder canonicalized now, so that when a run
/// opens it without following links (see `hostfs`), a link found on the way
/// is one that appeared after the policy was resolved. A folder that does not
/// exist yet stays as written; the open fails then.
fn host_file(path: &Path) -> PathBuf {
    let path = load::absolute(path);
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent).map_or(path.clone(), |p| p.join(name)),
        _ => path,
    }
}

impl Written {
    fn of_dir(site: &DirSite, path: PathBuf) -> Written {
        let (what, key, file) = match site {
            DirSite::File(p, line) => (
                format!("fs.dirs host `{}` ({site})", path.display()),
                "fs.dirs".to_string(),
                Some((p.clone(), Some(*line))),
            ),
            DirSite::Flag(flag) => (format!("host `{}`", path.display()), (*flag).to_string(), None),
            DirSite::Api => (
                format!("fs.dirs host `{}` ({site})", path.display()),
                "fs.dirs".to_string(),
                None,
            ),
        };
        Written { what, path, key, file }
    }

    fn of_stdio(key: &str, origin: &Origin, path: PathBuf) -> Written {
        Written {
            what: format!("{key} file"),
            path,
            key: key_for(origin, key),
            file: match origin {
                Origin::File { path, line } => Some((path.clone(), *line)),
                _ => None,
            },
        }
    }

    /// `e`, placed where this path was set.
    fn locate(&self, mut e: PolicyError) -> PolicyError {
        if let Some((path, line)) = &self.file {
            e.path = Some(path.clone());
            e.line = *line;
        }
        e.key(&self.key)
    }
}

/// `e` about `key`, placed at the file or flag `origin` names.
pub(super) fn locate(e: PolicyError, origin: &Origin, key: &str) -> PolicyError {
    let e = e.key(&key_for(origin, key));
    match origin {
        Origin::File { path, .. } if e.path.is_none() => PolicyError {
            path: Some(path.clone()),
            ..e
        },
        _ => e,
    }
}

impl Policy {
    /// Loads and resolves a policy file, following `extends`; a shortcut for
    /// `Policy::builder().file(path)?.build()`.
    ///
    /// Relative host paths (directories, stdio files, `extends`) are resolved
    /// against the folder of the file that names them.
    ///
    /// A policy may come from an untrusted repository, so the file and every
    /// file it extends must be a regular file of at most 1 MiB (a FIFO or a
    /// device is refused without blocking on it or reading it), an `extends`
    /// chain may be at most 32 files deep, and a file reached more than once
    /// is read and parsed once.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] naming the file and line for anything that cannot be
    /// read, parsed or honoured: unknown keys, bad values (naming their key),
    /// missing directories, contradictions, `extends` cycles and chains too
    /// deep, files that are not regular or too large.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = wasmcell::Policy::from_file("policies/deny-all.toml")?;
    /// assert!(policy.dirs().is_empty());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        Policy::builder().file(path)?.build()
    }

    /// Parses a policy from TOML text; relative paths are resolved against
    /// `base_dir`. `extends` is resolved against `base_dir` too. A shortcut
    /// for `Policy::builder().toml(text, base_dir)?.build()`.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_file`], with `<inline>` in place of a file name.
    pub fn from_toml(text: &str, base_dir: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        Policy::builder().toml(text, base_dir)?.build()
    }

    /// The one way a policy is made: the merged layers, resolved into
    /// defaults and checked for what only the whole can show (grants that
    /// collide, links inside writable grants, clock contradictions).
    pub(super) fn resolve(layer: Layer, source: Option<PathBuf>) -> Result<Policy, PolicyError> {
        let mut policy = Policy::deny_all();
        policy.limits = layer.limits.resolve();
        for (dir, (site, written)) in layer.dirs.into_iter().zip(layer.dir_sites) {
            policy.written.push(Written::of_dir(&site, written));
            policy.push_dir(dir, site)?;
        }
        policy.env_vars = layer.env_vars;
        policy.env_inherit = layer.env_inherit;
        if let Some(mode) = layer.wall_mode {
            policy.wall.mode = mode;
        }
        policy.wall.landlock_abi = layer.landlock_abi;
        let module = layer.module.resolve()?;
        policy.module_sha256 = module.sha256;
        policy.module_signed_by = module.signed_by;
        if let Some(cwd) = layer.cwd {
            cwd::check_cwd_in_policy(&cwd, &policy.dirs, &policy.env_vars, &policy.env_inherit)?;
            policy.env_vars.insert(cwd::PWD.to_string(), cwd.path.value.clone());
            policy.cwd = Some(cwd.path.value);
        }
        policy.resolve_stdio(layer.stdin, layer.stdout, layer.stderr);
        policy.clocks = resolve_clocks(layer.clock_mode, layer.clock_start, layer.clock_resolution)?;
        policy.seed = layer.seed;
        policy.proposals = layer.proposals;
        if let Some(mode) = layer.unknown_imports {
            policy.unknown_imports = mode;
        }
        policy.net = NetGrants {
            dns: layer.dns.unwrap_or(false),
            ..layer.net
        };
        // The last file is the one asked for; the rest are what it extends.
        let mut files = layer.files;
        files.pop();
        policy.extends = files;
        policy.source = source;
        super::http::check_secrets(&mut policy)?;
        policy.check_links()?;
        policy.check_ca_files()?;
        policy.check_key_files()?;
        Ok(policy)
    }

    /// Refuses a `module.signed-by` key file a read-write grant reaches
    /// (itself, or through a link, its target): a guest could put its own
    /// key there in one run, and sign what a later run loads.
    fn check_key_files(&self) -> Result<(), PolicyError> {
        let Some(keys) = &self.module_signed_by else {
            return Ok(());
        };
        for key in &keys.value {
            if let Some((host, guest)) = self.writable_overlap(key.path()) {
                let e = PolicyError::unsafe_path(
                    key.path(),
                    format!(
                        "module.signed-by: key file `{}` is inside the read-write grant `{}` (guest path `{guest}`), \
                         where a guest could write its own key for the host to trust; keep key files outside every \
                         read-write grant",
                        key.path().display(),
                        host.display()
                    ),
                );
                return Err(e.key("module.signed-by"));
            }
        }
        Ok(())
    }

    /// Refuses a `net.ca-certificates` file that a read-write grant reaches
    /// (itself, or through a link, its target): a guest could have written
    /// its own CA there in an earlier run, and the host would then trust
    /// whoever holds its key for every `https` request, credentials and all.
    fn check_ca_files(&self) -> Result<(), PolicyError> {
        for ca in &self.net.ca_certificates {
            if let Some((host, guest)) = self.writable_overlap(&ca.path) {
                let e = PolicyError::unsafe_path(
                    &ca.path,
                    format!(
                        "net.ca-certificates: CA file `{}` is inside the read-write grant `{}` (guest path `{guest}`), \
                         where a guest could write its own CA for the host to trust; keep CA files outside every \
                         read-write grant",
                        ca.path.display(),
                        host.display()
                    ),
                );
                return Err(e.key("net.ca-certificates"));
            }
        }
        Ok(())
    }

    fn resolve_stdio(
        &mut self,
        stdin: Option<Setting<Input>>,
        stdout: Option<Setting<Output>>,
        stderr: Option<Setting<Output>>,
    ) {
        let mut host_file = |key: &str, setting: &Setting<PathBuf>| {
            let path = setting.value.clone();
            self.written.push(Written::of_stdio(key, &setting.origin, path.clone()));
            host_file(&path)
        };
        let file_setting = |origin: &Origin, path: &PathBuf| Setting {
            value: path.clone(),
            origin: origin.clone(),
        };
        self.stdin = match stdin {
            Some(Setting {
                value: Input::File(p),
                origin,
            }) => Input::File(host_file("stdio.stdin", &file_setting(&origin, &p))),
            other => other.map_or(Input::Null, |s| s.value),
        };
        let mut output = |key: &str, setting: Option<Setting<Output>>| match setting {
            Some(Setting {
                value: Output::File(p),
                origin,
            }) => Output::File(host_file(key, &file_setting(&origin, &p))),
            other => other.map_or(Output::Inherit, |s| s.value),
        };
        self.stdout = output("stdio.stdout", stdout);
        self.stderr = output("stdio.stderr", stderr);
    }

    /// Adds a grant, refusing a second directory at one guest path and
    /// grants that overlap with different access (see [`PolicyErrorKind::OverlappingGrants`]).
    fn push_dir(&mut self, mut dir: DirGrant, site: DirSite) -> Result<(), PolicyError> {
        // A file grant's folder is as writable as its most writable file
        // (layers may have merged grants of several files into it).
        if !dir.rules.files.is_empty() {
            let writable = dir.rules.files.iter().any(|f| f.access == Access::ReadWrite);
            dir.access = if writable { Access::ReadWrite } else { Access::ReadOnly };
            dir.rules.check_files().map_err(|why| file_error(&site, &dir, &why))?;
        }
        let others = |skip: Option<usize>| {
            self.dirs
                .iter()
                .zip(&self.dir_sites)
                .enumerate()
                .filter(move |(i, _)| Some(*i) != skip)
                .map(|(_, pair)| pair)
        };
        if let Some(i) = self.dirs.iter().position(|d| d.guest == dir.guest) {
            let existing = &self.dirs[i];
            if existing.rules.files.is_empty() != dir.rules.files.is_empty() {
                let e = invalid(format!(
                    "guest path `{}` is both a granted directory and the folder of a [[fs.files]] grant; \
                     give the file another guest folder",
                    dir.guest
                ));
                return Err(site.locate(e.key("fs.files")));
            }
            if existing.host == dir.host {
                // The same grant twice (e.g. from a base file and a flag): the
                // later access wins, as for any other scalar, and must not
                // overlap the other grants either.
                check_overlap(others(Some(i)), (&dir, &site))?;
                self.dirs[i].access = dir.access;
                self.dirs[i].rules.merge(dir.rules);
                let merged = &self.dirs[i];
                merged
                    .rules
                    .check_files()
                    .map_err(|why| file_error(&site, merged, &why))?;
                // A file grant's folder is as writable as its most writable file.
                let files = &self.dirs[i].rules.files;
                if !files.is_empty() {
                    let writable = files.iter().any(|f| f.access == Access::ReadWrite);
                    self.dirs[i].access = if writable { Access::ReadWrite } else { Access::ReadOnly };
                }
                self.dir_sites[i] = site;
                return Ok(());
            }
            if !dir.rules.files.is_empty() {
                let why = format!(
                    "it already holds files of `{}`, and files from two host folders need two guest folders; \
                     give this file another guest folder",
                    existing.host.display()
                );
                return Err(file_error(&site, &dir, &why));
            }
            let e = invalid(format!(
                "guest path `{}` is granted twice, to `{}` and `{}`; give each directory its own guest path",
                dir.guest,
                existing.host.display(),
                dir.host.display()
            ));
            return Err(site.locate(e));
        }
        check_overlap(others(None), (&dir, &site))?;
        self.dirs.push(dir);
        self.dir_sites.push(site);
        Ok(())
    }

    /// Refuses host paths the policy names through a symbolic link that sits
    /// inside a read-write grant: a guest could have planted it in an earlier
    /// run (`inputs -> ..`), and resolving it would hand the guest, or the
    /// host's own writes, a place outside its grants. Links elsewhere (such as
    /// a user's own `~/data -> /mnt/data`) are followed as usual.
    fn check_links(&self) -> Result<(), PolicyError> {
        for written in &self.written {
            self.check_host_path(&written.path, &written.what)
                .map_err(|e| written.locate(e))?;
        }
        Ok(())
    }

    /// Refuses `path` (absolute, as the user wrote it) when it reaches
    /// through a symbolic link inside one of this policy's read-write grants,
    /// as every host path the policy names is refused; `what` names it in the
    /// message. The CLI checks the `--report` file with this.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind [`PolicyErrorKind::UnsafePath`].
    pub(crate) fn check_host_path(&self, written: &Path, what: &str) -> Result<(), PolicyError> {
        let writable: Vec<&DirGrant> = self.dirs.iter().filter(|d| d.access == Access::ReadWrite).collect();
        if writable.is_empty() {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in written.components() {
            prefix.push(component);
            let is_link = std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink());
            let (Some(parent), Some(name)) = (prefix.parent(), prefix.file_name()) else {
                continue;
            };
            if !is_link {
                continue;
            }
            // Where the link itself lives, its folders resolved.
            let Ok(location) = std::fs::canonicalize(parent).map(|p| p.join(name)) else {
                continue;
            };
            if let Some(grant) = writable
                .iter()
                .find(|g| location.starts_with(&g.host) && location != g.host)
            {
                return Err(PolicyError::unsafe_path(
                    written,
                    format!(
                        "{what}: `{}` is a symbolic link inside the read-write grant `{}` (guest path `{}`), where a \
                         guest could have planted it; the host does not follow such links, so replace it with the real \
                         file or directory, or name the target directly",
                        prefix.display(),
                        grant.host.display(),
                        grant.guest
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The clocks the layers describe, refusing a `start` for host clocks or a
/// `resolution` for frozen ones (the check each file had on its own, now on
/// the whole). The error is placed where the mode was set, or else where
/// the contradicting value was.
fn resolve_clocks(
    mode: Option<Setting<ClockMode>>,
    start: Option<Setting<SystemTime>>,
    resolution: Option<Setting<Duration>>,
) -> Result<Clocks, PolicyError> {
    check_clocks(mode.as_ref().map(|m| m.value), start.is_some(), resolution.is_some()).map_err(|e| {
        let (key, value_origin) = match e.key_name() {
            Some("clocks.start") => ("clocks.start", start.as_ref().map(|s| &s.origin)),
            _ => ("clocks.resolution", resolution.as_ref().map(|r| &r.origin)),
        };
        let origin = mode
            .as_ref()
            .map(|m| &m.origin)
            .or(value_origin)
            .unwrap_or(&Origin::Default);
        locate(e, origin, key)
    })?;
    Ok(match mode.map_or(ClockMode::Host, |m| m.value) {
        ClockMode::Host => Clocks::Host {
            resolution: resolution.map(|r| r.value),
        },
        ClockMode::Frozen => Clocks::Frozen {
            start: match start {
                Some(s) => s.value,
                None => humantime::parse_rfc3339(DEFAULT_FROZEN_START).expect("valid constant"),
            },
        },
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::policy::{Access, PolicyErrorKind, UnknownImports};

    /// `text` resolved, relative paths from the temporary folder.
    pub(in crate::policy) fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml(text, std::env::temp_dir())
    }

    /// What resolving `text` refuses.
    pub(in crate::policy) fn err(text: &str) -> PolicyError {
        parse(text).expect_err("policy should be rejected")
    }

    #[test]
    fn empty_policy_is_deny_all() {
        assert_eq!(parse("").unwrap(), Policy::deny_all());
    }

    #[test]
    fn unknown_key_names_line_table_and_alternatives() {
        let e = err("[limits]\nfuel = 5\n\nfule = 3\n");
        let msg = e.to_string();
        assert_eq!(e.line(), Some(4), "{msg}");
        assert!(
            msg.contains("unknown key `fule` in [limits]; expected one of fuel, memory"),
            "{msg}"
        );
        let msg = err("colour = 1").to_string();
        assert!(msg.contains("unknown key `colour` at the top level"), "{msg}");
        let msg = err("[[fs.dirs]]\nhost = \".\"\nguest = \"/d\"\naccess = \"read-only\"\nmode = 1").to_string();
        assert!(msg.contains("in [fs.dirs]"), "{msg}");
    }

    #[test]
    fn test_fs_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let text = "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n";
        let p = Policy::from_toml(text, dir.path()).unwrap();
        assert_eq!(p.dirs().len(), 1);
        assert_eq!(p.dirs()[0].host, dir.path().join("data").canonicalize().unwrap());
        assert_eq!(p.dirs()[0].access, Access::ReadOnly);

        let missing = "[[fs.dirs]]\nhost = \"nope\"\nguest = \"/data\"\naccess = \"read-only\"\n";
        let e = Policy::from_toml(missing, dir.path()).unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::MissingDir(_)));
        assert_eq!(e.line(), Some(2));

        let no_access = "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\n";
        assert!(
            Policy::from_toml(no_access, dir.path())
                .unwrap_err()
                .to_string()
                .contains("access")
        );
        let bad_access = "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"ro\"\n";
        let msg = Policy::from_toml(bad_access, dir.path()).unwrap_err().to_string();
        assert!(msg.contains("read-only") && msg.contains("read-write"), "{msg}");

        std::fs::create_dir(dir.path().join("other")).unwrap();
        let twice = format!("{text}[[fs.dirs]]\nhost = \"other\"\nguest = \"/data\"\naccess = \"read-write\"\n");
        let msg = Policy::from_toml(&twice, dir.path()).unwrap_err().to_string();
        assert!(msg.contains("granted twice"), "{msg}");
    }

    #[test]
    fn test_env() {
        let p = parse("[env]\nvars = { LANG = \"C.UTF-8\" }\ninherit = [\"TERM\"]").unwrap();
        assert_eq!(p.env_vars().get("LANG").map(String::as_str), Some("C.UTF-8"));
        assert_eq!(p.env_inherit(), ["TERM".to_string()]);
        assert!(
            err("[env]\ninherit = [\"A=B\"]")
                .to_string()
                .contains("invalid environment variable name")
        );
    }

    #[test]
    fn test_stdio() {
        let p = parse("[stdio]\nstdin = \"inherit\"\nstdout = \"null\"\nstderr = { file = \"err.log\" }").unwrap();
        assert_eq!(p.stdin(), &Input::Inherit);
        assert_eq!(p.stdout(), &Output::Null);
        assert!(matches!(p.stderr(), Output::File(f) if f.ends_with("err.log")));
        assert!(err("[stdio]\nstdin = \"keyboard\"").to_string().contains("null"));
        assert!(
            err("[stdio]\nstdin = { file = \"definitely-missing.txt\" }")
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn test_clocks() {
        let p = parse("[clocks]\nmode = \"frozen\"\nstart = \"2020-02-02T00:00:00Z\"").unwrap();
        assert!(
            matches!(p.clocks(), Clocks::Frozen { start } if *start == humantime::parse_rfc3339("2020-02-02T00:00:00Z").unwrap())
        );
        let p = parse("[clocks]\nmode = \"host\"\nresolution = \"1ms\"").unwrap();
        assert_eq!(
            p.clocks(),
            &Clocks::Host {
                resolution: Some(Duration::from_millis(1))
            }
        );
        let e = err("[clocks]\nstart = \"2020-02-02T00:00:00Z\"");
        assert!(e.to_string().contains("only applies to mode = \"frozen\""), "{e}");
        assert_eq!(e.line(), Some(2));
        let e = err("[clocks]\nmode = \"frozen\"\nresolution = \"1ms\"");
        assert_eq!(e.line(), Some(3));
        assert!(
            err("[clocks]\nmode = \"frozen\"\nstart = \"yesterday\"")
                .to_string()
                .contains("RFC 3339")
        );
    }

    // See: #25
    #[test]
    fn test_wasm_unknown_imports() {
        let p = parse("").unwrap();
        assert_eq!(p.unknown_imports().value, UnknownImports::Refuse, "refused by default");
        assert_eq!(p.unknown_imports().origin, Origin::Default);
        let p = parse("[wasm]\nunknown-imports = \"trap\"").unwrap();
        assert_eq!(p.unknown_imports().value, UnknownImports::Trap);
        assert!(matches!(p.unknown_imports().origin, Origin::File { .. }));
        let e = err("[wasm]\nunknown-imports = \"ignore\"");
        assert_eq!((e.key_name(), e.line()), (Some("wasm.unknown-imports"), Some(2)), "{e}");
        assert!(e.to_string().contains("expected `refuse` or `trap`"), "{e}");
    }

    #[test]
    fn test_wasm_proposals() {
        let p = parse("[wasm]\nproposals = [\"exceptions\", \"tail-call\"]").unwrap();
        assert_eq!(p.proposals().to_string(), "exceptions, tail-call");
        assert!(parse("").unwrap().proposals().is_empty(), "off by default");
        let e = err("[wasm]\n\nproposals = [\"exceptions\", \"exception-handling\"]");
        assert_eq!((e.key_name(), e.line()), (Some("wasm.proposals"), Some(3)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("unknown Wasm proposal `exception-handling`; expected one of exceptions, tail-call, extended-const, function-references, gc"), "{msg}");
        let msg = err("[wasm]\nproposals = [\"shared-memory\"]").to_string();
        assert!(msg.contains("wasm.proposals: Wasm `shared-memory` stays off"), "{msg}");
        assert!(
            err("[wasm]\nproposal = []")
                .to_string()
                .contains("unknown key `proposal` in [wasm]")
        );
    }

    #[test]
    fn test_random() {
        assert_eq!(parse("[random]\nseed = 42").unwrap().seed(), Some(42));
        assert_eq!(parse("").unwrap().seed(), None);
    }

    #[test]
    fn test_extends() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("a")).unwrap();
        std::fs::create_dir(d.join("b")).unwrap();
        std::fs::write(
            d.join("base.toml"),
            "[limits]\nfuel = 10\nmemory = \"1 MiB\"\n[env]\ninherit = [\"HOME\"]\nvars = { A = \"base\", B = \"base\" }\n[[fs.dirs]]\nhost = \"a\"\nguest = \"/a\"\naccess = \"read-only\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("top.toml"),
            "extends = [\"base.toml\"]\n[limits]\nfuel = 20\n[env]\nvars = { A = \"top\" }\n[[fs.dirs]]\nhost = \"b\"\nguest = \"/b\"\naccess = \"read-write\"\n",
        )
        .unwrap();
        let p = Policy::from_file(d.join("top.toml")).unwrap();
        assert_eq!(p.limits().fuel.value, Some(20), "scalars: the extending file wins");
        assert_eq!(
            p.limits().fuel.origin,
            Origin::File {
                path: d.join("top.toml"),
                line: Some(3)
            }
        );
        assert_eq!(p.limits().memory.value, 1 << 20, "unset scalars come from the base");
        assert_eq!(p.dirs().len(), 2, "lists are concatenated");
        assert_eq!(p.env_vars()["A"], "top");
        assert_eq!(p.env_vars()["B"], "base");
        assert_eq!(p.extends(), [d.join("base.toml")]);

        std::fs::write(d.join("x.toml"), "extends = [\"y.toml\"]\n").unwrap();
        std::fs::write(d.join("y.toml"), "extends = [\"x.toml\"]\n").unwrap();
        let e = Policy::from_file(d.join("x.toml")).unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::Cycle(_)), "{e}");
        assert_eq!(e.path(), Some(d.join("x.toml").as_path()), "{e}");
        assert!(e.to_string().contains("cycle"));

        std::fs::write(d.join("lost.toml"), "\nextends = [\"nowhere.toml\"]\n").unwrap();
        let e = Policy::from_file(d.join("lost.toml")).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.to_string().contains("nowhere.toml"));
    }

    #[test]
    fn error_display_has_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "[limits]\nfule = 1\n").unwrap();
        let msg = Policy::from_file(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:2: unknown key `fule` in [limits]", path.display())),
            "{msg}"
        );
    }

    #[test]
    fn clock_contradictions_across_layers_name_the_layer_that_set_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        std::fs::write(&base, "[clocks]\nmode = \"frozen\"\nstart = \"2020-02-02T00:00:00Z\"\n").unwrap();
        let top = dir.path().join("top.toml");
        std::fs::write(&top, "extends = [\"base.toml\"]\n[clocks]\nmode = \"host\"\n").unwrap();
        let e = Policy::from_file(&top).unwrap_err();
        assert_eq!(
            (e.path(), e.key_name()),
            (Some(top.as_path()), Some("clocks.start")),
            "{e}"
        );
        // The same check, for a mode set in code over the file.
        let e = Policy::builder()
            .file(&base)
            .unwrap()
            .with_origin(Origin::Flag("--frozen"), |b| {
                b.clocks(Clocks::Frozen {
                    start: SystemTime::UNIX_EPOCH,
                })
            })
            .toml("[clocks]\nresolution = \"1ms\"\n", dir.path())
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(e.key_name(), Some("--frozen"), "{e}");
        assert!(
            e.to_string().starts_with("--frozen: clocks.resolution only applies"),
            "{e}"
        );
    }

    #[test]
    fn test_fs_dirs_overlap_names_both_grants_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("outer/inner")).unwrap();
        let outer = d.join("outer").canonicalize().unwrap();
        let text = "[[fs.dirs]]\nhost = \"outer\"\nguest = \"/rw\"\naccess = \"read-write\"\n\n[[fs.dirs]]\nhost = \"outer/inner\"\nguest = \"/ro\"\naccess = \"read-only\"\n";
        std::fs::write(d.join("p.toml"), text).unwrap();
        let e = Policy::from_file(d.join("p.toml")).unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::OverlappingGrants { .. }), "{e}");
        assert_eq!(e.line(), Some(7), "{e}");
        let msg = e.to_string();
        for needle in [
            format!(
                "read-write grant `{}` at guest path `/rw` ({}:2) contains",
                outer.display(),
                d.join("p.toml").display()
            ),
            format!(
                "read-only grant `{}` at guest path `/ro`",
                outer.join("inner").display()
            ),
        ] {
            assert!(msg.contains(&needle), "{msg}\nlacks {needle}");
        }

        // A later file raising a base grant to read-write collides with the base's other grant.
        let base = "[[fs.dirs]]\nhost = \"outer\"\nguest = \"/a\"\naccess = \"read-only\"\n[[fs.dirs]]\nhost = \"outer/inner\"\nguest = \"/b\"\naccess = \"read-only\"\n";
        std::fs::write(d.join("base.toml"), base).unwrap();
        std::fs::write(
            d.join("top.toml"),
            "extends = [\"base.toml\"]\n[[fs.dirs]]\nhost = \"outer\"\nguest = \"/a\"\naccess = \"read-write\"\n",
        )
        .unwrap();
        let e = Policy::from_file(d.join("top.toml")).unwrap_err();
        assert_eq!(
            (e.path(), e.line()),
            (Some(d.join("top.toml").as_path()), Some(3)),
            "{e}"
        );

        // Flags are checked against file grants, and name both sites.
        let e = Policy::builder()
            .file(d.join("base.toml"))
            .unwrap()
            .with_origin(Origin::Flag("--ro-dir"), |b| {
                b.grant_dir(d.join("outer/inner"), "/c", Access::ReadOnly)
            })
            .with_origin(Origin::Flag("--dir"), |b| {
                b.grant_dir(d.join("outer"), "/w", Access::ReadWrite)
            })
            .build()
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("--dir: read-write grant"), "{msg}");
        assert!(msg.contains("is the same directory as read-only grant"), "{msg}");
        assert!(msg.contains(&format!("({}:2)", d.join("base.toml").display())), "{msg}");
        // Through the API, the grant is named as such, and the key is the policy's.
        let e = Policy::builder()
            .file(d.join("base.toml"))
            .unwrap()
            .grant_dir(d.join("outer"), "/w", Access::ReadWrite)
            .build()
            .unwrap_err();
        assert_eq!(e.key_name(), Some("fs.dirs"), "{e}");
        assert!(e.to_string().contains("(granted through the API)"), "{e}");
    }

    #[test]
    fn test_links_inside_writable_grants_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("work")).unwrap();
        std::os::unix::fs::symlink("..", d.join("work/inputs")).unwrap();
        let rw = "[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"read-write\"\n";
        let inputs = "[[fs.dirs]]\nhost = \"work/inputs\"\nguest = \"/inputs\"\naccess = \"read-only\"\n";
        let e = Policy::from_toml(&format!("{rw}{inputs}"), d).unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::UnsafePath { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("work/inputs` is a symbolic link inside the read-write grant"),
            "{msg}"
        );
        // The same link is an ordinary link when no grant lets a guest change it.
        Policy::from_toml(inputs, d).unwrap();
        // Whichever comes first.
        let p = Policy::builder()
            .grant_dir(d.join("work/inputs"), "/inputs", Access::ReadOnly)
            .grant_dir(d.join("work"), "/work", Access::ReadWrite)
            .build();
        assert!(p.is_err());

        let stdout = "[stdio]\nstdout = { file = \"work/inputs/out.log\" }\n";
        let msg = Policy::from_toml(&format!("{rw}{stdout}"), d).unwrap_err().to_string();
        assert!(msg.contains("stdio.stdout file: `"), "{msg}");
        std::fs::write(d.join("in.txt"), "x").unwrap();
        let e = Policy::builder()
            .toml(rw, d)
            .unwrap()
            .with_origin(Origin::Flag("--stdin"), |b| {
                b.stdin(Input::File(d.join("work/inputs/in.txt")))
            })
            .build()
            .unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::UnsafePath { .. }), "{e}");
        assert!(e.to_string().starts_with("--stdin: stdio.stdin file: `"), "{e}");
    }
}
