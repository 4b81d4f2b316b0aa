//! Policy files: what a guest may touch and how much it may use.
//!
//! Policies are processed in two stages, like ripgrep's `LowArgs` → `HiArgs`:
//!
//! 1. [`PolicyFile`] is the TOML as written. It only deserializes; every struct
//!    rejects unknown keys, and values that carry units (sizes, durations) are
//!    parsed here so that a bad value is reported with its line.
//! 2. [`Policy`] is the validated, resolved form: host paths are canonicalized
//!    relative to the file that named them, `extends` chains are merged, defaults
//!    are filled in and contradictions rejected. Only a `Policy` reaches the code
//!    that builds a WASI context or store limits.
//!
//! Between the two, a [`PolicyBuilder`] stacks layers: files first, then the
//! values a program sets in code (or from its command-line flags), as ripgrep
//! overlays flags on its config file. Each value is refused by one check
//! whichever layer it comes from, and the merged layers are resolved once.
//!
//! Everything is denied unless granted. An absent table grants nothing, and every
//! limit except fuel has a finite default (see [`Limits`]).

mod builder;
mod check;
mod cwd;
mod describe;
mod error;
mod file;
mod fs;
mod load;
mod net;
mod overlap;
mod wall;
mod wasm;

pub use builder::PolicyBuilder;
pub use describe::describe;
pub use error::{PolicyError, PolicyErrorKind};
pub use file::{
    Access, ByteSize, ClockMode, ClocksFile, DirFile, EnvFile, FsFile, HumanDuration, InputSpec, LimitsFile,
    OutputSpec, PolicyFile, RandomFile, StdioFile, WallFile, WasmFile,
};
pub use fs::{FileRule, FsDecision, FsOp, FsRules, PathGlob};
pub use net::{HttpRule, NetGrants, NetKind, NetRule};
pub use wall::{MAX_LANDLOCK_ABI, WallMode, WallSettings};
pub use wasm::{Proposal, Proposals};

use check::check_clocks;
use error::invalid;
pub(crate) use fs::name_regex;
use load::{Layer, LimitsLayer};
pub(crate) use overlap::DirSite;
use overlap::check_overlap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn check_host_path(policy: &Policy, written: &Path, what: &str) -> Result<(), PolicyError> {
    let writable: Vec<&DirGrant> = policy.dirs.iter().filter(|d| d.access == Access::ReadWrite).collect();
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

// ---------------------------------------------------------------------------
// Stage 2: the resolved policy.
// ---------------------------------------------------------------------------

/// Where a setting's value came from, for messages such as
/// "fuel exhausted after N units (limits.fuel in policies/x.toml)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it: the documented default.
    Default,
    /// A policy file.
    File(PathBuf),
    /// A command-line flag, such as `--fuel`. Only a program with flags
    /// sets this, through [`PolicyBuilder::origin`], so that messages name
    /// the flag its user typed.
    Flag(&'static str),
    /// A [`PolicyBuilder`] setter called by the embedding program; the
    /// origin of every value set in code unless [`PolicyBuilder::origin`]
    /// says otherwise.
    Api,
}

impl Origin {
    /// Describes the origin of policy key `key` (e.g. `limits.fuel`).
    pub fn describe(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("default {key}"),
            Origin::File(p) => format!("{key} in {}", p.display()),
            Origin::Flag(flag) => (*flag).to_string(),
            Origin::Api => format!("{key} set through the API"),
        }
    }
}

/// A value with the place it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            origin: Origin::Default,
        }
    }
}

/// Resource limits, each with a finite default except fuel.
///
/// Defaults:
/// - `fuel`: not metered ([`Limits::DEFAULT_FUEL`] is `None`);
/// - `memory`: 256 MiB of linear memory and tables in total;
/// - `timeout`: 10 s of wall-clock time;
/// - `stack`: 1 MiB of Wasm stack;
/// - `output`: 16 MiB of stdout plus stderr;
/// - `module-size`: 64 MiB for a module or component file;
/// - `handles`: 1024 WASI handles held at once (open files and directories,
///   streams, the preopens and stdio included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units the guest may burn; `None` turns metering off.
    pub fuel: Setting<Option<u64>>,
    /// Bytes of linear memory and tables, all of the guest's memories and
    /// tables together. A table element counts as 8 bytes, what wasmtime
    /// keeps for it on the host; without that, a guest could make the host
    /// hold hundreds of MiB of tables under a small limit.
    pub memory: Setting<u64>,
    /// Wall-clock time from the start of instantiation.
    pub timeout: Setting<Duration>,
    /// Bytes of Wasm stack.
    pub stack: Setting<u64>,
    /// Bytes the guest may write to stdout and stderr together.
    pub output: Setting<u64>,
    /// Largest module or component file accepted for compilation.
    pub module_size: Setting<u64>,
    /// WASI handles the guest may hold at once. Each open file or directory
    /// holds a host file descriptor, so this bounds what one guest can take
    /// from the host process.
    pub handles: Setting<u64>,
}

