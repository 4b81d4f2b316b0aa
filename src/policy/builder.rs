//! Layering a policy: files, then values set in code, resolved once.

use super::check::{
    check_clock_resolution, check_clock_start, check_env_name, check_limits_fuel, check_limits_handles,
    check_limits_memory, check_limits_module_size, check_limits_output, check_limits_stack, check_limits_timeout,
    check_rules, check_stdin_file,
};
use super::cwd::{CwdLayer, check_cwd};
use super::error::{PolicyError, invalid};
use super::load::{Layer, LimitsLayer, Loader, absolute, load_layer, parse_layer, resolve_dir, resolve_file};
use super::{
    Access, ClockMode, Clocks, DirGrant, DirSite, FsRules, HttpRule, Input, NetKind, NetRule, Origin, Output, Policy,
    Proposal, Setting, key_for,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds a [`Policy`] from layers: policy files and values set in code,
/// applied in the order of the calls, then resolved and validated once by
/// [`PolicyBuilder::build`].
///
/// Like ripgrep's config file under its flags: a later layer's scalars
/// (limits, stdio, clocks, seed) replace earlier ones, its lists (directory
/// grants, inherited names, network rules) are added to them, and its
/// environment variables replace earlier ones of the same name. A program
/// with command-line flags calls the setters after [`PolicyBuilder::file`], so
/// that flags override the file.
///
/// Each value is refused by the same check whichever layer it comes from.
/// A setter never fails: the first refused value is kept and returned by
/// [`PolicyBuilder::build`], named by its policy key (`limits.timeout`), or
/// by the flag given to [`PolicyBuilder::origin`] just before the setter.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use wasmcell::{Origin, Policy};
///
/// let policy = Policy::builder()
///     .file("policies/deny-all.toml")?
///     .timeout(Duration::from_secs(2))
///     .origin(Origin::Flag("--fuel"))
///     .fuel(1_000_000)
///     .env("LANG", "C.UTF-8")
///     .build()?;
/// assert_eq!(policy.limits().timeout.value, Duration::from_secs(2));
/// assert_eq!(policy.limits().timeout.origin, Origin::Api);
/// assert_eq!(policy.limits().fuel.origin, Origin::Flag("--fuel"));
///
/// let refused = Policy::builder().timeout(Duration::ZERO).build().unwrap_err();
/// assert!(refused.to_string().starts_with("limits.timeout must be longer than zero"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    layer: Layer,
    source: Option<PathBuf>,
    /// The origin of the next value set; [`Origin::Api`] when `None`.
    origin: Option<Origin>,
    /// The first value refused.
    error: Option<PolicyError>,
}

impl PolicyBuilder {
    /// A builder with no layers, which builds [`Policy::deny_all`]:
    ///
    /// - no directories: the guest sees no files;
    /// - an empty environment, and nothing inherited from the host;
    /// - stdin closed, stdout and stderr inherited;
    /// - the host's clocks at full resolution, host entropy;
    /// - no sockets, no name lookups, no outgoing HTTP;
    /// - no Wasm proposals beyond those every WASI guest uses (see
    ///   [`PolicyBuilder::wasm_proposal`]);
    /// - every limit at its default (see [`Limits`](super::Limits)): fuel not
    ///   metered, 256 MiB of memory, a 10 s timeout, 1 MiB of stack, 16 MiB
    ///   of output, 64 MiB modules, 1024 handles.
    pub fn new() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Adds a policy file, and everything it `extends`, as the next layer.
    /// Its relative paths are resolved against its own folder.
    ///
    /// # Errors
    ///
    /// What [`Policy::from_file`] refuses in the file itself, with its file,
    /// line and key. What only the whole policy can show (such as grants that
    /// overlap across layers) is refused by [`PolicyBuilder::build`].
    pub fn file(mut self, path: impl AsRef<Path>) -> Result<PolicyBuilder, PolicyError> {
        let path = path.as_ref();
        let layer = load_layer(path, &mut Loader::default()).map_err(|mut e| {
            // An `extends` cycle is found deep in the chain; name the file asked for.
            e.path.get_or_insert_with(|| path.to_path_buf());
            e
        })?;
        self.origin = None;
        self.layer = std::mem::take(&mut self.layer).overlay(layer);
        self.source = Some(path.to_path_buf());
        Ok(self)
    }

