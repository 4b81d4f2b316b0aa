//! Reading policy files: parsing each one, resolving its relative paths
//! against its own folder, following `extends`, and merging the layers.

use super::error::{PolicyError, PolicyErrorKind, invalid};
use super::error::{key_at, line_of, reword_parse_error, span_of_key};
use super::file::{ClockMode, InputSpec, OutputSpec, PolicyFile};
use super::net::{HttpRule, NetGrants, NetKind, NetRule};
use super::{Access, ByteSize, DirGrant, DirSite, Input, Limits, Origin, Output, Setting};
use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most `extends` links between the file asked for and its deepest base. A
/// policy may come from an untrusted repository; without a cap a long chain
/// would overflow the stack.
pub(crate) const MAX_EXTENDS_DEPTH: usize = 32;

/// Largest policy file read, in bytes. Policies are a few hundred bytes; the
/// cap keeps a hostile `extends` from making the host read without end.
pub(crate) const MAX_POLICY_FILE_SIZE: u64 = 1 << 20;

/// One resolution of a policy file: the chain of files being loaded (for
/// cycles and the depth cap) and every file already loaded, so that a file
/// reached twice (`extends = ["a.toml", "a.toml"]`, or a diamond) is read and
/// parsed once however the chain is shaped.
#[derive(Default)]
pub(super) struct Loader {
    stack: Vec<PathBuf>,
    loaded: HashMap<PathBuf, Layer>,
    /// Files read so far, for tests of the above.
    reads: usize,
}

/// The partially merged contents of one file and everything it extends.
#[derive(Default, Clone)]
pub(super) struct Layer {
    pub(super) limits: LimitsLayer,
    pub(super) dirs: Vec<DirGrant>,
    /// Where each of `dirs` was granted, and its host path as written, in the same order.
    pub(super) dir_sites: Vec<(DirSite, PathBuf)>,
    pub(super) env_vars: BTreeMap<String, String>,
    pub(super) env_inherit: Vec<String>,
    pub(super) stdin: Option<Input>,
    pub(super) stdout: Option<Output>,
    pub(super) stderr: Option<Output>,
    pub(super) clock_mode: Option<ClockMode>,
    pub(super) clock_start: Option<SystemTime>,
    pub(super) clock_resolution: Option<Duration>,
    pub(super) seed: Option<u64>,
    pub(super) net: NetGrants,
    pub(super) dns: Option<bool>,
    pub(super) files: Vec<PathBuf>,
}

#[derive(Default, Clone)]
pub(super) struct LimitsLayer {
    pub(super) fuel: Option<Setting<Option<u64>>>,
    pub(super) memory: Option<Setting<u64>>,
    pub(super) timeout: Option<Setting<Duration>>,
    pub(super) stack: Option<Setting<u64>>,
    pub(super) output: Option<Setting<u64>>,
    pub(super) module_size: Option<Setting<u64>>,
    pub(super) handles: Option<Setting<u64>>,
}