impl Limits {
    /// Default for `limits.fuel`: not metered.
    pub const DEFAULT_FUEL: Option<u64> = None;
    /// Default for `limits.memory`.
    pub const DEFAULT_MEMORY: u64 = 256 << 20;
    /// Default for `limits.timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for `limits.stack`.
    pub const DEFAULT_STACK: u64 = 1 << 20;
    /// Default for `limits.output`.
    pub const DEFAULT_OUTPUT: u64 = 16 << 20;
    /// Default for `limits.module-size`.
    pub const DEFAULT_MODULE_SIZE: u64 = 64 << 20;
    /// Default for `limits.handles`: the usual soft limit on a process's
    /// open files.
    pub const DEFAULT_HANDLES: u64 = 1024;
    /// Fewest accepted `limits.fuel` units (leave it out to turn metering off).
    pub const MIN_FUEL: u64 = 1;
    /// Smallest accepted `limits.memory`.
    pub const MIN_MEMORY: u64 = 1;
    /// Shortest accepted `limits.timeout`: anything longer than zero.
    pub const MIN_TIMEOUT: Duration = Duration::from_nanos(1);
    /// Smallest accepted `limits.output`.
    pub const MIN_OUTPUT: u64 = 1;
    /// Smallest accepted `limits.module-size`.
    pub const MIN_MODULE_SIZE: u64 = 1;
    /// Fewest accepted `limits.handles`.
    pub const MIN_HANDLES: u64 = 16;
    /// Most accepted `limits.handles`: wasmtime's own table ceiling.
    pub const MAX_HANDLES: u64 = 1_000_000;
    /// Smallest accepted `limits.stack`.
    pub const MIN_STACK: u64 = 4 << 10;
    /// Largest accepted `limits.stack`; wasmtime needs a host stack this size too.
    pub const MAX_STACK: u64 = 64 << 20;
    /// Largest accepted `limits.output`: output a run captures is held in
    /// memory, so it is bounded as memory is.
    pub const MAX_OUTPUT: u64 = 4 << 30;
    /// Largest accepted `limits.module-size`: a module is read into memory
    /// whole before it is compiled.
    pub const MAX_MODULE_SIZE: u64 = 1 << 30;
    /// Longest accepted `limits.timeout`: long enough for any batch job, short
    /// enough that a deadline is always a real instant.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    /// Largest accepted `limits.memory`: a wasm32 guest cannot address more.
    pub const MAX_MEMORY: u64 = 4 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Setting::default(Self::DEFAULT_FUEL),
            memory: Setting::default(Self::DEFAULT_MEMORY),
            timeout: Setting::default(Self::DEFAULT_TIMEOUT),
            stack: Setting::default(Self::DEFAULT_STACK),
            output: Setting::default(Self::DEFAULT_OUTPUT),
            module_size: Setting::default(Self::DEFAULT_MODULE_SIZE),
            handles: Setting::default(Self::DEFAULT_HANDLES),
        }
    }
}

/// A host directory granted to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Canonical host path.
    pub host: PathBuf,
    /// Path the guest opens it by.
    pub guest: String,
    /// What the guest may do inside it.
    pub access: Access,
    /// Rules inside the grant: paths denied, read-only or hidden.
    pub rules: FsRules,
}

/// Where stdin comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Closed.
    Null,
    /// The host's stdin.
    Inherit,
    /// A host file (absolute, its folder canonicalized), read when the run
    /// starts. It must be a regular file, and the host opens it without
    /// following symbolic links anywhere in the path.
    File(PathBuf),
}

/// Where stdout or stderr goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Discarded.
    Null,
    /// The host process's stream.
    Inherit,
    /// A host file (absolute, its folder canonicalized), created or truncated
    /// when the run starts. The host opens it without following symbolic
    /// links anywhere in the path, and refuses it unless it is absent or a
    /// regular file.
    File(PathBuf),
}