    /// Adds policy TOML text as the next layer, its relative paths (and
    /// `extends`) resolved against `base_dir`; messages name it `<inline>`.
    ///
    /// # Errors
    ///
    /// As [`PolicyBuilder::file`].
    pub fn toml(mut self, text: &str, base_dir: impl AsRef<Path>) -> Result<PolicyBuilder, PolicyError> {
        let pseudo = base_dir.as_ref().join("<inline>");
        let layer = parse_layer(text, &pseudo, &mut Loader::default())?;
        self.origin = None;
        self.layer = std::mem::take(&mut self.layer).overlay(layer);
        self.source = None;
        Ok(self)
    }

    /// Marks the value of the next setter as coming from `origin`, so that
    /// messages about it (a refusal, "fuel exhausted ... (--fuel)") name the
    /// flag a user typed: `.origin(Origin::Flag("--fuel")).fuel(n)`. Applies
    /// to the next setter only; values are [`Origin::Api`] otherwise.
    pub fn origin(mut self, origin: Origin) -> PolicyBuilder {
        self.origin = Some(origin);
        self
    }

    /// Sets `limits.fuel`: fuel units the guest may burn (at least 1).
    pub fn fuel(mut self, units: u64) -> PolicyBuilder {
        let origin = self.take_origin();
        match check_limits_fuel(units) {
            Ok(()) => {
                self.layer.limits.fuel = Some(Setting {
                    value: Some(units),
                    origin,
                });
            }
            Err(e) => self.fail(e.key(&key_for(&origin, "limits.fuel"))),
        }
        self
    }

    /// Sets `limits.memory`: bytes of linear memory and tables (1 byte to
    /// [`Limits::MAX_MEMORY`](super::Limits::MAX_MEMORY)).
    pub fn memory(self, bytes: u64) -> PolicyBuilder {
        self.limit("limits.memory", bytes, check_limits_memory, |l| &mut l.memory)
    }

    /// Sets `limits.timeout`: wall-clock time from instantiation (longer
    /// than zero, at most [`Limits::MAX_TIMEOUT`](super::Limits::MAX_TIMEOUT), 30 days).
    pub fn timeout(self, timeout: Duration) -> PolicyBuilder {
        self.limit("limits.timeout", timeout, check_limits_timeout, |l| &mut l.timeout)
    }

    /// Sets `limits.stack`: bytes of Wasm stack (4 KiB to 64 MiB).
    pub fn stack(self, bytes: u64) -> PolicyBuilder {
        self.limit("limits.stack", bytes, check_limits_stack, |l| &mut l.stack)
    }

    /// Sets `limits.output`: bytes of stdout plus stderr (1 byte to
    /// [`Limits::MAX_OUTPUT`](super::Limits::MAX_OUTPUT)).
    pub fn output(self, bytes: u64) -> PolicyBuilder {
        self.limit("limits.output", bytes, check_limits_output, |l| &mut l.output)
    }

    /// Sets `limits.module-size`: the largest module or component file
    /// accepted (1 byte to [`Limits::MAX_MODULE_SIZE`](super::Limits::MAX_MODULE_SIZE)).
    pub fn module_size(self, bytes: u64) -> PolicyBuilder {
        self.limit("limits.module-size", bytes, check_limits_module_size, |l| {
            &mut l.module_size
        })
    }

    /// Sets `limits.handles`: WASI handles held at once (16 to 1,000,000).
    pub fn handles(self, handles: u64) -> PolicyBuilder {
        self.limit("limits.handles", handles, check_limits_handles, |l| &mut l.handles)
    }

    /// Grants `host` to the guest at `guest`, as a `[[fs.dirs]]` entry does.
    ///
    /// Like `WasiCtxBuilder::preopened_dir`, but the host path is
    /// canonicalized first and must exist; granting two different host
    /// directories at one guest path is refused, and the same directory
    /// granted again at the same guest path takes the later access.
    ///
    /// # Security
    ///
    /// Grants the guest `access` to everything below `host`, including files
    /// created there later by other processes. A read-write grant that
    /// contains, is or aliases a grant with less access is refused by
    /// [`PolicyBuilder::build`] ([`PolicyErrorKind::OverlappingGrants`](super::PolicyErrorKind::OverlappingGrants)).
    pub fn grant_dir(self, host: impl AsRef<Path>, guest: &str, access: Access) -> PolicyBuilder {
        self.grant_dir_with_rules(host, guest, access, FsRules::default())
    }