impl Layer {
    /// Applies `top` over `self`: scalars from `top` win, lists are
    /// concatenated (base first), maps are merged with `top` winning per key.
    ///
    /// A file reached twice through `extends` is applied twice, as written;
    /// repeated list entries are kept once, so a layer stays as large as the
    /// distinct entries in its files however often they are reached. That
    /// changes nothing `Policy::resolve` makes of the lists: a directory granted
    /// again at the same guest path takes the later access (as `push_dir`
    /// does), a network rule allows the same with one copy as with two, and a
    /// file is listed where it was first merged.
    fn overlay(mut self, top: Layer) -> Layer {
        macro_rules! win {
            ($($f:ident).+) => { if top.$($f).+.is_some() { self.$($f).+ = top.$($f).+; } };
        }
        win!(limits.fuel);
        win!(limits.memory);
        win!(limits.timeout);
        win!(limits.stack);
        win!(limits.output);
        win!(limits.module_size);
        win!(limits.handles);
        win!(stdin);
        win!(stdout);
        win!(stderr);
        win!(clock_mode);
        win!(clock_start);
        win!(clock_resolution);
        win!(seed);
        win!(dns);
        let mut top_net = top.net;
        for kind in [
            NetKind::TcpConnect,
            NetKind::TcpBind,
            NetKind::UdpBind,
            NetKind::UdpSend,
        ] {
            append_new(self.net.rules_mut(kind), std::mem::take(top_net.rules_mut(kind)));
        }
        append_new(&mut self.net.http, top_net.http);
        // A grant repeated as it was (from a shared base, say) is kept once,
        // moved to where it was repeated. One that changes the access stays a
        // grant of its own: resolving applies grants in order, so the last
        // access wins and a collision is reported where it was written.
        debug_assert_eq!(top.dirs.len(), top.dir_sites.len());
        for (dir, site) in top.dirs.into_iter().zip(top.dir_sites) {
            if let Some(i) = self.dirs.iter().position(|d| *d == dir) {
                self.dirs.remove(i);
                self.dir_sites.remove(i);
            }
            self.dirs.push(dir);
            self.dir_sites.push(site);
        }
        self.env_vars.extend(top.env_vars);
        append_new(&mut self.env_inherit, top.env_inherit);
        append_new(&mut self.files, top.files);
        self
    }
}