/// The clocks the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clocks {
    /// Host clocks; readings are rounded down to `resolution` when set.
    Host {
        /// Step readings are rounded down to; `None` is the host's resolution.
        resolution: Option<Duration>,
    },
    /// Wall clock fixed at `start`, monotonic clock fixed at zero.
    Frozen {
        /// The instant the wall clock reports.
        start: SystemTime,
    },
}

/// A validated policy: the only thing the sandbox builds a guest's view from.
///
/// Created by [`Policy::builder`], which layers policy files and values set
/// in code (or from command-line flags) and resolves them once, or by the
/// shortcuts [`Policy::from_file`], [`Policy::from_toml`] and
/// [`Policy::deny_all`]. Its fields are read through accessors only, so a
/// policy cannot be changed around the checks that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    source: Option<PathBuf>,
    extends: Vec<PathBuf>,
    limits: Limits,
    dirs: Vec<DirGrant>,
    /// Where each of `dirs` was granted, in the same order.
    dir_sites: Vec<DirSite>,
    /// Host paths as written (absolute, links not resolved), with what they
    /// are for, to refuse links a guest could have planted (see [`Policy::check_links`]).
    written: Vec<Written>,
    env_vars: BTreeMap<String, String>,
    env_inherit: Vec<String>,
    stdin: Input,
    stdout: Output,
    stderr: Output,
    clocks: Clocks,
    seed: Option<u64>,
    net: NetGrants,
    proposals: Vec<Setting<Proposal>>,
    cwd: Option<String>,
    wall: WallSettings,
}

/// A host path a policy names, as written, with what to call it in a
/// message and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    what: String,
    path: PathBuf,
    /// The key (or flag) that set it.
    key: String,
    /// The file (and line, when known) that set it.
    file: Option<(PathBuf, Option<usize>)>,
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
                Origin::File(p) => Some((p.clone(), None)),
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

/// The name an error about `key` set from `origin` goes by: the flag when a
/// flag set it, the key otherwise.
fn key_for(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Flag(flag) => (*flag).to_string(),
        _ => key.to_string(),
    }
}

/// `e` about `key`, placed at the file or flag `origin` names.
fn locate(e: PolicyError, origin: &Origin, key: &str) -> PolicyError {
    let e = e.key(&key_for(origin, key));
    match origin {
        Origin::File(p) if e.path.is_none() => PolicyError {
            path: Some(p.clone()),
            ..e
        },
        _ => e,
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::deny_all()
    }
}

/// The instant a frozen clock shows when `clocks.start` is absent.
pub const DEFAULT_FROZEN_START: &str = "2000-01-01T00:00:00Z";

impl Policy {
    /// The policy that grants nothing: no directories, an empty environment,
    /// stdin closed, stdout and stderr inherited, host clocks, host entropy,
    /// no network, no Wasm proposals beyond those every WASI guest uses, and
    /// the default [`Limits`].
    pub fn deny_all() -> Policy {
        Policy {
            source: None,
            extends: Vec::new(),
            limits: Limits::default(),
            dirs: Vec::new(),
            dir_sites: Vec::new(),
            written: Vec::new(),
            env_vars: BTreeMap::new(),
            env_inherit: Vec::new(),
            stdin: Input::Null,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            clocks: Clocks::Host { resolution: None },
            seed: None,
            net: NetGrants::default(),
            proposals: Vec::new(),
            cwd: None,
            wall: WallSettings::default(),
        }
    }