    /// Grants the one file `host` to the guest at `guest`, as a
    /// `[[fs.files]]` entry does: the guest sees the file there, in a folder
    /// that shows nothing else of the host folder. `guest` is absolute and
    /// keeps the host file's name (`/etc/app.conf` for `conf/app.conf`).
    /// Several files of one host folder may share a guest folder, each with
    /// its own access.
    pub fn grant_file(mut self, host: impl AsRef<Path>, guest: &str, access: Access) -> PolicyBuilder {
        let site = match self.take_origin() {
            Origin::Flag(flag) => DirSite::Flag(flag),
            _ => DirSite::Api,
        };
        match resolve_file(host.as_ref(), guest, access) {
            Ok(dir) => self.add(Layer {
                dirs: vec![dir],
                dir_sites: vec![(site, absolute(host.as_ref()))],
                ..Layer::default()
            }),
            Err((_, e)) => self.fail(site.locate(e.key("fs.files"))),
        }
        self
    }

    /// As [`grant_dir`](Self::grant_dir), with rules inside the grant, as a
    /// `[[fs.dirs]]` entry's `deny`, `read-only` and `hide` keys give.
    ///
    /// ```
    /// # fn main() -> Result<(), wasmcell::PolicyError> {
    /// use wasmcell::policy::{Access, FsRules, PathGlob, Policy};
    /// let rules = FsRules {
    ///     deny: vec![PathGlob::new("**/.env")?],
    ///     read_only: vec![PathGlob::new(".git/**")?],
    ///     hide: true,
    ///     quota: Some(100 << 20),
    ///     ..FsRules::default()
    /// };
    /// let policy = Policy::builder()
    ///     .grant_dir_with_rules(std::env::temp_dir(), "/work", Access::ReadWrite, rules)
    ///     .build()?;
    /// assert_eq!(policy.dirs()[0].rules.deny[0].as_str(), "**/.env");
    /// # Ok(()) }
    /// ```
    pub fn grant_dir_with_rules(
        mut self,
        host: impl AsRef<Path>,
        guest: &str,
        access: Access,
        rules: FsRules,
    ) -> PolicyBuilder {
        let site = match self.take_origin() {
            Origin::Flag(flag) => DirSite::Flag(flag),
            _ => DirSite::Api,
        };
        if let Err(e) = check_rules(&rules, access) {
            self.fail(site.locate(e));
            return self;
        }
        match resolve_dir(host.as_ref(), guest) {
            Ok(dir) => self.add(Layer {
                dirs: vec![DirGrant { access, rules, ..dir }],
                dir_sites: vec![(site, absolute(host.as_ref()))],
                ..Layer::default()
            }),
            Err(e) => self.fail(site.locate(e)),
        }
        self
    }

    /// Sets the guest's initial working directory, as `fs.cwd` does: an
    /// absolute guest path without `.` or `..`. [`PolicyBuilder::build`]
    /// refuses it unless it lies inside a granted directory, where the
    /// grant's rules let the guest read, and the environment sets no other
    /// `PWD`.
    ///
    /// ```
    /// # fn main() -> Result<(), wasmcell::PolicyError> {
    /// use wasmcell::policy::{Access, Policy};
    /// let policy = Policy::builder()
    ///     .grant_dir(std::env::temp_dir(), "/work", Access::ReadOnly)
    ///     .cwd("/work/src")
    ///     .build()?;
    /// assert_eq!(policy.cwd(), Some("/work/src"));
    /// assert_eq!(policy.env_vars()["PWD"], "/work/src");
    /// assert!(Policy::builder().cwd("/work").build().is_err(), "no grant holds it");
    /// # Ok(()) }
    /// ```
    pub fn cwd(mut self, path: &str) -> PolicyBuilder {
        let origin = self.take_origin();
        match check_cwd(path) {
            Ok(path) => {
                self.layer.cwd = Some(CwdLayer {
                    path: Setting { value: path, origin },
                    line: None,
                });
            }
            Err(e) => self.fail(e.key(&key_for(&origin, "fs.cwd"))),
        }
        self
    }