/// Appends the items of `extra` that `list` does not hold yet, in order.
fn append_new<T: PartialEq>(list: &mut Vec<T>, extra: Vec<T>) {
    for item in extra {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The file at `path` and everything it extends, merged; a file this
/// resolution has loaded before is not read again.
pub(super) fn load_layer(path: &Path, loader: &mut Loader) -> Result<Layer, PolicyError> {
    let identity = identity_of(path);
    // A loaded file is never on the stack: it is stored only once finished.
    if let Some(layer) = loader.loaded.get(&identity) {
        return Ok(layer.clone());
    }
    loader.reads += 1;
    let text = read_policy_file(path).map_err(|e| {
        let mut err = PolicyError::new(PolicyErrorKind::Io(e));
        err.path = Some(path.to_path_buf());
        err
    })?;
    let layer = parse_layer(&text, path, loader)?;
    loader.loaded.insert(identity, layer.clone());
    Ok(layer)
}

/// What makes two names of one policy file the same file.
fn identity_of(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Reads a policy file: a regular file of at most [`MAX_POLICY_FILE_SIZE`]
/// bytes. Anything else is refused before it is read, and the open never
/// blocks: a FIFO would wait for a writer forever, and `/dev/zero` would be
/// read until memory ran out.
pub(super) fn read_policy_file(path: &Path) -> std::io::Result<String> {
    // Looked at before opening, so that no device or FIFO is ever opened
    // (opening some devices has effects of its own) ...
    check_regular_file(&std::fs::metadata(path)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    // ... and again once open: the path may have been swapped in between.
    let meta = file.metadata()?;
    check_regular_file(&meta)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "the file is over the {} a policy file may have; a policy is a few lines of TOML",
                ByteSize(MAX_POLICY_FILE_SIZE)
            ),
        )
    };
    if meta.len() > MAX_POLICY_FILE_SIZE {
        return Err(too_large());
    }
    // The file can grow after the check; reading one byte past the cap
    // catches that without reading all of it.
    let mut text = String::new();
    file.take(MAX_POLICY_FILE_SIZE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_POLICY_FILE_SIZE {
        return Err(too_large());
    }
    Ok(text)
}

fn check_regular_file(meta: &std::fs::Metadata) -> std::io::Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_file_kind(&kind)
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
}

#[cfg(unix)]
fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

pub(super) fn parse_layer(text: &str, path: &Path, loader: &mut Loader) -> Result<Layer, PolicyError> {
    let identity = identity_of(path);
    if loader.stack.contains(&identity) {
        let mut chain = loader.stack.clone();
        chain.push(identity);
        return Err(PolicyError::new(PolicyErrorKind::Cycle(chain)).key("extends"));
    }
    loader.stack.push(identity);

    let file: PolicyFile = toml::from_str(text).map_err(|e| parse_error(&e, path, text))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    let at = |e: PolicyError, span: std::ops::Range<usize>| e.at(path, text, Some(span));

    let mut merged = Layer::default();
    for parent in &file.extends {
        // The stack holds this file and every file that led to it, so a
        // parent would be `stack.len()` links from the first.
        if loader.stack.len() > MAX_EXTENDS_DEPTH {
            return Err(at(
                invalid(format!(
                    "`extends` goes more than {MAX_EXTENDS_DEPTH} files deep from `{}`; merge some of the files in the chain into fewer",
                    loader.stack[0].display()
                ))
                .key("extends"),
                parent.span(),
            ));
        }
        let parent_path = base_dir.join(parent.get_ref());
        let layer = match load_layer(&parent_path, loader) {
            Err(e) if matches!(e.kind, PolicyErrorKind::Io(_)) && e.path.as_deref() == Some(&parent_path) => {
                return Err(at(
                    invalid(format!(
                        "cannot read extended policy `{}`: {}; fix the path (it is relative to this file's folder)",
                        parent_path.display(),
                        e.source_message()
                    ))
                    .key("extends"),
                    parent.span(),
                ));
            }
            other => other?,
        };
        merged = merged.overlay(layer);
    }

    let origin = Origin::File(path.to_path_buf());
    let mut own = Layer {
        files: vec![path.to_path_buf()],
        ..Layer::default()
    };
    let lim = &file.limits;
    let set = |v| Setting {
        value: v,
        origin: origin.clone(),
    };
    if let Some(f) = &lim.fuel {
        check_limits_fuel(*f.get_ref()).map_err(|e| at(e.key("limits.fuel"), f.span()))?;
        own.limits.fuel = Some(set(Some(*f.get_ref())));
    }
    if let Some(m) = &lim.memory {
        check_limits_memory(m.get_ref().0).map_err(|e| at(e.key("limits.memory"), m.span()))?;
        own.limits.memory = Some(Setting {
            value: m.get_ref().0,
            origin: origin.clone(),
        });
    }
    if let Some(t) = &lim.timeout {
        check_limits_timeout(t.get_ref().0).map_err(|e| at(e.key("limits.timeout"), t.span()))?;
        own.limits.timeout = Some(Setting {
            value: t.get_ref().0,
            origin: origin.clone(),
        });
    }
    if let Some(s) = &lim.stack {
        let v = s.get_ref().0;
        if !(4096..=Limits::MAX_STACK).contains(&v) {
            return Err(at(
                invalid(format!(
                    "limits.stack must be between 4 KiB and {}, not {}",
                    ByteSize(Limits::MAX_STACK),
                    ByteSize(v)
                ))
                .key("limits.stack"),
                s.span(),
            ));
        }
        own.limits.stack = Some(Setting {
            value: v,
            origin: origin.clone(),
        });
    }
    if let Some(o) = &lim.output {
        own.limits.output = Some(Setting {
            value: o.get_ref().0,
            origin: origin.clone(),
        });
    }
    if let Some(m) = &lim.module_size {
        if m.get_ref().0 == 0 {
            return Err(at(
                invalid("limits.module-size must be at least 1 byte").key("limits.module-size"),
                m.span(),
            ));
        }
        own.limits.module_size = Some(Setting {
            value: m.get_ref().0,
            origin: origin.clone(),
        });
    }
    if let Some(h) = &lim.handles {
        check_limits_handles(*h.get_ref()).map_err(|e| at(e.key("limits.handles"), h.span()))?;
        own.limits.handles = Some(Setting {
            value: *h.get_ref(),
            origin: origin.clone(),
        });
    }

    for d in &file.fs.dirs {
        let host = base_dir.join(d.host.get_ref());
        let grant = resolve_dir(&host, d.guest.get_ref()).map_err(|e| {
            let span = if matches!(e.kind, PolicyErrorKind::MissingDir(_)) {
                d.host.span()
            } else {
                d.guest.span()
            };
            at(e.key("fs.dirs"), span)
        })?;
        own.dirs.push(DirGrant {
            access: d.access,
            ..grant
        });
        let site = DirSite::File(path.to_path_buf(), line_of(text, d.host.span().start));
        own.dir_sites.push((site, absolute(&host)));
    }

    for (name, value) in &file.env.vars {
        check_env_name(name).map_err(|e| {
            e.at(path, text, span_of_key(text, &format!("env.vars.{name}")))
                .key("env.vars")
        })?;
        own.env_vars.insert(name.clone(), value.clone());
    }
    for name in &file.env.inherit {
        check_env_name(name.get_ref()).map_err(|e| at(e.key("env.inherit"), name.span()))?;
        own.env_inherit.push(name.get_ref().clone());
    }

    own.stdin = file.stdio.stdin.as_ref().map(|s| match s {
        InputSpec::Null => Input::Null,
        InputSpec::Inherit => Input::Inherit,
        InputSpec::File(p) => Input::File(absolute(&base_dir.join(p))),
    });
    let output = |s: &OutputSpec| match s {
        OutputSpec::Null => Output::Null,
        OutputSpec::Inherit => Output::Inherit,
        OutputSpec::File(p) => Output::File(absolute(&base_dir.join(p))),
    };
    own.stdout = file.stdio.stdout.as_ref().map(output);
    own.stderr = file.stdio.stderr.as_ref().map(output);
    if let Some(Input::File(p)) = &own.stdin
        && !p.is_file()
    {
        return Err(PolicyError::new(PolicyErrorKind::Invalid(format!(
            "stdin file `{}` does not exist; create it or fix the path (relative to this file's folder)",
            p.display()
        )))
        .at(path, text, span_of_key(text, "stdio.stdin"))
        .key("stdio.stdin"));
    }

    own.clock_mode = file.clocks.mode.as_ref().map(|m| *m.get_ref());
    if let Some(start) = &file.clocks.start {
        let t = humantime::parse_rfc3339_weak(start.get_ref()).map_err(|e| {
            at(
                invalid(format!(
                    "invalid clocks.start `{}`: {e}; write an RFC 3339 time such as \"2000-01-01T00:00:00Z\"",
                    start.get_ref()
                ))
                .key("clocks.start"),
                start.span(),
            )
        })?;
        check_clock_start(t).map_err(|e| at(e.key("clocks.start"), start.span()))?;
        own.clock_start = Some(t);
    }
    if let Some(r) = &file.clocks.resolution {
        if r.get_ref().0.is_zero() {
            return Err(at(
                invalid("clocks.resolution must be longer than zero; remove it for full resolution")
                    .key("clocks.resolution"),
                r.span(),
            ));
        }
        own.clock_resolution = Some(r.get_ref().0);
    }
    // Contradictions within one file are reported with their line here; the
    // same checks run again on the merged result in `Policy::resolve`.
    let mode = own.clock_mode.or(merged.clock_mode);
    if let (Some(ClockMode::Host) | None, Some(start)) = (mode, &file.clocks.start) {
        return Err(at(
            invalid("clocks.start only applies to mode = \"frozen\"; set mode = \"frozen\" or remove start")
                .key("clocks.start"),
            start.span(),
        ));
    }
    if let (Some(ClockMode::Frozen), Some(r)) = (mode, &file.clocks.resolution) {
        return Err(at(
            invalid(
                "clocks.resolution only applies to mode = \"host\"; frozen clocks do not tick, so remove resolution",
            )
            .key("clocks.resolution"),
            r.span(),
        ));
    }
    own.seed = file.random.seed;
    let net = &file.net;
    for (kind, entries) in [
        (NetKind::TcpConnect, &net.tcp_connect),
        (NetKind::TcpBind, &net.tcp_bind),
        (NetKind::UdpBind, &net.udp_bind),
        (NetKind::UdpSend, &net.udp_send),
    ] {
        for entry in entries {
            let rule = NetRule::parse(entry.get_ref())
                .map_err(|why| at(invalid(why).key(&format!("net.{}", kind.name())), entry.span()))?;
            own.net.rules_mut(kind).push(rule);
        }
    }
    own.dns = net.dns;
    for entry in &net.http {
        let rule = HttpRule::parse(entry.get_ref()).map_err(|why| at(invalid(why).key("net.http"), entry.span()))?;
        own.net.http.push(rule);
    }

    loader.stack.pop();
    Ok(merged.overlay(own))
}

/// A file toml or serde refused, at its line, naming the key whose value was
/// refused (a bad size, an unknown variant, a string where a number belongs).
fn parse_error(err: &toml::de::Error, path: &Path, text: &str) -> PolicyError {
    let mut error = PolicyError::new(PolicyErrorKind::Parse(reword_parse_error(err, text))).at(path, text, err.span());
    // An unknown key is named by the reworded message itself.
    if !err.message().starts_with("unknown field")
        && let Some(key) = err.span().and_then(|span| key_at(text, span.start))
    {
        error = error.key(&key);
    }
    error
}

impl PolicyError {
    fn source_message(&self) -> String {
        match &self.kind {
            PolicyErrorKind::Io(e) => e.to_string(),
            _ => self.to_string(),
        }
    }
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub(super) fn resolve_dir(host: &Path, guest: &str) -> Result<DirGrant, PolicyError> {
    if guest.is_empty() || guest.contains('\0') {
        return Err(invalid(
            "guest path must not be empty; use an absolute path such as `/data`",
        ));
    }
    let canonical = std::fs::canonicalize(host)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| PolicyError::new(PolicyErrorKind::MissingDir(absolute(host))))?;
    Ok(DirGrant {
        host: canonical,
        guest: guest.to_string(),
        access: Access::ReadOnly,
    })
}

pub(super) fn check_env_name(name: &str) -> Result<(), PolicyError> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(invalid(format!(
            "invalid environment variable name `{name}`: names must be non-empty and contain no `=` or NUL"
        )));
    }
    Ok(())
}