    /// A builder that layers policy files and values set in code, then
    /// resolves and validates them once. See [`PolicyBuilder::new`] for the
    /// defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::new()
    }

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
    fn resolve(layer: Layer, source: Option<PathBuf>) -> Result<Policy, PolicyError> {
        let mut policy = Policy::deny_all();
        policy.limits = resolve_limits(layer.limits);
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
        if let Some(cwd) = layer.cwd {
            cwd::check_cwd_in_policy(&cwd, &policy.dirs, &policy.env_vars, &policy.env_inherit)?;
            policy.env_vars.insert(cwd::PWD.to_string(), cwd.path.value.clone());
            policy.cwd = Some(cwd.path.value);
        }
        policy.resolve_stdio(layer.stdin, layer.stdout, layer.stderr);
        policy.clocks = resolve_clocks(layer.clock_mode, layer.clock_start, layer.clock_resolution)?;
        policy.seed = layer.seed;
        policy.proposals = layer.proposals;
        policy.net = NetGrants {
            dns: layer.dns.unwrap_or(false),
            ..layer.net
        };
        // The last file is the one asked for; the rest are what it extends.
        let mut files = layer.files;
        files.pop();
        policy.extends = files;
        policy.source = source;
        policy.check_links()?;
        Ok(policy)
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
                // A file grant's folder is as writable as its most writable file.
                let files = &self.dirs[i].rules.files;
                if !files.is_empty() {
                    let writable = files.iter().any(|f| f.access == Access::ReadWrite);
                    self.dirs[i].access = if writable { Access::ReadWrite } else { Access::ReadOnly };
                }
                self.dir_sites[i] = site;
                return Ok(());
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
            check_host_path(self, &written.path, &written.what).map_err(|e| written.locate(e))?;
        }
        Ok(())
    }

    /// Resolves `env.inherit` against `source` instead of this process's
    /// environment, then empties the inherit list: each inherited name that
    /// `source` sets (and the policy does not set explicitly) becomes a set
    /// variable. Like [`Policy::guest_env`] with another environment.
    ///
    /// For hosts that run a guest on someone else's behalf, such as a
    /// container runtime whose guest should inherit from the container's
    /// environment, so that none of this process's own variables reach it.
    ///
    /// # Security
    ///
    /// The guest sees `source`'s values for the names the policy inherits.
    ///
    /// # Example
    ///
    /// ```
    /// let mut policy = wasmcell::Policy::builder()
    ///     .toml("[env]\ninherit = [\"LANG\", \"TZ\"]", ".")?
    ///     .env("TZ", "UTC")
    ///     .build()?;
    /// policy.inherit_env_from([("LANG", "C.UTF-8"), ("SECRET", "hunter2"), ("TZ", "CET")]);
    /// let env = policy.guest_env();
    /// assert_eq!(env, [("LANG".into(), "C.UTF-8".into()), ("TZ".into(), "UTC".into())]);
    /// assert!(policy.env_inherit().is_empty());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn inherit_env_from<'a>(&mut self, source: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let inherit = std::mem::take(&mut self.env_inherit);
        let explicit: Vec<String> = self.env_vars.keys().cloned().collect();
        // A later entry for the same name wins, as it does in an environment list.
        for (name, value) in source {
            if inherit.iter().any(|n| n == name) && !explicit.iter().any(|n| n == name) {
                self.env_vars.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// Refuses `path` (absolute, as the user wrote it) when it reaches
    /// through a symbolic link inside one of this policy's read-write grants,
    /// as every host path the policy names is refused; `what` names it in the
    /// message. The CLI checks the `--report` file with this.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind [`PolicyErrorKind::UnsafePath`].
    pub(crate) fn check_host_path(&self, path: &Path, what: &str) -> Result<(), PolicyError> {
        check_host_path(self, path, what)
    }

    // -- Accessors -----------------------------------------------------------

    /// Resource limits, each with where it was set.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The file this policy was loaded from, if any: the last file given to
    /// [`PolicyBuilder::file`].
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Files merged into this one through `extends` (and files given to
    /// [`PolicyBuilder::file`] before the last), innermost base first.
    pub fn extends(&self) -> &[PathBuf] {
        &self.extends
    }

    /// Granted directories, in the order they were granted.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }

    /// Variables set in the guest's environment; `PWD` among them when
    /// [`Policy::cwd`] is set.
    pub fn env_vars(&self) -> &BTreeMap<String, String> {
        &self.env_vars
    }

    /// Names copied from the host's environment when set there.
    pub fn env_inherit(&self) -> &[String] {
        &self.env_inherit
    }

    /// The guest's environment as it will be seen now: set variables, then
    /// inherited ones that are set on the host and not set explicitly.
    pub fn guest_env(&self) -> Vec<(String, String)> {
        let mut env = self.env_vars.clone();
        for name in &self.env_inherit {
            if env.contains_key(name) {
                continue;
            }
            if let Some(value) = std::env::var_os(name).and_then(|v| v.into_string().ok()) {
                env.insert(name.clone(), value);
            }
        }
        env.into_iter().collect()
    }

    /// The guest's initial working directory (`fs.cwd`): a guest path inside
    /// one of [`Policy::dirs`], where the grant's rules let the guest read.
    /// Components are told it as `wasi:cli/environment.initial-cwd`, and every
    /// guest sees it as `PWD` in its environment.
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }

    /// Where stdin comes from.
    pub fn stdin(&self) -> &Input {
        &self.stdin
    }

    /// Where stdout goes.
    pub fn stdout(&self) -> &Output {
        &self.stdout
    }

    /// Where stderr goes.
    pub fn stderr(&self) -> &Output {
        &self.stderr
    }

    /// Clocks the guest sees.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// Seed for deterministic randomness, if any.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Network grants.
    pub fn net(&self) -> &NetGrants {
        &self.net
    }

    /// The `[wall]` settings: how the run's process confines itself.
    pub fn wall(&self) -> &WallSettings {
        &self.wall
    }

    /// The Wasm proposals `[wasm] proposals` (or a builder layer) turned on,
    /// as asked for: not including those they imply ([`Proposals::with_implied`]).
    pub fn proposals(&self) -> Proposals {
        self.proposals.iter().map(|p| p.value).collect()
    }

    /// Each proposal turned on, with where it was first asked for.
    pub fn proposal_settings(&self) -> &[Setting<Proposal>] {
        &self.proposals
    }
}

/// Each limit from the layers, or its default.
fn resolve_limits(l: LimitsLayer) -> Limits {
    let d = Limits::default();
    Limits {
        fuel: l.fuel.unwrap_or(d.fuel),
        memory: l.memory.unwrap_or(d.memory),
        timeout: l.timeout.unwrap_or(d.timeout),
        stack: l.stack.unwrap_or(d.stack),
        output: l.output.unwrap_or(d.output),
        module_size: l.module_size.unwrap_or(d.module_size),
        handles: l.handles.unwrap_or(d.handles),
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml(text, std::env::temp_dir())
    }

    fn err(text: &str) -> PolicyError {
        parse(text).expect_err("policy should be rejected")
    }

    #[test]
    fn empty_policy_is_deny_all() {
        assert_eq!(parse("").unwrap(), Policy::deny_all());
    }

    #[test]
    fn test_limits_fuel() {
        assert_eq!(
            parse("[limits]\nfuel = 2_000_000").unwrap().limits().fuel.value,
            Some(2_000_000)
        );
        assert_eq!(parse("").unwrap().limits().fuel.value, None);
        let e = err("[limits]\nfuel = 0");
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("remove it to turn metering off"), "{e}");
        assert!(err("[limits]\nfuel = -3").to_string().contains(":2:"));
    }

    #[test]
    fn test_limits_memory() {
        assert_eq!(
            parse("[limits]\nmemory = \"256 MiB\"").unwrap().limits().memory.value,
            256 << 20
        );
        assert_eq!(parse("[limits]\nmemory = 65536").unwrap().limits().memory.value, 65536);
        assert_eq!(
            parse("[limits]\nmemory = \"1GB\"").unwrap().limits().memory.value,
            1_000_000_000
        );
        let e = err("[limits]\nmemory = \"12 parsecs\"");
        assert!(e.to_string().contains("expected one of B, KiB"), "{e}");
        assert_eq!(e.line(), Some(2));
        assert!(
            err("[limits]\nmemory = \"8 GiB\"")
                .to_string()
                .contains("between 1 byte and 4 GiB")
        );
    }

    #[test]
    fn test_limits_timeout() {
        assert_eq!(
            parse("[limits]\ntimeout = \"1m 30s\"").unwrap().limits().timeout.value,
            Duration::from_secs(90)
        );
        assert_eq!(parse("").unwrap().limits().timeout.value, Limits::DEFAULT_TIMEOUT);
        assert!(
            err("[limits]\ntimeout = \"soon\"")
                .to_string()
                .contains("write it like `10s`")
        );
        assert!(
            err("[limits]\ntimeout = \"0s\"")
                .to_string()
                .contains("longer than zero")
        );
        assert!(
            err("[limits]\ntimeout = 10")
                .to_string()
                .contains("expected a duration string")
        );
    }

    #[test]
    fn r_timeout_is_bounded() {
        let msg = err("[limits]\ntimeout = \"100000000 years\"").to_string();
        assert!(msg.contains("at most 30days"), "{msg}");
        let e = Policy::builder()
            .origin(Origin::Flag("--timeout"))
            .timeout(Duration::from_secs(u64::MAX))
            .build()
            .unwrap_err();
        assert!(e.to_string().starts_with("--timeout: limits.timeout must be"), "{e}");
    }

    #[test]
    fn test_limits_stack_output_module_size() {
        let p = parse("[limits]\nstack = \"2 MiB\"\noutput = \"1 KiB\"\nmodule-size = \"1 MiB\"").unwrap();
        assert_eq!(p.limits().stack.value, 2 << 20);
        assert_eq!(p.limits().output.value, 1024);
        assert_eq!(p.limits().module_size.value, 1 << 20);
        assert!(err("[limits]\nstack = 16").to_string().contains("between 4 KiB"));
        assert!(err("[limits]\nmodule-size = 0").to_string().contains("between 1 byte"));
        assert_eq!(parse("[limits]\nhandles = 64").unwrap().limits().handles.value, 64);
        assert_eq!(parse("").unwrap().limits().handles.value, Limits::DEFAULT_HANDLES);
        assert!(
            err("[limits]\nhandles = 2")
                .to_string()
                .contains("limits.handles must be between 16")
        );
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
    fn wasm_proposals_are_a_union_over_layers_with_their_origins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("base.toml"), "[wasm]\nproposals = [\"exceptions\"]\n").unwrap();
        std::fs::write(
            d.join("top.toml"),
            "extends = [\"base.toml\"]\n[wasm]\nproposals = [\"tail-call\", \"exceptions\"]\n",
        )
        .unwrap();
        let p = Policy::builder()
            .file(d.join("top.toml"))
            .unwrap()
            .origin(Origin::Flag("--wasm"))
            .wasm_proposal(Proposal::Gc)
            .build()
            .unwrap();
        assert_eq!(p.proposals().to_string(), "exceptions, tail-call, gc");
        let origins: Vec<_> = p.proposal_settings().iter().map(|s| s.origin.clone()).collect();
        assert_eq!(
            origins,
            [
                Origin::File(d.join("base.toml")),
                Origin::File(d.join("top.toml")),
                Origin::Flag("--wasm")
            ]
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
        assert_eq!(p.limits().fuel.origin, Origin::File(d.join("top.toml")));
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
    fn byte_size_display_round_trips() {
        for text in ["256 MiB", "1 GiB", "3 KiB", "1000 B", "2 TiB"] {
            assert_eq!(ByteSize::parse(text).unwrap().to_string(), text);
        }
    }

    // See: #13
    #[test]
    fn r13_byte_sizes_are_shown_as_people_read_them() {
        let cases = [
            (68_860_682, "65.7 MiB"),
            (1_000_000, "976.6 KiB"),
            (1536, "1.5 KiB"),
            ((1 << 20) - 1, "1.0 MiB"),
            ((4 << 30) + 1, "4.0 GiB"),
            (1023, "1023 B"),
        ];
        for (n, text) in cases {
            assert_eq!(ByteSize(n).to_string(), text, "{n}");
        }
    }

    #[test]
    fn builder_setters_validate() {
        let refused = |b: PolicyBuilder| b.build().expect_err("the value should be refused");
        assert!(matches!(
            refused(Policy::builder().grant_dir("/definitely/not/here", "/x", Access::ReadOnly)).kind(),
            PolicyErrorKind::MissingDir(_)
        ));
        assert!(
            refused(Policy::builder().env("A=B", "c"))
                .to_string()
                .contains("env.vars")
        );
        assert!(refused(Policy::builder().fuel(0)).to_string().contains("limits.fuel"));
        let e = refused(Policy::builder().stdin(Input::File("/definitely/not/here.txt".into())));
        assert_eq!(e.key_name(), Some("stdio.stdin"), "{e}");
        let p = Policy::builder()
            .stdin(Input::Inherit)
            .origin(Origin::Flag("--fuel"))
            .fuel(5)
            .grant_dir(std::env::temp_dir(), "/tmp", Access::ReadOnly)
            .grant_dir(std::env::temp_dir(), "/tmp", Access::ReadWrite)
            .build()
            .unwrap();
        assert_eq!(p.stdin(), &Input::Inherit);
        assert_eq!(p.limits().fuel.origin, Origin::Flag("--fuel"));
        assert_eq!(p.dirs().len(), 1);
        assert_eq!(
            p.dirs()[0].access,
            Access::ReadWrite,
            "a later grant of the same dir overrides access"
        );
    }

    // See: #10
    #[test]
    fn r10_a_later_layer_overrides_a_file_and_keeps_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "[limits]\nfuel = 10\nmemory = \"1 MiB\"\n[env]\nvars = { A = \"file\" }\n",
        )
        .unwrap();
        let p = Policy::builder()
            .file(&file)
            .unwrap()
            .origin(Origin::Flag("--fuel"))
            .fuel(20)
            .env("A", "api")
            .build()
            .unwrap();
        assert_eq!(p.limits().fuel.value, Some(20));
        assert_eq!(p.limits().fuel.origin, Origin::Flag("--fuel"));
        assert_eq!(
            p.limits().memory.origin,
            Origin::File(file.clone()),
            "values not set again stay the file's"
        );
        assert_eq!(p.env_vars()["A"], "api");
        assert_eq!(p.source(), Some(file.as_path()));
        // Origin marks the next setter only.
        let p = Policy::builder()
            .origin(Origin::Flag("--memory"))
            .memory(1 << 20)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(p.limits().memory.origin, Origin::Flag("--memory"));
        assert_eq!(p.limits().timeout.origin, Origin::Api);
        assert_eq!(
            p.limits().timeout.origin.describe("limits.timeout"),
            "limits.timeout set through the API"
        );
    }

    // See: #10
    #[test]
    fn r10_a_refused_value_names_the_flag_or_the_key() {
        let from_api = Policy::builder().memory(0).build().unwrap_err().to_string();
        assert!(
            from_api.starts_with("limits.memory must be between 1 byte and 4 GiB"),
            "{from_api}"
        );
        assert!(!from_api.contains("--"), "the library names no flag: {from_api}");
        let from_flag = Policy::builder()
            .origin(Origin::Flag("--memory"))
            .memory(0)
            .build()
            .unwrap_err()
            .to_string();
        assert!(from_flag.starts_with("--memory: limits.memory must be"), "{from_flag}");
        let env = Policy::builder().inherit_env("").build().unwrap_err().to_string();
        assert!(
            env.starts_with("env.inherit: invalid environment variable name"),
            "{env}"
        );
        // The first refusal is the one reported.
        let first = Policy::builder().stack(1).fuel(0).build().unwrap_err();
        assert_eq!(first.key_name(), Some("limits.stack"));
    }

    // See: #10
    #[test]
    fn r10_limits_output_is_bounded_in_files_and_code() {
        let e = err("[limits]\noutput = 0");
        assert_eq!((e.key_name(), e.line()), (Some("limits.output"), Some(2)), "{e}");
        assert!(e.to_string().contains("between 1 byte and 4 GiB, not 0 B"), "{e}");
        assert!(err("[limits]\noutput = \"1 TiB\"").to_string().contains("4 GiB"));
        assert!(Policy::builder().output(u64::MAX).build().is_err());
        assert_eq!(Policy::builder().output(1).build().unwrap().limits().output.value, 1);
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
            .origin(Origin::Flag("--frozen"))
            .clocks(Clocks::Frozen {
                start: SystemTime::UNIX_EPOCH,
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
    fn builder_clocks_replace_the_files_clocks() {
        let frozen = "[clocks]\nmode = \"frozen\"\nstart = \"2020-02-02T00:00:00Z\"\n";
        let p = Policy::builder()
            .toml(frozen, std::env::temp_dir())
            .unwrap()
            .clocks(Clocks::Host {
                resolution: Some(Duration::from_millis(1)),
            })
            .build()
            .unwrap();
        assert_eq!(
            p.clocks(),
            &Clocks::Host {
                resolution: Some(Duration::from_millis(1))
            }
        );
        let e = Policy::builder()
            .clocks(Clocks::Host {
                resolution: Some(Duration::ZERO),
            })
            .build()
            .unwrap_err();
        assert_eq!(e.key_name(), Some("clocks.resolution"));
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
            .origin(Origin::Flag("--ro-dir"))
            .grant_dir(d.join("outer/inner"), "/c", Access::ReadOnly)
            .origin(Origin::Flag("--dir"))
            .grant_dir(d.join("outer"), "/w", Access::ReadWrite)
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
            .origin(Origin::Flag("--stdin"))
            .stdin(Input::File(d.join("work/inputs/in.txt")))
            .build()
            .unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::UnsafePath { .. }), "{e}");
        assert!(e.to_string().starts_with("--stdin: stdio.stdin file: `"), "{e}");
    }
}