    /// Sets `wall.mode`: how the run's process confines itself (see
    /// [`WallMode`](super::WallMode)).
    pub fn wall_mode(mut self, mode: super::WallMode) -> PolicyBuilder {
        let origin = self.take_origin();
        self.layer.wall_mode = Some(Setting { value: mode, origin });
        self
    }

    /// Sets `wall.landlock-abi`: the least Landlock ABI that counts as
    /// Landlock in effect (1 to [`MAX_LANDLOCK_ABI`](super::MAX_LANDLOCK_ABI)).
    pub fn landlock_abi(mut self, abi: u32) -> PolicyBuilder {
        let origin = self.take_origin();
        match super::wall::check_landlock_abi(abi) {
            Ok(()) => self.layer.landlock_abi = Some(Setting { value: abi, origin }),
            Err(e) => self.fail(e.key(&key_for(&origin, "wall.landlock-abi"))),
        }
        self
    }

    /// Sets an environment variable in the guest, as `env.vars` does.
    pub fn env(mut self, name: &str, value: &str) -> PolicyBuilder {
        let origin = self.take_origin();
        match check_env_name(name) {
            Ok(()) => {
                self.layer.env_vars.insert(name.to_string(), value.to_string());
            }
            Err(e) => self.fail(e.key(&key_for(&origin, "env.vars"))),
        }
        self
    }

    /// Copies an environment variable from the host when it is set there,
    /// as `env.inherit` does.
    ///
    /// # Security
    ///
    /// The guest sees the host's value.
    pub fn inherit_env(mut self, name: &str) -> PolicyBuilder {
        let origin = self.take_origin();
        match check_env_name(name) {
            Ok(()) => self.add(Layer {
                env_inherit: vec![name.to_string()],
                ..Layer::default()
            }),
            Err(e) => self.fail(e.key(&key_for(&origin, "env.inherit"))),
        }
        self
    }

    /// Sets where stdin comes from, as `stdio.stdin` does. A file must
    /// exist now; it is read when a run starts.
    ///
    /// # Security
    ///
    /// [`Input::Inherit`] hands the guest this process's stdin; [`Input::File`]
    /// lets it read that host file.
    pub fn stdin(mut self, input: Input) -> PolicyBuilder {
        let origin = self.take_origin();
        let input = match input {
            Input::File(path) => {
                let path = absolute(&path);
                if let Err(e) = check_stdin_file(&path) {
                    self.fail(e.key(&key_for(&origin, "stdio.stdin")));
                    return self;
                }
                Input::File(path)
            }
            other => other,
        };
        self.layer.stdin = Some(Setting { value: input, origin });
        self
    }

    /// Sets where stdout goes, as `stdio.stdout` does.
    pub fn stdout(mut self, output: Output) -> PolicyBuilder {
        let origin = self.take_origin();
        self.layer.stdout = Some(Setting {
            value: absolute_output(output),
            origin,
        });
        self
    }

    /// Sets where stderr goes, as `stdio.stderr` does.
    pub fn stderr(mut self, output: Output) -> PolicyBuilder {
        let origin = self.take_origin();
        self.layer.stderr = Some(Setting {
            value: absolute_output(output),
            origin,
        });
        self
    }

    /// Sets the clocks the guest sees, replacing the whole `[clocks]` table
    /// of earlier layers.
    pub fn clocks(mut self, clocks: Clocks) -> PolicyBuilder {
        let origin = self.take_origin();
        let (mode, start, resolution) = match clocks {
            Clocks::Host { resolution } => (ClockMode::Host, None, resolution),
            Clocks::Frozen { start } => (ClockMode::Frozen, Some(start), None),
        };
        let checked = match (start, resolution) {
            (Some(s), _) => check_clock_start(s).map_err(|e| e.key(&key_for(&origin, "clocks.start"))),
            (_, Some(r)) => check_clock_resolution(r).map_err(|e| e.key(&key_for(&origin, "clocks.resolution"))),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            self.fail(e);
            return self;
        }
        self.layer.clock_start = start.map(|value| Setting {
            value,
            origin: origin.clone(),
        });
        self.layer.clock_resolution = resolution.map(|value| Setting {
            value,
            origin: origin.clone(),
        });
        self.layer.clock_mode = Some(Setting { value: mode, origin });
        self
    }

