//! Layering a policy: files, then values set in code, resolved once.

use super::check::{check_clock_resolution, check_clock_start, check_env_name, check_rules, check_stdin_file};
use super::cwd::{CwdLayer, check_cwd};
use super::error::{PolicyError, invalid};
use super::load::{Layer, Loader, absolute, load_layer, parse_layer, resolve_dir, resolve_file};
use super::settings::LimitsLayer;
use super::tls::CaFile;
use super::{
    Access, ClockMode, Clocks, DirGrant, DirSite, FsRules, HttpRule, Input, NetKind, NetRule, Origin, Output, Policy,
    Proposal, Setting, UnknownImports, key_for,
};
use std::path::{Path, PathBuf};

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
/// by the flag [`PolicyBuilder::with_origin`] or [`PolicyBuilder::set_setting`] gave.
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
///     .set_setting("limits.fuel", "1000000", Origin::Flag("--fuel"))?
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
    /// The origin of values set inside [`PolicyBuilder::with_origin`];
    /// [`Origin::Api`] when `None`.
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
    /// - every limit at its default (see [`Limits`](super::Limits) and
    ///   [`SETTINGS`](super::SETTINGS)): fuel not metered, the others finite.
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
        self.layer = std::mem::take(&mut self.layer).overlay(layer);
        self.source = None;
        Ok(self)
    }

    /// Calls `set` with every value it sets coming from `origin` rather
    /// than [`Origin::Api`], so that messages about them (a refusal, "fuel
    /// exhausted ... (--fuel)") name the flag a user typed:
    /// `.with_origin(Origin::Flag("--dir"), |b| b.grant_dir(host, "/data", Access::ReadOnly))`.
    /// For a setting given as text, [`PolicyBuilder::set_setting`] takes the
    /// origin itself.
    pub fn with_origin(mut self, origin: Origin, set: impl FnOnce(PolicyBuilder) -> PolicyBuilder) -> PolicyBuilder {
        let outer = self.origin.replace(origin);
        let mut built = set(self);
        built.origin = outer;
        built
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
    /// may name the file otherwise than the host does (`/etc/app.conf` for
    /// `conf/one.conf`): the guest opens, stats and lists it by that name
    /// only, and the host's names stay hidden. Several files of one host
    /// folder may share a guest folder, each with its own access and name;
    /// one guest name for two files, one file under two names in one guest
    /// folder, or files of two host folders in one guest folder are refused
    /// by [`PolicyBuilder::build`].
    pub fn grant_file(mut self, host: impl AsRef<Path>, guest: &str, access: Access) -> PolicyBuilder {
        let site = match self.origin_now() {
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
        let site = match self.origin_now() {
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
        let origin = self.origin_now();
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
        let origin = self.origin_now();
        self.layer.wall_mode = Some(Setting { value: mode, origin });
        self
    }

    /// Sets `wall.landlock-abi`: the least Landlock ABI that counts as
    /// Landlock in effect (1 to [`MAX_LANDLOCK_ABI`](super::MAX_LANDLOCK_ABI)).
    pub fn landlock_abi(mut self, abi: u32) -> PolicyBuilder {
        let origin = self.origin_now();
        match super::wall::check_landlock_abi(abi) {
            Ok(()) => self.layer.landlock_abi = Some(Setting { value: abi, origin }),
            Err(e) => self.fail(e.key(&key_for(&origin, "wall.landlock-abi"))),
        }
        self
    }

    /// Sets an environment variable in the guest, as `env.vars` does.
    pub fn env(mut self, name: &str, value: &str) -> PolicyBuilder {
        let origin = self.origin_now();
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
        let origin = self.origin_now();
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
        let origin = self.origin_now();
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
        let origin = self.origin_now();
        self.layer.stdout = Some(Setting {
            value: absolute_output(output),
            origin,
        });
        self
    }

    /// Sets where stderr goes, as `stdio.stderr` does.
    pub fn stderr(mut self, output: Output) -> PolicyBuilder {
        let origin = self.origin_now();
        self.layer.stderr = Some(Setting {
            value: absolute_output(output),
            origin,
        });
        self
    }

    /// Sets the clocks the guest sees, replacing the whole `[clocks]` table
    /// of earlier layers.
    pub fn clocks(mut self, clocks: Clocks) -> PolicyBuilder {
        let origin = self.origin_now();
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
        let origin = self.origin_now();
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
        let origin = self.origin_now();
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

    /// Trusts the CA certificates in the PEM file at `path` for `https`
    /// requests, beside the public CAs, as an entry of `net.ca-certificates`
    /// does; a relative `path` is resolved from the current directory. The
    /// file is read now.
    ///
    /// # Security
    ///
    /// Whoever holds a CA's key can answer for any host the guest may
    /// reach, and read what the host sends there (injected credentials too).
    pub fn ca_certificate(mut self, path: impl AsRef<Path>) -> PolicyBuilder {
        let origin = self.origin_now();
        match CaFile::load(&absolute(path.as_ref())) {
            Ok(ca) => {
                let mut layer = Layer::default();
                layer.net.ca_certificates.push(ca);
                self.add(layer);
            }
            Err(why) => self.fail(invalid(why).key(&key_for(&origin, "net.ca-certificates"))),
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
        let origin = self.origin_now();
        self.add(Layer {
            proposals: vec![Setting {
                value: proposal,
                origin,
            }],
            ..Layer::default()
        });
        self
    }

    /// Sets what becomes of an import no linker provides, as
    /// `[wasm] unknown-imports` does; the last layer that sets it wins.
    ///
    /// # Security
    ///
    /// [`UnknownImports::Trap`] grants nothing (the stand-ins only trap), but
    /// runs a guest that would otherwise have been refused before compiling.
    pub fn unknown_imports(mut self, mode: UnknownImports) -> PolicyBuilder {
        let origin = self.origin_now();
        self.layer.unknown_imports = Some(Setting { value: mode, origin });
        self
    }

    /// Pins the modules the policy may run, as `module.sha256` does: each
    /// `digest` is the SHA-256 of a module's bytes in hexadecimal
    /// (`sha256sum module.wasm`). Over a policy that already pins modules,
    /// the list may only narrow theirs.
    ///
    /// # Security
    ///
    /// A pinned policy's grants go only to the modules it names:
    /// [`Sandbox::load`](crate::Sandbox::load) and its kin refuse any other
    /// before compiling it, and a run of a [`Program`](crate::Program)
    /// loaded elsewhere is refused as well.
    pub fn module_sha256(mut self, digests: &[&str]) -> PolicyBuilder {
        let origin = self.origin_now();
        match super::module::check_pins(digests.iter().copied()) {
            Ok(pins) => {
                let mut top = Layer::default();
                top.module.pins = Some(Setting { value: pins, origin });
                self.add(top);
            }
            Err(e) => self.fail(e.key(&key_for(&origin, "module.sha256"))),
        }
        self
    }

    /// Asks for a signature, as `module.signed-by` does: a module runs only
    /// if it carries a signature (embedded, or given with
    /// [`Sandbox::load_signed`](crate::Sandbox::load_signed)) that one of the
    /// public keys in `key_files` verifies. Over a policy that already names
    /// keys, the list may only narrow theirs.
    pub fn module_signed_by(mut self, key_files: &[impl AsRef<Path>]) -> PolicyBuilder {
        let origin = self.origin_now();
        match super::module::read_keys(key_files.iter().map(|p| absolute(p.as_ref()))) {
            Ok(keys) => {
                let mut top = Layer::default();
                top.module.signers = Some(Setting { value: keys, origin });
                self.add(top);
            }
            Err(e) => self.fail(e.key(&key_for(&origin, "module.signed-by"))),
        }
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

    /// The origin of a value set now.
    fn origin_now(&self) -> Origin {
        self.origin.clone().unwrap_or(Origin::Api)
    }

    fn fail(&mut self, e: PolicyError) {
        self.error.get_or_insert(e);
    }

    /// Overlays `top`, as a file would be.
    fn add(&mut self, top: Layer) {
        self.layer = std::mem::take(&mut self.layer).overlay(top);
    }

    /// Sets a `[limits]` value `checked` already, or keeps the refusal,
    /// named by the flag or `key`.
    pub(super) fn set_limit(
        mut self,
        key: &str,
        checked: Result<(), PolicyError>,
        put: impl FnOnce(&mut LimitsLayer, Origin),
    ) -> PolicyBuilder {
        let origin = self.origin_now();
        match checked {
            Ok(()) => put(&mut self.layer.limits, origin),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyErrorKind;
    use std::time::Duration;

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
            .with_origin(Origin::Flag("--wasm"), |b| b.wasm_proposal(Proposal::Gc))
            .build()
            .unwrap();
        assert_eq!(p.proposals().to_string(), "exceptions, tail-call, gc");
        let origins: Vec<_> = p.proposal_settings().iter().map(|s| s.origin.clone()).collect();
        assert_eq!(
            origins,
            [
                Origin::file(&d.join("base.toml")),
                Origin::file(&d.join("top.toml")),
                Origin::Flag("--wasm")
            ]
        );
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
            .with_origin(Origin::Flag("--fuel"), |b| b.fuel(5))
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
    fn a_later_layer_overrides_a_file_and_keeps_its_origin() {
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
            .with_origin(Origin::Flag("--fuel"), |b| b.fuel(20))
            .env("A", "api")
            .build()
            .unwrap();
        assert_eq!(p.limits().fuel.value, Some(20));
        assert_eq!(p.limits().fuel.origin, Origin::Flag("--fuel"));
        assert_eq!(
            p.limits().memory.origin,
            Origin::File {
                path: file.clone(),
                line: Some(3)
            },
            "values not set again stay the file's"
        );
        assert_eq!(p.env_vars()["A"], "api");
        assert_eq!(p.source(), Some(file.as_path()));
        // An origin holds inside `with_origin` only.
        let p = Policy::builder()
            .with_origin(Origin::Flag("--memory"), |b| b.memory(1 << 20))
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(p.limits().memory.origin, Origin::Flag("--memory"));
        assert_eq!(p.limits().timeout.origin, Origin::Api);
        assert_eq!(
            p.limits().timeout.origin.cite("limits.timeout"),
            "limits.timeout set through the API"
        );
    }

    // See: #10
    #[test]
    fn a_refused_value_names_the_flag_or_the_key() {
        let from_api = Policy::builder().memory(0).build().unwrap_err().to_string();
        assert!(
            from_api.starts_with("limits.memory must be between 1 byte and 4 GiB"),
            "{from_api}"
        );
        assert!(!from_api.contains("--"), "the library names no flag: {from_api}");
        let from_flag = Policy::builder()
            .with_origin(Origin::Flag("--memory"), |b| b.memory(0))
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
}