/// The last instant WASI can tell a guest: its wall clock counts nanoseconds
/// since 1970 in a `u64`, which runs out in July 2554.
pub(super) fn check_clock_start(start: SystemTime) -> Result<(), PolicyError> {
    let since_epoch = start.duration_since(SystemTime::UNIX_EPOCH).ok();
    if since_epoch.is_none_or(|d| d.as_nanos() > u128::from(u64::MAX)) {
        return Err(invalid(format!(
            "clocks.start `{}` is outside what a WASI clock can show (1970-01-01T00:00:00Z to {}); choose an instant in that range",
            humantime::format_rfc3339(start),
            humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::MAX))
        )));
    }
    Ok(())
}

pub(super) fn check_limits_fuel(fuel: u64) -> Result<(), PolicyError> {
    if fuel == 0 {
        return Err(invalid(
            "limits.fuel must be at least 1; remove it to turn metering off",
        ));
    }
    Ok(())
}

pub(super) fn check_limits_memory(bytes: u64) -> Result<(), PolicyError> {
    if bytes == 0 || bytes > Limits::MAX_MEMORY {
        return Err(invalid(format!(
            "limits.memory must be between 1 byte and {}, not {}",
            ByteSize(Limits::MAX_MEMORY),
            ByteSize(bytes)
        )));
    }
    Ok(())
}