    /// Seeds the guest's randomness, as `random.seed` does.
    ///
    /// # Security
    ///
    /// The guest's "secure" random numbers become predictable.
    pub fn seed(mut self, seed: u64) -> PolicyBuilder {
        self.take_origin();
        self.layer.seed = Some(seed);
        self
    }

    /// Adds a network grant, as the `net.tcp-connect`, `net.tcp-bind`,
    /// `net.udp-bind` and `net.udp-send` entries do: `127.0.0.1:8080`,
    /// `10.1.0.0/16:443`, `localhost:*`.
    ///
    /// # Security
    ///
    /// The guest may then reach, or listen on, every address the entry
    /// names; a host name grants every address it resolved to just now.
    pub fn allow_net(mut self, kind: NetKind, entry: &str) -> PolicyBuilder {
        let origin = self.take_origin();
        match NetRule::parse(entry) {
            Ok(rule) => {
                let mut layer = Layer::default();
                layer.net.rules_mut(kind).push(rule);
                self.add(layer);
            }
            Err(why) => self.fail(invalid(why).key(&key_for(&origin, &format!("net.{}", kind.name())))),
        }
        self
    }

    /// Allows name lookups, as `net.dns` does.
    pub fn allow_dns(mut self, allow: bool) -> PolicyBuilder {
        self.take_origin();
        self.layer.dns = Some(allow);
        self
    }

    /// Allows outgoing HTTP requests to `entry` (`scheme://host[:port|:*]`),
    /// as `net.http` does.
    ///
    /// # Security
    ///
    /// The guest may send any request, with any body, to that origin.
    pub fn allow_http(mut self, entry: &str) -> PolicyBuilder {
        let origin = self.take_origin();
        match HttpRule::parse(entry) {
            Ok(rule) => {
                let mut layer = Layer::default();
                layer.net.http.push(rule);
                self.add(layer);
            }
            Err(why) => self.fail(invalid(why).key(&key_for(&origin, "net.http"))),
        }
        self
    }

    /// Turns on a Wasm proposal, as an entry of `[wasm] proposals` does;
    /// proposals from every layer add up. Engines made for the policy
    /// ([`EngineConfig::for_policy`](crate::EngineConfig::for_policy)) turn
    /// it on, with the proposals it implies ([`Proposal::implies`]).
    ///
    /// # Security
    ///
    /// The guest reaches compiler and runtime code that guests built for
    /// `wasm32-wasip1`/`wasm32-wasip2` never need; see [`Proposal::risk`].
    pub fn wasm_proposal(mut self, proposal: Proposal) -> PolicyBuilder {
        let origin = self.take_origin();
        self.add(Layer {
            proposals: vec![Setting {
                value: proposal,
                origin,
            }],
            ..Layer::default()
        });
        self
    }

    /// Resolves the layers into a [`Policy`]: defaults filled in, host paths
    /// canonicalized, and what only the whole can show checked once.
    ///
    /// # Errors
    ///
    /// The first value a setter refused, or a [`PolicyError`] for grants at
    /// one guest path, grants that overlap with different access, host paths
    /// that reach through a symbolic link inside a read-write grant, and
    /// clock settings that contradict each other. Each names the file and
    /// line, the flag, or the policy key that set the value at fault.
    pub fn build(self) -> Result<Policy, PolicyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Policy::resolve(self.layer, self.source)
    }

    fn take_origin(&mut self) -> Origin {
        self.origin.take().unwrap_or(Origin::Api)
    }

    fn fail(&mut self, e: PolicyError) {
        self.error.get_or_insert(e);
    }

    /// Overlays `top`, as a file would be.
    fn add(&mut self, top: Layer) {
        self.layer = std::mem::take(&mut self.layer).overlay(top);
    }

    fn limit<V>(
        mut self,
        key: &str,
        value: V,
        check: fn(V) -> Result<(), PolicyError>,
        slot: fn(&mut LimitsLayer) -> &mut Option<Setting<V>>,
    ) -> PolicyBuilder
    where
        V: Copy,
    {
        let origin = self.take_origin();
        match check(value) {
            Ok(()) => *slot(&mut self.layer.limits) = Some(Setting { value, origin }),
            Err(e) => self.fail(e.key(&key_for(&origin, key))),
        }
        self
    }
}

fn absolute_output(output: Output) -> Output {
    match output {
        Output::File(path) => Output::File(absolute(&path)),
        other => other,
    }
}
