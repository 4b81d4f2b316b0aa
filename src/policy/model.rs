//! The resolved policy: what a guest is granted, each value with where it
//! came from. Made only by resolution (`resolve.rs`), read through accessors.

use super::overlap::DirSite;
use super::{
    Access, FsRules, Limits, ModuleKey, NetGrants, PolicyBuilder, Proposal, Proposals, UnknownImports, WallSettings,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where a setting's value came from, for messages such as
/// "fuel exhausted after N units (limits.fuel in policies/x.toml)". Each
/// resolved value carries its own ([`Setting::origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it: the documented default.
    Default,
    /// A policy file, and the line of the value when known.
    File {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the value.
        line: Option<usize>,
    },
    /// A command-line flag, such as `--fuel`, so that messages name the
    /// flag its user typed. Given to [`PolicyBuilder::set_setting`] or
    /// [`PolicyBuilder::with_origin`] by a program with flags.
    Flag(&'static str),
    /// A [`PolicyBuilder`] setter called by the embedding program; the
    /// origin of every value set in code outside [`PolicyBuilder::with_origin`].
    Api,
    /// A limit the host running the guest imposes, in words such as "the
    /// container's memory limit": a container runtime lowering a limit to
    /// what its container may use.
    Host(&'static str),
}

impl Origin {
    /// A policy file, line unknown.
    pub(crate) fn file(path: &Path) -> Origin {
        Origin::File {
            path: path.to_path_buf(),
            line: None,
        }
    }

    /// Cites policy key `key` (e.g. `limits.fuel`) with where its value
    /// came from, as messages name a setting.
    pub fn cite(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("default {key}"),
            Origin::File { path, .. } => format!("{key} in {}", path.display()),
            Origin::Flag(flag) => (*flag).to_string(),
            Origin::Api => format!("{key} set through the API"),
            Origin::Host(words) => (*words).to_string(),
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
    /// `value`, as the documented default.
    pub(super) fn default(value: T) -> Self {
        Setting {
            value,
            origin: Origin::Default,
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
    pub(super) source: Option<PathBuf>,
    pub(super) extends: Vec<PathBuf>,
    pub(super) limits: Limits,
    pub(super) dirs: Vec<DirGrant>,
    /// Where each of `dirs` was granted, in the same order.
    pub(super) dir_sites: Vec<DirSite>,
    /// Host paths as written (absolute, links not resolved), with what they
    /// are for, to refuse links a guest could have planted (see [`Policy::check_links`]).
    pub(super) written: Vec<Written>,
    pub(super) env_vars: BTreeMap<String, String>,
    pub(super) env_inherit: Vec<String>,
    pub(super) stdin: Input,
    pub(super) stdout: Output,
    pub(super) stderr: Output,
    pub(super) clocks: Clocks,
    pub(super) seed: Option<u64>,
    pub(super) net: NetGrants,
    pub(super) proposals: Vec<Setting<Proposal>>,
    pub(super) unknown_imports: Setting<UnknownImports>,
    pub(super) cwd: Option<String>,
    pub(super) wall: WallSettings,
    pub(super) module_sha256: Option<Setting<Vec<String>>>,
    pub(super) module_signed_by: Option<Setting<Vec<ModuleKey>>>,
}

/// A host path a policy names, as written, with what to call it in a
/// message and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Written {
    pub(super) what: String,
    pub(super) path: PathBuf,
    /// The key (or flag) that set it.
    pub(super) key: String,
    /// The file (and line, when known) that set it.
    pub(super) file: Option<(PathBuf, Option<usize>)>,
}

/// The name an error about `key` set from `origin` goes by: the flag when a
/// flag set it, the key otherwise.
pub(super) fn key_for(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Flag(flag) => (*flag).to_string(),
        _ => key.to_string(),
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
            unknown_imports: Setting {
                value: UnknownImports::Refuse,
                origin: Origin::Default,
            },
            cwd: None,
            wall: WallSettings::default(),
            module_sha256: None,
            module_signed_by: None,
        }
    }

    /// A builder that layers policy files and values set in code, then
    /// resolves and validates them once. See [`PolicyBuilder::new`] for the
    /// defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::new()
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

    /// `[wasm] unknown-imports`: what becomes of an import no linker
    /// provides ([`UnknownImports::Refuse`] unless a layer says otherwise).
    /// Engines made for the policy
    /// ([`EngineConfig::for_policy`](crate::EngineConfig::for_policy)) link
    /// with it.
    pub fn unknown_imports(&self) -> &Setting<UnknownImports> {
        &self.unknown_imports
    }

    /// `module.sha256`: the SHA-256 digests (lowercase hex) of the modules
    /// this policy may run, and where the list was set; `None` when the
    /// policy is not pinned to a module. [`Sandbox`](crate::Sandbox) refuses
    /// any other module before compiling it.
    pub fn module_sha256(&self) -> Option<&Setting<Vec<String>>> {
        self.module_sha256.as_ref()
    }

    /// `module.signed-by`: the public keys one of which must have signed a
    /// module for it to run under this policy, and where the list was set;
    /// `None` when the policy asks for no signature.
    pub fn module_signed_by(&self) -> Option<&Setting<Vec<ModuleKey>>> {
        self.module_signed_by.as_ref()
    }

    /// Whether a module whose SHA-256 is `digest` (lowercase hex) may run
    /// under this policy: always when the policy is not pinned.
    pub fn admits_module(&self, digest: &str) -> bool {
        self.module_sha256
            .as_ref()
            .is_none_or(|pins| pins.value.iter().any(|p| p == digest))
    }
}
