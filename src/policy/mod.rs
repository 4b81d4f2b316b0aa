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
//! Everything is denied unless granted. An absent table grants nothing, and every
//! limit except fuel has a finite default (see [`Limits`]).

mod error;
mod file;
mod load;
mod net;

pub use error::{PolicyError, PolicyErrorKind};
pub use file::{
    Access, ByteSize, ClockMode, ClocksFile, DirFile, EnvFile, FsFile, HumanDuration, InputSpec, LimitsFile,
    OutputSpec, PolicyFile, RandomFile, StdioFile,
};
pub use net::{HttpRule, NetGrants, NetKind, NetRule};

use error::invalid;
use load::{
    Layer, Loader, check_env_name, check_limits_fuel, check_limits_memory, check_limits_timeout, load_layer,
    parse_layer, resolve_dir,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    /// A command-line flag, such as `--fuel`.
    Flag(&'static str),
}

impl Origin {
    /// Describes the origin of policy key `key` (e.g. `limits.fuel`).
    pub fn describe(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("default {key}"),
            Origin::File(p) => format!("{key} in {}", p.display()),
            Origin::Flag(flag) => (*flag).to_string(),
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
    /// Fewest accepted `limits.handles`.
    pub const MIN_HANDLES: u64 = 16;
    /// Most accepted `limits.handles`: wasmtime's own table ceiling.
    pub const MAX_HANDLES: u64 = 1_000_000;
    /// Largest accepted `limits.stack`; wasmtime needs a host stack this size too.
    pub const MAX_STACK: u64 = 64 << 20;
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
}

/// Where stdin comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Closed.
    Null,
    /// The host's stdin.
    Inherit,
    /// A host file (absolute path), read when the run starts.
    File(PathBuf),
}

/// Where stdout or stderr goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Discarded.
    Null,
    /// The host process's stream.
    Inherit,
    /// A host file (absolute path), truncated when the run starts.
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
/// Created by [`Policy::from_file`], [`Policy::from_toml`] or
/// [`Policy::deny_all`], then optionally adjusted by the CLI-flag methods
/// ([`Policy::grant_dir`], [`Policy::set_env`], ...), which validate exactly as
/// the file would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    source: Option<PathBuf>,
    extends: Vec<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    dirs: Vec<DirGrant>,
    env_vars: BTreeMap<String, String>,
    env_inherit: Vec<String>,
    stdin: Input,
    stdout: Output,
    stderr: Output,
    clocks: Clocks,
    seed: Option<u64>,
    net: NetGrants,
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
    /// no network, and the default [`Limits`].
    pub fn deny_all() -> Policy {
        Policy {
            source: None,
            extends: Vec::new(),
            limits: Limits::default(),
            dirs: Vec::new(),
            env_vars: BTreeMap::new(),
            env_inherit: Vec::new(),
            stdin: Input::Null,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            clocks: Clocks::Host { resolution: None },
            seed: None,
            net: NetGrants::default(),
        }
    }

    /// Loads and resolves a policy file, following `extends`.
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
        let path = path.as_ref();
        let layer = load_layer(path, &mut Loader::default())?;
        let mut policy = Policy::resolve(layer).map_err(|e| {
            if e.path.is_none() {
                PolicyError {
                    path: Some(path.to_path_buf()),
                    ..e
                }
            } else {
                e
            }
        })?;
        policy.source = Some(path.to_path_buf());
        Ok(policy)
    }

    /// Parses a policy from TOML text; relative paths are resolved against
    /// `base_dir`. `extends` is resolved against `base_dir` too.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_file`], with `<inline>` in place of a file name.
    pub fn from_toml(text: &str, base_dir: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let pseudo = base_dir.as_ref().join("<inline>");
        let layer = parse_layer(text, &pseudo, &mut Loader::default())?;
        Policy::resolve(layer)
    }

    fn resolve(layer: Layer) -> Result<Policy, PolicyError> {
        let mut policy = Policy::deny_all();
        let l = layer.limits;
        policy.limits = Limits {
            fuel: l.fuel.unwrap_or(policy.limits.fuel),
            memory: l.memory.unwrap_or(policy.limits.memory),
            timeout: l.timeout.unwrap_or(policy.limits.timeout),
            stack: l.stack.unwrap_or(policy.limits.stack),
            output: l.output.unwrap_or(policy.limits.output),
            module_size: l.module_size.unwrap_or(policy.limits.module_size),
            handles: l.handles.unwrap_or(policy.limits.handles),
        };
        for dir in layer.dirs {
            policy.push_dir(dir)?;
        }
        policy.env_vars = layer.env_vars;
        policy.env_inherit = layer.env_inherit;
        policy.stdin = layer.stdin.unwrap_or(Input::Null);
        policy.stdout = layer.stdout.unwrap_or(Output::Inherit);
        policy.stderr = layer.stderr.unwrap_or(Output::Inherit);
        policy.clocks = match layer.clock_mode.unwrap_or(ClockMode::Host) {
            ClockMode::Host => {
                if layer.clock_start.is_some() {
                    return Err(invalid(
                        "clocks.start only applies to mode = \"frozen\"; set mode = \"frozen\" or remove start",
                    )
                    .key("clocks.start"));
                }
                Clocks::Host {
                    resolution: layer.clock_resolution,
                }
            }
            ClockMode::Frozen => {
                if layer.clock_resolution.is_some() {
                    return Err(invalid(
                        "clocks.resolution only applies to mode = \"host\"; frozen clocks do not tick, so remove resolution",
                    )
                    .key("clocks.resolution"));
                }
                let start = match layer.clock_start {
                    Some(s) => s,
                    None => humantime::parse_rfc3339(DEFAULT_FROZEN_START).expect("valid constant"),
                };
                Clocks::Frozen { start }
            }
        };
        policy.seed = layer.seed;
        policy.net = NetGrants {
            dns: layer.dns.unwrap_or(false),
            ..layer.net
        };
        // The first file is the one asked for; the rest are what it extends.
        policy.extends = layer.files.into_iter().rev().skip(1).collect();
        policy.extends.reverse();
        Ok(policy)
    }

    fn push_dir(&mut self, dir: DirGrant) -> Result<(), PolicyError> {
        if let Some(existing) = self.dirs.iter_mut().find(|d| d.guest == dir.guest) {
            if existing.host == dir.host {
                // The same grant twice (e.g. from a base file and a flag): the
                // later access wins, as for any other scalar.
                existing.access = dir.access;
                return Ok(());
            }
            return Err(invalid(format!(
                "guest path `{}` is granted twice, to `{}` and `{}`; give each directory its own guest path",
                dir.guest,
                existing.host.display(),
                dir.host.display()
            ))
            .key("fs.dirs"));
        }
        self.dirs.push(dir);
        Ok(())
    }

    // -- CLI-flag adjustments ------------------------------------------------

    /// Grants `host` to the guest at `guest`, as `--dir`/`--ro-dir` do.
    ///
    /// Like `WasiCtxBuilder::preopened_dir`, but the host path is
    /// canonicalized first and must exist, and granting two different host
    /// directories at one guest path is an error.
    ///
    /// # Security
    ///
    /// Grants the guest `access` to everything below `host`, including files
    /// created there later by other processes.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when `host` is not an existing directory or `guest`
    /// is empty or already taken by another directory.
    pub fn grant_dir(&mut self, host: impl AsRef<Path>, guest: &str, access: Access) -> Result<(), PolicyError> {
        let dir = resolve_dir(host.as_ref(), guest).map_err(|e| e.key("--dir"))?;
        self.push_dir(DirGrant { access, ..dir })
    }

    /// Sets an environment variable, as `--env NAME=VALUE` does.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the name is empty or contains `=` or NUL.
    pub fn set_env(&mut self, name: &str, value: &str) -> Result<(), PolicyError> {
        check_env_name(name).map_err(|e| e.key("--env"))?;
        self.env_vars.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// Copies an environment variable from the host when it is set there, as
    /// `--env NAME` does.
    ///
    /// # Security
    ///
    /// The guest sees the host's value.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the name is empty or contains `=` or NUL.
    pub fn inherit_env(&mut self, name: &str) -> Result<(), PolicyError> {
        check_env_name(name).map_err(|e| e.key("--env"))?;
        if !self.env_inherit.iter().any(|n| n == name) {
            self.env_inherit.push(name.to_string());
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
    /// let mut policy = wasmcell::Policy::from_toml("[env]\ninherit = [\"LANG\", \"TZ\"]", ".")?;
    /// policy.set_env("TZ", "UTC")?;
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

    /// Sets where stdin comes from, as `--stdin` does.
    ///
    /// # Security
    ///
    /// [`Input::Inherit`] hands the guest this process's stdin; [`Input::File`]
    /// lets it read that host file.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when a stdin file does not exist.
    pub fn set_stdin(&mut self, input: Input) -> Result<(), PolicyError> {
        if let Input::File(path) = &input
            && !path.is_file()
        {
            return Err(invalid(format!(
                "stdin file `{}` does not exist; create it or fix the path",
                path.display()
            ))
            .key("--stdin"));
        }
        self.stdin = input;
        Ok(())
    }

    /// Sets `limits.fuel` from a flag.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when `fuel` is zero.
    pub fn set_fuel(&mut self, fuel: u64, flag: &'static str) -> Result<(), PolicyError> {
        check_limits_fuel(fuel).map_err(|e| e.key(flag))?;
        self.limits.fuel = Setting {
            value: Some(fuel),
            origin: Origin::Flag(flag),
        };
        Ok(())
    }

    /// Sets `limits.memory` from a flag.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the size is zero or over 4 GiB.
    pub fn set_memory(&mut self, bytes: u64, flag: &'static str) -> Result<(), PolicyError> {
        check_limits_memory(bytes).map_err(|e| e.key(flag))?;
        self.limits.memory = Setting {
            value: bytes,
            origin: Origin::Flag(flag),
        };
        Ok(())
    }

    /// Sets `limits.timeout` from a flag.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the duration is zero.
    pub fn set_timeout(&mut self, timeout: Duration, flag: &'static str) -> Result<(), PolicyError> {
        check_limits_timeout(timeout).map_err(|e| e.key(flag))?;
        self.limits.timeout = Setting {
            value: timeout,
            origin: Origin::Flag(flag),
        };
        Ok(())
    }

    /// Sets `limits.module-size` from a flag.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the size is zero.
    pub fn set_module_size(&mut self, bytes: u64, flag: &'static str) -> Result<(), PolicyError> {
        if bytes == 0 {
            return Err(invalid("module size limit must be at least 1 byte").key(flag));
        }
        self.limits.module_size = Setting {
            value: bytes,
            origin: Origin::Flag(flag),
        };
        Ok(())
    }

    // -- Accessors -----------------------------------------------------------

    /// The file this policy was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Files merged into this one through `extends`, innermost base first.
    pub fn extends(&self) -> &[PathBuf] {
        &self.extends
    }

    /// Granted directories, in the order they were granted.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }

    /// Variables set in the guest's environment.
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

    /// Allows outgoing HTTP requests to `entry` (`scheme://host[:port|:*]`),
    /// as `--allow-http` does.
    ///
    /// # Security
    ///
    /// The guest may send any request, with any body, to that origin.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the entry is malformed.
    pub fn allow_http(&mut self, entry: &str, flag: &'static str) -> Result<(), PolicyError> {
        let rule = HttpRule::parse(entry).map_err(|why| invalid(why).key(flag))?;
        self.net.http.push(rule);
        Ok(())
    }

    /// Adds a network grant, as `--allow-connect` (`TcpConnect`) and
    /// `--allow-bind` (`TcpBind`) do.
    ///
    /// # Security
    ///
    /// The guest may then reach, or listen on, every address the entry
    /// names; a host name grants every address it resolved to just now.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] when the entry is malformed or a host name does not
    /// resolve.
    pub fn allow_net(&mut self, kind: NetKind, entry: &str, flag: &'static str) -> Result<(), PolicyError> {
        let rule = NetRule::parse(entry).map_err(|why| invalid(why).key(flag))?;
        self.net.rules_mut(kind).push(rule);
        Ok(())
    }

    /// Describes in plain words everything this policy grants, including the
    /// defaults that apply, as `wasmcell check` prints it.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        match &self.source {
            Some(p) => line(format!("policy {}", p.display())),
            None => line("policy (built in: deny all)".into()),
        }
        if !self.extends.is_empty() {
            let names: Vec<_> = self.extends.iter().map(|p| p.display().to_string()).collect();
            line(format!("  extends {}", names.join(", ")));
        }
        line("filesystem:".into());
        if self.dirs.is_empty() {
            line("  no directories: the guest sees no files at all".into());
        }
        for d in &self.dirs {
            let what = match d.access {
                Access::ReadOnly => "read-only: the guest can list and read, and change nothing",
                Access::ReadWrite => "read-write: the guest can create, change and delete files inside",
            };
            line(format!("  {} -> host {} ({what})", d.guest, d.host.display()));
        }
        line("environment:".into());
        if self.env_vars.is_empty() && self.env_inherit.is_empty() {
            line("  empty: no variables are visible".into());
        }
        for (k, v) in &self.env_vars {
            line(format!("  {k}={v}"));
        }
        for k in &self.env_inherit {
            let now = match std::env::var_os(k) {
                Some(_) => "set on this host now",
                None => "not set on this host now",
            };
            line(format!("  {k} copied from the host when set there ({now})"));
        }
        let input = match &self.stdin {
            Input::Null => "closed (reads end-of-file)".to_string(),
            Input::Inherit => "the host's stdin".to_string(),
            Input::File(p) => format!("read from {}", p.display()),
        };
        let output = |o: &Output, name: &str| match o {
            Output::Null => "discarded".to_string(),
            Output::Inherit => format!("the host's {name}"),
            Output::File(p) => format!("written to {} (truncated at start)", p.display()),
        };
        line("stdio:".into());
        line(format!("  stdin: {input}"));
        line(format!("  stdout: {}", output(&self.stdout, "stdout")));
        line(format!("  stderr: {}", output(&self.stderr, "stderr")));
        line("clocks:".into());
        match &self.clocks {
            Clocks::Host { resolution: None } => line("  the host's clocks at full resolution".into()),
            Clocks::Host { resolution: Some(r) } => line(format!(
                "  the host's clocks, rounded down to {}",
                humantime::format_duration(*r)
            )),
            Clocks::Frozen { start } => line(format!(
                "  frozen: wall clock stands at {}, monotonic clock at 0",
                humantime::format_rfc3339(*start)
            )),
        }
        line("randomness:".into());
        match self.seed {
            Some(seed) => line(format!(
                "  deterministic, seeded with {seed} (not secret: never use it for keys)"
            )),
            None => line("  host entropy".into()),
        }
        line("network (components only: core modules have no socket API):".into());
        let n = &self.net;
        if !n.any_tcp() && !n.any_udp() {
            line("  no sockets".into());
        }
        for (kind, what) in [
            (NetKind::TcpConnect, "may open TCP connections to"),
            (NetKind::TcpBind, "may bind and listen for TCP connections on"),
            (NetKind::UdpBind, "may bind UDP sockets on"),
            (NetKind::UdpSend, "may send UDP datagrams to"),
        ] {
            for rule in n.rules(kind) {
                line(format!("  {what} {rule}"));
            }
        }
        line(if n.dns {
            "  name lookups allowed".into()
        } else {
            "  no name lookups".into()
        });
        if n.http.is_empty() {
            line("  no outgoing HTTP requests".into());
        }
        for rule in &n.http {
            line(format!("  may make HTTP requests to {rule}"));
        }
        line("limits:".into());
        let l = &self.limits;
        let mut limit = |key: &str, value: String, origin: &Origin| {
            let from = match origin {
                Origin::Default => "default".to_string(),
                Origin::File(p) => format!("from {}", p.display()),
                Origin::Flag(f) => format!("from {f}"),
            };
            let _ = writeln!(out, "  {key}: {value} ({from})");
        };
        limit(
            "fuel",
            match l.fuel.value {
                Some(n) => format!("{n} units"),
                None => "not metered (the timeout still applies)".into(),
            },
            &l.fuel.origin,
        );
        limit("memory", ByteSize(l.memory.value).to_string(), &l.memory.origin);
        limit(
            "timeout",
            humantime::format_duration(l.timeout.value).to_string(),
            &l.timeout.origin,
        );
        limit("stack", ByteSize(l.stack.value).to_string(), &l.stack.origin);
        limit("output", ByteSize(l.output.value).to_string(), &l.output.origin);
        limit(
            "module-size",
            ByteSize(l.module_size.value).to_string(),
            &l.module_size.origin,
        );
        limit(
            "handles",
            format!("{} open at once", l.handles.value),
            &l.handles.origin,
        );
        out
    }
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
            parse("[limits]\nfuel = 2_000_000").unwrap().limits.fuel.value,
            Some(2_000_000)
        );
        assert_eq!(parse("").unwrap().limits.fuel.value, None);
        let e = err("[limits]\nfuel = 0");
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("remove it to turn metering off"), "{e}");
        assert!(err("[limits]\nfuel = -3").to_string().contains(":2:"));
    }

    #[test]
    fn test_limits_memory() {
        assert_eq!(
            parse("[limits]\nmemory = \"256 MiB\"").unwrap().limits.memory.value,
            256 << 20
        );
        assert_eq!(parse("[limits]\nmemory = 65536").unwrap().limits.memory.value, 65536);
        assert_eq!(
            parse("[limits]\nmemory = \"1GB\"").unwrap().limits.memory.value,
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
            parse("[limits]\ntimeout = \"1m 30s\"").unwrap().limits.timeout.value,
            Duration::from_secs(90)
        );
        assert_eq!(parse("").unwrap().limits.timeout.value, Limits::DEFAULT_TIMEOUT);
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
        let mut p = Policy::deny_all();
        assert!(p.set_timeout(Duration::from_secs(u64::MAX), "--timeout").is_err());
    }

    #[test]
    fn test_limits_stack_output_module_size() {
        let p = parse("[limits]\nstack = \"2 MiB\"\noutput = \"1 KiB\"\nmodule-size = \"1 MiB\"").unwrap();
        assert_eq!(p.limits.stack.value, 2 << 20);
        assert_eq!(p.limits.output.value, 1024);
        assert_eq!(p.limits.module_size.value, 1 << 20);
        assert!(err("[limits]\nstack = 16").to_string().contains("between 4 KiB"));
        assert!(err("[limits]\nmodule-size = 0").to_string().contains("at least 1 byte"));
        assert_eq!(parse("[limits]\nhandles = 64").unwrap().limits.handles.value, 64);
        assert_eq!(parse("").unwrap().limits.handles.value, Limits::DEFAULT_HANDLES);
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
        assert_eq!(p.limits.fuel.value, Some(20), "scalars: the extending file wins");
        assert_eq!(p.limits.fuel.origin, Origin::File(d.join("top.toml")));
        assert_eq!(p.limits.memory.value, 1 << 20, "unset scalars come from the base");
        assert_eq!(p.dirs().len(), 2, "lists are concatenated");
        assert_eq!(p.env_vars()["A"], "top");
        assert_eq!(p.env_vars()["B"], "base");
        assert_eq!(p.extends(), [d.join("base.toml")]);

        std::fs::write(d.join("x.toml"), "extends = [\"y.toml\"]\n").unwrap();
        std::fs::write(d.join("y.toml"), "extends = [\"x.toml\"]\n").unwrap();
        let e = Policy::from_file(d.join("x.toml")).unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::Cycle(_)), "{e}");
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
        for text in ["256 MiB", "1 GiB", "3 KiB", "1000 B"] {
            assert_eq!(ByteSize::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn cli_adjustments_validate() {
        let mut p = Policy::deny_all();
        assert!(p.grant_dir("/definitely/not/here", "/x", Access::ReadOnly).is_err());
        assert!(p.set_env("A=B", "c").is_err());
        assert!(p.set_fuel(0, "--fuel").is_err());
        assert!(p.set_stdin(Input::File("/definitely/not/here.txt".into())).is_err());
        p.set_stdin(Input::Inherit).unwrap();
        assert_eq!(p.stdin(), &Input::Inherit);
        p.set_fuel(5, "--fuel").unwrap();
        assert_eq!(p.limits.fuel.origin, Origin::Flag("--fuel"));
        p.grant_dir(std::env::temp_dir(), "/tmp", Access::ReadOnly).unwrap();
        p.grant_dir(std::env::temp_dir(), "/tmp", Access::ReadWrite).unwrap();
        assert_eq!(p.dirs().len(), 1);
        assert_eq!(
            p.dirs()[0].access,
            Access::ReadWrite,
            "a later grant of the same dir overrides access"
        );
    }
}