pub(super) fn check_limits_handles(handles: u64) -> Result<(), PolicyError> {
    if !(Limits::MIN_HANDLES..=Limits::MAX_HANDLES).contains(&handles) {
        return Err(invalid(format!(
            "limits.handles must be between {} (stdio and a few directories) and {}, not {handles}",
            Limits::MIN_HANDLES,
            Limits::MAX_HANDLES
        )));
    }
    Ok(())
}

pub(super) fn check_limits_timeout(timeout: Duration) -> Result<(), PolicyError> {
    if timeout.is_zero() || timeout > Limits::MAX_TIMEOUT {
        return Err(invalid(format!(
            "limits.timeout must be longer than zero and at most {}, such as \"10s\"",
            humantime::format_duration(Limits::MAX_TIMEOUT)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, PolicyError};
    use super::*;

    fn err(text: &str) -> PolicyError {
        Policy::from_toml(text, std::env::temp_dir()).expect_err("policy should be rejected")
    }

    // See: #9
    #[test]
    fn r9_every_value_error_names_its_key() {
        // (policy, key the message must name, line)
        let cases = [
            ("[limits]\nmemory = \"lots\"", "limits.memory", 2),
            ("[limits]\nmemory = true", "limits.memory", 2),
            ("[limits]\nstack = \"1 parsec\"", "limits.stack", 2),
            ("[limits]\noutput = -1", "limits.output", 2),
            ("[limits]\nmodule-size = \"big\"", "limits.module-size", 2),
            ("[limits]\ntimeout = \"forever\"", "limits.timeout", 2),
            ("[limits]\nfuel = -3", "limits.fuel", 2),
            ("[limits]\nfuel = \"many\"", "limits.fuel", 2),
            ("[limits]\nhandles = 1.5", "limits.handles", 2),
            ("[clocks]\nmode = \"paused\"", "clocks.mode", 2),
            ("[clocks]\nmode = \"host\"\nresolution = 5", "clocks.resolution", 3),
            ("[clocks]\nmode = \"frozen\"\nstart = 2000", "clocks.start", 3),
            ("[clocks]\nmode = \"frozen\"\nstart = \"soon\"", "clocks.start", 3),
            ("[random]\nseed = \"abc\"", "random.seed", 2),
            ("[random]\nseed = -1", "random.seed", 2),
            ("[stdio]\nstdin = \"pipe\"", "stdio.stdin", 2),
            ("[stdio]\nstdout = { path = \"x\" }", "stdio.stdout", 2),
            ("[stdio]\nstderr = 2", "stdio.stderr", 2),
            ("[stdio]\nstdin = { file = \"no-such-file\" }", "stdio.stdin", 2),
            ("[net]\ntcp-connect = [\"nonsense\"]", "net.tcp-connect", 2),
            ("[net]\nudp-send = [5]", "net.udp-send", 2),
            ("[net]\ntcp-bind = [\"127.0.0.1:99999\"]", "net.tcp-bind", 2),
            ("[net]\nudp-bind = [\"127.0.0.1\"]", "net.udp-bind", 2),
            ("[net]\ndns = \"yes\"", "net.dns", 2),
            ("[net]\nhttp = [\"ftp://x\"]", "net.http", 2),
            ("[env]\ninherit = [\"A=B\"]", "env.inherit", 2),
            ("[env]\nvars = { PATH = 5 }", "env.vars", 2),
            ("[env]\nvars = { \"A=B\" = \"x\" }", "env.vars", 2),
            (
                "[[fs.dirs]]\nhost = \".\"\nguest = \"/d\"\naccess = \"rw\"",
                "fs.dirs.access",
                4,
            ),
            (
                "[[fs.dirs]]\nhost = \"no-such-dir\"\nguest = \"/d\"\naccess = \"read-only\"",
                "fs.dirs",
                2,
            ),
            ("extends = [5]", "extends", 1),
        ];
        for (text, key, line) in cases {
            let e = err(text);
            let msg = e.to_string();
            assert!(msg.contains(key), "{text:?}: {msg}");
            assert_eq!(e.line(), Some(line), "{text:?}: {msg}");
        }
    }

    #[test]
    fn key_at_finds_the_innermost_key_of_a_value() {
        let text = "[limits]\nmemory = \"lots\"\n[[fs.dirs]]\nhost = \"a\"\n\n[[fs.dirs]]\naccess = \"x\"\n[net]\nhttp = [\"a\", 5]\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("\"lots\"").as_deref(), Some("limits.memory"));
        assert_eq!(at("\"x\"").as_deref(), Some("fs.dirs.access"));
        assert_eq!(at("5]").as_deref(), Some("net.http"));
        assert_eq!(key_at("not = [toml", 3), None);
    }

    // See: #9
    #[test]
    fn r9_clock_start_must_fit_a_wasi_clock() {
        let frozen = |start: &str| {
            Policy::from_toml(
                &format!("[clocks]\nmode = \"frozen\"\nstart = \"{start}\""),
                std::env::temp_dir(),
            )
        };
        assert!(frozen("1970-01-01T00:00:00Z").is_ok());
        assert!(frozen("2554-07-21T23:34:33Z").is_ok(), "the last second WASI can show");
        let e = frozen("2554-07-21T23:34:34Z").unwrap_err();
        assert_eq!((e.key_name(), e.line()), (Some("clocks.start"), Some(3)), "{e}");
        assert!(e.to_string().contains("2554-07-21T23:34:33"), "{e}");
        assert!(frozen("9999-12-31T23:59:59Z").is_err());
    }

    // See: #9
    #[test]
    fn r9_a_file_reached_twice_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[limits]\nfuel = 7\n").unwrap();
        std::fs::write(
            dir.path().join("mid.toml"),
            "extends = [\"base.toml\", \"base.toml\"]\n",
        )
        .unwrap();
        let top = dir.path().join("top.toml");
        std::fs::write(&top, "extends = [\"mid.toml\", \"./mid.toml\", \"base.toml\"]\n").unwrap();
        let mut loader = Loader::default();
        let layer = load_layer(&top, &mut loader).unwrap();
        assert_eq!(loader.reads, 3, "top, mid and base, each once");
        assert!(loader.stack.is_empty());
        assert_eq!(layer.limits.fuel.map(|f| f.value), Some(Some(7)));
    }

    #[test]
    fn overlay_keeps_repeated_list_entries_once_and_the_last_access_last() {
        let dir = tempfile::tempdir().unwrap();
        let grant = |access| DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/d".into(),
            access,
        };
        let layer = |access, rule: &str| Layer {
            dirs: vec![grant(access)],
            dir_sites: vec![(DirSite::Flag("--dir"), dir.path().to_path_buf())],
            net: NetGrants {
                tcp_connect: vec![NetRule::parse(rule).unwrap()],
                ..NetGrants::default()
            },
            files: vec![PathBuf::from("base.toml")],
            ..Layer::default()
        };
        let merged = layer(Access::ReadOnly, "127.0.0.1:1")
            .overlay(layer(Access::ReadWrite, "127.0.0.1:1"))
            .overlay(layer(Access::ReadOnly, "127.0.0.1:2"));
        // The repeated read-only grant moves after the read-write one, so
        // that resolving the list in order leaves the last access in force.
        assert_eq!(merged.dirs, [grant(Access::ReadWrite), grant(Access::ReadOnly)]);
        assert_eq!(merged.dirs.len(), merged.dir_sites.len());
        let entries: Vec<_> = merged.net.tcp_connect.iter().map(|r| r.entry.as_str()).collect();
        assert_eq!(entries, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(merged.files, [PathBuf::from("base.toml")]);
    }
}
