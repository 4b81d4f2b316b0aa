//! Reading policy files: parsing each one, resolving its relative paths
//! against its own folder, following `extends`, and merging the layers.

use super::check::{
    check_clock_resolution, check_clock_start, check_clocks, check_env_name, check_guest_path, check_rules,
    check_stdin_file, check_wasm_proposal,
};
use super::cwd::{CwdLayer, check_cwd};
use super::error::{PolicyError, PolicyErrorKind, invalid};
use super::error::{key_at, line_of, reword_parse_error, span_of_key};
use super::file::{
    ClockMode, ClocksFile, DirFile, EnvFile, FsFile, InputSpec, ModuleFile, NetFile, OutputSpec, PolicyFile, StdioFile,
    WallFile, WasmFile,
};
use super::file::{HttpItem, HttpRuleFile};
use super::http::{self, HttpEntry, HttpPathGlob, InjectedHeader, PlaceholderIn, SecretSource};
use super::module::{PinLayer, check_pins, read_keys};
use super::net::{HttpRule, NetGrants, NetKind, NetRule};
use super::settings::LimitsLayer;
use super::tls::CaFile;
use super::wall::{WallMode, check_landlock_abi};
use super::{
    Access, ByteSize, DirGrant, DirSite, FileRule, FsRules, Input, Origin, Output, PathGlob, Proposal, Setting,
    UnknownImports,
};
use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use toml::Spanned;

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
#[derive(Debug, Default, Clone)]
pub(super) struct Layer {
    pub(super) limits: LimitsLayer,
    pub(super) dirs: Vec<DirGrant>,
    /// Where each of `dirs` was granted, and its host path as written, in the same order.
    pub(super) dir_sites: Vec<(DirSite, PathBuf)>,
    pub(super) env_vars: BTreeMap<String, String>,
    pub(super) env_inherit: Vec<String>,
    pub(super) stdin: Option<Setting<Input>>,
    pub(super) stdout: Option<Setting<Output>>,
    pub(super) stderr: Option<Setting<Output>>,
    pub(super) clock_mode: Option<Setting<ClockMode>>,
    pub(super) clock_start: Option<Setting<SystemTime>>,
    pub(super) clock_resolution: Option<Setting<Duration>>,
    pub(super) seed: Option<u64>,
    pub(super) net: NetGrants,
    pub(super) dns: Option<bool>,
    /// `wasm.proposals`, each with where it was first asked for.
    pub(super) proposals: Vec<Setting<Proposal>>,
    pub(super) unknown_imports: Option<Setting<UnknownImports>>,
    pub(super) cwd: Option<CwdLayer>,
    pub(super) wall_mode: Option<Setting<WallMode>>,
    pub(super) landlock_abi: Option<Setting<u32>>,
    /// `module.sha256`: narrowed, never widened, by each layer over it.
    pub(super) module: PinLayer,
    pub(super) files: Vec<PathBuf>,
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
    pub(super) fn overlay(mut self, top: Layer) -> Layer {
        macro_rules! win {
            ($($f:ident).+) => { if top.$($f).+.is_some() { self.$($f).+ = top.$($f).+; } };
        }
        self.limits.overlay(top.limits);
        win!(stdin);
        win!(stdout);
        win!(stderr);
        win!(clock_mode);
        win!(clock_start);
        win!(clock_resolution);
        win!(seed);
        win!(dns);
        win!(cwd);
        win!(wall_mode);
        win!(unknown_imports);
        win!(landlock_abi);
        self.module.overlay(top.module);
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
        // Entries are a union, as origins are; a secret named again by a
        // later layer takes that layer's source, as `env.vars` do.
        append_new(&mut self.net.http_entries, top_net.http_entries);
        self.net.secrets.extend(top_net.secrets);
        append_new(&mut self.net.ca_certificates, top_net.ca_certificates);
        // A grant repeated (from a shared base, say) is kept once, with the
        // later access and the place that set it. One whose access changed
        // moves to the end, so that it is checked against every grant before
        // it and a collision is reported where the access was changed.
        for (dir, site) in top.dirs.into_iter().zip(top.dir_sites) {
            // A file grant's folder and a directory grant never merge: the
            // policy refuses the pair (see `Policy::push_dir`).
            let kind = |d: &DirGrant| d.rules.files.is_empty();
            match self
                .dirs
                .iter()
                .position(|d| d.guest == dir.guest && d.host == dir.host && kind(d) == kind(&dir))
            {
                Some(i) if self.dirs[i].access == dir.access => {
                    self.dirs[i].rules.merge(dir.rules);
                    self.dir_sites[i] = site;
                }
                Some(i) => {
                    let mut dir = dir;
                    dir.rules.merge(self.dirs.remove(i).rules);
                    self.dir_sites.remove(i);
                    self.dirs.push(dir);
                    self.dir_sites.push(site);
                }
                None => {
                    self.dirs.push(dir);
                    self.dir_sites.push(site);
                }
            }
        }
        self.env_vars.extend(top.env_vars);
        append_new(&mut self.env_inherit, top.env_inherit);
        append_new(&mut self.files, top.files);
        // Proposals are a union over the layers: a base that needs
        // exceptions still needs them under a file that adds tail calls.
        for p in top.proposals {
            if !self.proposals.iter().any(|q| q.value == p.value) {
                self.proposals.push(p);
            }
        }
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
    read_bounded(path, Links::Follow)
}

/// Reads a host file a policy names (`net.ca-certificates`) as
/// [`read_policy_file`] reads a policy: a regular file (a link to one is
/// followed), opened without blocking, of at most `max` bytes; past it the
/// error says "the file is over the {max} {hint}".
pub(super) fn read_host_file(path: &Path, max: u64, hint: &str) -> std::io::Result<Vec<u8>> {
    read_bounded_bytes(path, Links::Follow, max, hint)
}

/// Whether a policy file's own name may be a symbolic link.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    Follow,
    Refuse,
}

fn read_bounded(path: &Path, links: Links) -> std::io::Result<String> {
    let bytes = read_bounded_bytes(
        path,
        links,
        MAX_POLICY_FILE_SIZE,
        "a policy file may have; a policy is a few lines of TOML",
    )?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

/// Reads a regular file of at most `max` bytes that a policy names (a policy
/// file, a public key), never opening a device or FIFO and never blocking;
/// `what` ends the message for a file over `max` ("a key file may have").
pub(super) fn read_bounded_bytes(path: &Path, links: Links, max: u64, what: &str) -> std::io::Result<Vec<u8>> {
    // Looked at before opening, so that no device or FIFO is ever opened
    // (opening some devices has effects of its own) ...
    let before = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    check_regular_file(&before)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let no_follow = if links == Links::Refuse { libc::O_NOFOLLOW } else { 0 };
        options.custom_flags(libc::O_NONBLOCK | no_follow);
    }
    let file = options.open(path)?;
    // ... and again once open: the path may have been swapped in between.
    let meta = file.metadata()?;
    check_regular_file(&meta)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("the file is over the {} {what}", ByteSize(max)),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    // The file can grow after the check; reading one byte past the cap
    // catches that without reading all of it.
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads a policy that must stand alone: see [`super::read_standalone`].
pub(super) fn read_standalone(path: &Path) -> Result<String, PolicyError> {
    let located = |mut err: PolicyError| {
        err.path = Some(path.to_path_buf());
        err
    };
    let text = read_bounded(path, Links::Refuse).map_err(|e| located(PolicyError::new(PolicyErrorKind::Io(e))))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| parse_error(&e, path, &text))?;
    if let Some(first) = file.extends.first() {
        let err = invalid(
            "a policy that stands alone cannot extend other files (they would be resolved where it is used, not where it was read); merge them into it",
        );
        return Err(err.key("extends").at(path, &text, Some(first.span())));
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

/// One policy file being parsed: where it is, its text (for lines), the
/// folder its relative paths start from, and the origin its values get.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    base_dir: PathBuf,
    origin: Origin,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a str) -> Source<'a> {
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        Source {
            path,
            text,
            base_dir,
            origin: Origin::file(path),
        }
    }

    /// `e` about `key`, at the line of `span`.
    fn at(&self, e: PolicyError, key: &str, span: Option<Range<usize>>) -> PolicyError {
        e.key(key).at(self.path, self.text, span)
    }

    /// `value`, set by this file.
    fn set<T>(&self, value: T) -> Setting<T> {
        Setting {
            value,
            origin: self.origin.clone(),
        }
    }

    /// A host path as written in this file, made absolute from its folder.
    fn host_path(&self, written: impl AsRef<Path>) -> PathBuf {
        absolute(&self.base_dir.join(written))
    }
}

/// Parses one file and everything it extends, each value checked as it is
/// read so that an error names its line; `Policy::resolve` then checks what
/// only the merged result can show.
pub(super) fn parse_layer(text: &str, path: &Path, loader: &mut Loader) -> Result<Layer, PolicyError> {
    let identity = identity_of(path);
    if loader.stack.contains(&identity) {
        let mut chain = loader.stack.clone();
        chain.push(identity);
        return Err(PolicyError::new(PolicyErrorKind::Cycle(chain)).key("extends"));
    }
    loader.stack.push(identity);

    let file: PolicyFile = toml::from_str(text).map_err(|e| parse_error(&e, path, text))?;
    let src = Source::new(path, text);
    let merged = parse_extends(&src, &file.extends, loader)?;
    let mut own = Layer {
        files: vec![path.to_path_buf()],
        limits: LimitsLayer::parse(&file.limits, path, text)?,
        seed: file.random.seed,
        ..Layer::default()
    };
    parse_fs(&src, &file.fs, &mut own)?;
    parse_env(&src, &file.env, &mut own)?;
    parse_stdio(&src, &file.stdio, &mut own)?;
    parse_clocks(
        &src,
        &file.clocks,
        merged.clock_mode.as_ref().map(|m| m.value),
        &mut own,
    )?;
    parse_net(&src, &file.net, &mut own)?;
    parse_wasm(&src, &file.wasm, &mut own)?;
    parse_wall(&src, &file.wall, &mut own)?;
    parse_module(&src, &file.module, &mut own)?;
    loader.stack.pop();
    Ok(merged.overlay(own))
}

/// `extends`: every base file, loaded (once per resolution) and merged in order.
fn parse_extends(src: &Source<'_>, extends: &[Spanned<String>], loader: &mut Loader) -> Result<Layer, PolicyError> {
    let mut merged = Layer::default();
    for parent in extends {
        // The stack holds this file and every file that led to it, so a
        // parent would be `stack.len()` links from the first.
        if loader.stack.len() > MAX_EXTENDS_DEPTH {
            return Err(src.at(
                invalid(format!(
                    "`extends` goes more than {MAX_EXTENDS_DEPTH} files deep from `{}`; merge some of the files in the chain into fewer",
                    loader.stack[0].display()
                )),
                "extends",
                Some(parent.span()),
            ));
        }
        let parent_path = src.base_dir.join(parent.get_ref());
        let layer = match load_layer(&parent_path, loader) {
            Err(e) if matches!(e.kind, PolicyErrorKind::Io(_)) && e.path.as_deref() == Some(&parent_path) => {
                return Err(src.at(
                    invalid(format!(
                        "cannot read extended policy `{}`: {}; fix the path (it is relative to this file's folder)",
                        parent_path.display(),
                        e.source_message()
                    )),
                    "extends",
                    Some(parent.span()),
                ));
            }
            other => other?,
        };
        merged = merged.overlay(layer);
    }
    Ok(merged)
}

/// `[fs]`: each host directory and file must exist now; `cwd` is checked
/// against the grants once the layers are merged.
fn parse_fs(src: &Source<'_>, fs: &FsFile, own: &mut Layer) -> Result<(), PolicyError> {
    for d in &fs.dirs {
        let host = src.base_dir.join(d.host.get_ref());
        let grant = resolve_dir(&host, d.guest.get_ref()).map_err(|e| {
            let span = if matches!(e.kind, PolicyErrorKind::MissingDir(_)) {
                d.host.span()
            } else {
                d.guest.span()
            };
            src.at(e, "fs.dirs", Some(span))
        })?;
        own.dirs.push(DirGrant {
            access: d.access,
            rules: parse_rules(src, d)?,
            ..grant
        });
        let site = DirSite::File(src.path.to_path_buf(), line_of(src.text, d.host.span().start));
        own.dir_sites.push((site, absolute(&host)));
    }
    for f in &fs.files {
        let host = src.base_dir.join(f.host.get_ref());
        let grant = resolve_file(&host, f.guest.get_ref(), f.access).map_err(|(key, e)| {
            let span = match key {
                FileKey::Host => f.host.span(),
                FileKey::Guest => f.guest.span(),
            };
            src.at(e, "fs.files", Some(span))
        })?;
        own.dirs.push(grant);
        let site = DirSite::File(src.path.to_path_buf(), line_of(src.text, f.host.span().start));
        own.dir_sites.push((site, absolute(&host)));
    }
    if let Some(cwd) = &fs.cwd {
        let path = check_cwd(cwd.get_ref()).map_err(|e| src.at(e, "fs.cwd", Some(cwd.span())))?;
        own.cwd = Some(CwdLayer {
            path: src.set(path),
            line: Some(line_of(src.text, cwd.span().start)),
        });
    }
    Ok(())
}

/// Which key of a `[[fs.files]]` entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKey {
    Host,
    Guest,
}

/// A granted file: the grant of its host folder at its guest folder, in
/// which only that file is visible, under the guest path's name (see
/// [`FsRules::files`]).
pub(super) fn resolve_file(host: &Path, guest: &str, access: Access) -> Result<DirGrant, (FileKey, PolicyError)> {
    let file_name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    let (guest_dir, guest_name) = match guest.rsplit_once('/') {
        Some((dir, name)) if guest.starts_with('/') && guest[1..].split('/').all(|c| !matches!(c, "" | "." | "..")) => {
            (if dir.is_empty() { "/" } else { dir }, name)
        }
        _ => {
            return Err((
                FileKey::Guest,
                invalid(format!(
                    "fs.files guest `{guest}` must be an absolute path naming a file, such as `/etc/app.conf`"
                )),
            ));
        }
    };
    let canonical = std::fs::canonicalize(host)
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            let e = invalid(format!(
                "fs.files host `{}` is not an existing regular file; create it or fix the path",
                absolute(host).display()
            ));
            (FileKey::Host, e)
        })?;
    // The guest names the file in UTF-8 only; a host name that is not
    // cannot be handed on.
    let host_name = file_name(&canonical).ok_or_else(|| {
        let e = invalid(format!(
            "fs.files host `{}` has a file name that is not UTF-8; rename the file or grant its folder",
            canonical.display()
        ));
        (FileKey::Host, e)
    })?;
    let parent = canonical.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok(DirGrant {
        host: parent,
        guest: guest_dir.to_string(),
        access,
        rules: FsRules {
            files: vec![FileRule {
                name: guest_name.to_string(),
                host: host_name,
                access,
            }],
            hide: true,
            ..FsRules::default()
        },
    })
}

/// `[env]`.
fn parse_env(src: &Source<'_>, env: &EnvFile, own: &mut Layer) -> Result<(), PolicyError> {
    for (name, value) in &env.vars {
        check_env_name(name).map_err(|e| src.at(e, "env.vars", span_of_key(src.text, &format!("env.vars.{name}"))))?;
        own.env_vars.insert(name.clone(), value.clone());
    }
    for name in &env.inherit {
        check_env_name(name.get_ref()).map_err(|e| src.at(e, "env.inherit", Some(name.span())))?;
        own.env_inherit.push(name.get_ref().clone());
    }
    Ok(())
}

/// `[stdio]`: a stdin file must exist now; output files are created at run time.
fn parse_stdio(src: &Source<'_>, stdio: &StdioFile, own: &mut Layer) -> Result<(), PolicyError> {
    own.stdin = stdio.stdin.as_ref().map(|s| {
        src.set(match s {
            InputSpec::Null => Input::Null,
            InputSpec::Inherit => Input::Inherit,
            InputSpec::File(p) => Input::File(src.host_path(p)),
        })
    });
    let output = |s: &OutputSpec| {
        src.set(match s {
            OutputSpec::Null => Output::Null,
            OutputSpec::Inherit => Output::Inherit,
            OutputSpec::File(p) => Output::File(src.host_path(p)),
        })
    };
    own.stdout = stdio.stdout.as_ref().map(output);
    own.stderr = stdio.stderr.as_ref().map(output);
    if let Some(Setting {
        value: Input::File(p), ..
    }) = &own.stdin
    {
        check_stdin_file(p).map_err(|e| src.at(e, "stdio.stdin", span_of_key(src.text, "stdio.stdin")))?;
    }
    Ok(())
}

/// `[clocks]`. `base_mode` is the mode the files this one extends set, so
/// that a contradiction with it is reported at this file's line.
fn parse_clocks(
    src: &Source<'_>,
    clocks: &ClocksFile,
    base_mode: Option<ClockMode>,
    own: &mut Layer,
) -> Result<(), PolicyError> {
    own.clock_mode = clocks.mode.as_ref().map(|m| src.set(*m.get_ref()));
    if let Some(start) = &clocks.start {
        let t = humantime::parse_rfc3339_weak(start.get_ref()).map_err(|e| {
            let why = format!(
                "invalid clocks.start `{}`: {e}; write an RFC 3339 time such as \"2000-01-01T00:00:00Z\"",
                start.get_ref().escape_debug()
            );
            src.at(invalid(why), "clocks.start", Some(start.span()))
        })?;
        check_clock_start(t).map_err(|e| src.at(e, "clocks.start", Some(start.span())))?;
        own.clock_start = Some(src.set(t));
    }
    if let Some(r) = &clocks.resolution {
        check_clock_resolution(r.get_ref().0).map_err(|e| src.at(e, "clocks.resolution", Some(r.span())))?;
        own.clock_resolution = Some(src.set(r.get_ref().0));
    }
    let mode = own.clock_mode.as_ref().map(|m| m.value).or(base_mode);
    check_clocks(mode, clocks.start.is_some(), clocks.resolution.is_some()).map_err(|e| {
        let (key, span) = match e.key_name() {
            Some("clocks.start") => ("clocks.start", clocks.start.as_ref().map(Spanned::span)),
            _ => ("clocks.resolution", clocks.resolution.as_ref().map(Spanned::span)),
        };
        src.at(e, key, span)
    })
}

/// `[net]`.
fn parse_net(src: &Source<'_>, net: &NetFile, own: &mut Layer) -> Result<(), PolicyError> {
    for (kind, entries) in [
        (NetKind::TcpConnect, &net.tcp_connect),
        (NetKind::TcpBind, &net.tcp_bind),
        (NetKind::UdpBind, &net.udp_bind),
        (NetKind::UdpSend, &net.udp_send),
    ] {
        for entry in entries {
            let rule = NetRule::parse(entry.get_ref())
                .map_err(|why| src.at(invalid(why), &format!("net.{}", kind.name()), Some(entry.span())))?;
            own.net.rules_mut(kind).push(rule);
        }
    }
    own.dns = net.dns;
    for item in &net.http {
        let at = |why: String| src.at(invalid(why), "net.http", Some(item.span()));
        match item.get_ref() {
            HttpItem::Origin(origin) => own.net.http.push(HttpRule::parse(origin).map_err(at)?),
            HttpItem::Rule(rule) => own.net.http_entries.push(parse_http_entry(rule).map_err(at)?),
        }
    }
    for (name, secret) in &net.secrets {
        let key = format!("net.secrets.{name}");
        let at = |why: String| src.at(invalid(why), &key, Some(secret.span()));
        http::check_secret_name(name).map_err(at)?;
        let source = match (&secret.get_ref().env, &secret.get_ref().file) {
            (Some(var), None) if check_env_name(var).is_ok() => SecretSource::Env(var.clone()),
            (None, Some(file)) if !file.is_empty() => SecretSource::File(src.host_path(file)),
            _ => {
                return Err(at(format!(
                    "secret `{name}` needs exactly one of `env = \"VARIABLE\"` (a host environment variable) and `file = \"path\"` (a host file readable by its owner only)"
                )));
            }
        };
        own.net.secrets.insert(name.clone(), source);
    }
    for entry in &net.ca_certificates {
        let ca = CaFile::load(&src.host_path(entry.get_ref()))
            .map_err(|why| src.at(invalid(why), "net.ca-certificates", Some(entry.span())))?;
        own.net.ca_certificates.push(ca);
    }
    Ok(())
}

/// One `[[net.http]]` table, checked; the secrets it names are checked
/// against `[net.secrets]` once the layers are merged.
fn parse_http_entry(file: &HttpRuleFile) -> Result<HttpEntry, String> {
    let origin = HttpRule::parse(&file.origin)?;
    let within = |why: String| format!("[[net.http]] entry for `{}`: {why}", file.origin.escape_debug());
    let mut methods = Vec::new();
    for method in file.methods.iter().flatten() {
        methods.push(http::check_method(method).map_err(within)?);
    }
    if file.methods.as_ref().is_some_and(Vec::is_empty) {
        return Err(within(
            "`methods = []` admits nothing; leave `methods` out to admit any method".into(),
        ));
    }
    if file.paths.as_ref().is_some_and(Vec::is_empty) {
        return Err(within(
            "`paths = []` admits nothing; leave `paths` out to admit any path".into(),
        ));
    }
    let globs = |list: &[String]| -> Result<Vec<HttpPathGlob>, String> {
        list.iter().map(|p| HttpPathGlob::new(p).map_err(within)).collect()
    };
    let paths = globs(file.paths.as_deref().unwrap_or_default())?;
    let deny_paths = globs(&file.deny_paths)?;
    let mut headers = Vec::new();
    let mut secrets = Vec::new();
    for (name, value) in &file.headers {
        let header = InjectedHeader::parse(name, value).map_err(within)?;
        secrets.extend(http::secrets_in(&header.value).map(str::to_string));
        headers.push(header);
    }
    for name in &file.secrets {
        http::check_secret_name(name).map_err(within)?;
        secrets.push(name.clone());
    }
    secrets.sort();
    secrets.dedup();
    let mut placeholder_in = PlaceholderIn::default();
    for place in &file.placeholder_in {
        match place.as_str() {
            "headers" => {}
            "query" => placeholder_in.query = true,
            "body" => {
                return Err(within(
                    "placeholders are never replaced in a body (it is streamed after the request is decided, under the guest's Content-Length); send the token in a header".into(),
                ));
            }
            other => {
                return Err(within(format!(
                    "placeholder-in `{}` is not `headers` or `query`",
                    other.escape_debug()
                )));
            }
        }
    }
    Ok(HttpEntry {
        origin,
        methods,
        paths,
        deny_paths,
        headers,
        secrets,
        placeholder_in,
    })
}

/// `[wasm]`.
fn parse_wasm(src: &Source<'_>, wasm: &WasmFile, own: &mut Layer) -> Result<(), PolicyError> {
    for name in &wasm.proposals {
        let p = check_wasm_proposal(name.get_ref()).map_err(|e| src.at(e, "wasm.proposals", Some(name.span())))?;
        own.proposals.push(src.set(p));
    }
    if let Some(mode) = &wasm.unknown_imports {
        own.unknown_imports = Some(src.set(*mode.get_ref()));
    }
    Ok(())
}

/// `[module]`: the digests, with the line they are on (a layer that widens
/// them is refused there).
fn parse_module(src: &Source<'_>, module: &ModuleFile, own: &mut Layer) -> Result<(), PolicyError> {
    if let Some(written) = &module.sha256 {
        let pins =
            check_pins(written.get_ref().iter()).map_err(|e| src.at(e, "module.sha256", Some(written.span())))?;
        own.module.pins = Some(Setting {
            value: pins,
            origin: Origin::File {
                path: src.path.to_path_buf(),
                line: Some(line_of(src.text, written.span().start)),
            },
        });
    }
    if let Some(written) = &module.signed_by {
        let keys = read_keys(written.get_ref().iter().map(|p| src.host_path(p)))
            .map_err(|e| src.at(e, "module.signed-by", Some(written.span())))?;
        own.module.signers = Some(Setting {
            value: keys,
            origin: Origin::File {
                path: src.path.to_path_buf(),
                line: Some(line_of(src.text, written.span().start)),
            },
        });
    }
    Ok(())
}

/// `[wall]`.
fn parse_wall(src: &Source<'_>, wall: &WallFile, own: &mut Layer) -> Result<(), PolicyError> {
    if let Some(mode) = &wall.mode {
        own.wall_mode = Some(src.set(*mode.get_ref()));
    }
    if let Some(abi) = &wall.landlock_abi {
        check_landlock_abi(*abi.get_ref()).map_err(|e| src.at(e, "wall.landlock-abi", Some(abi.span())))?;
        own.landlock_abi = Some(src.set(*abi.get_ref()));
    }
    Ok(())
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

/// The `deny`, `read-only` and `hide` keys of one `[[fs.dirs]]` entry.
fn parse_rules(src: &Source<'_>, d: &DirFile) -> Result<FsRules, PolicyError> {
    let globs = |list: &[Spanned<String>], key: &str| {
        list.iter()
            .map(|p| PathGlob::new(p.get_ref()).map_err(|e| src.at(e, key, Some(p.span()))))
            .collect::<Result<Vec<_>, _>>()
    };
    let rules = FsRules {
        deny: globs(&d.deny, "fs.dirs.deny")?,
        read_only: globs(&d.read_only, "fs.dirs.read-only")?,
        hide: d.hide,
        quota: d.quota.as_ref().map(|q| q.get_ref().0),
        max_files: d.max_files.as_ref().map(|m| *m.get_ref()),
        files: Vec::new(),
    };
    check_rules(&rules, d.access).map_err(|e| {
        let span = d
            .quota
            .as_ref()
            .map(Spanned::span)
            .or(d.max_files.as_ref().map(Spanned::span));
        let key = e.key_name().unwrap_or("fs.dirs").to_string();
        src.at(e, &key, span.or(Some(d.guest.span())))
    })?;
    Ok(rules)
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A granted directory: `host` canonicalized (it must be an existing
/// directory now), at guest path `guest`; read-only until the caller says.
pub(super) fn resolve_dir(host: &Path, guest: &str) -> Result<DirGrant, PolicyError> {
    check_guest_path(guest)?;
    let canonical = std::fs::canonicalize(host)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| PolicyError::new(PolicyErrorKind::MissingDir(absolute(host))))?;
    Ok(DirGrant {
        host: canonical,
        guest: guest.to_string(),
        access: Access::ReadOnly,
        rules: FsRules::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, PolicyError};
    use super::*;

    fn err(text: &str) -> PolicyError {
        Policy::from_toml(text, std::env::temp_dir()).expect_err("policy should be rejected")
    }

    #[test]
    fn a_standalone_policy_is_one_plain_file_that_extends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.toml");
        std::fs::write(&plain, "[limits]\nfuel = 5\n").unwrap();
        assert_eq!(super::super::read_standalone(&plain).unwrap(), "[limits]\nfuel = 5\n");

        // A link to that same file is refused, not followed.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        let refused = super::super::read_standalone(&link).unwrap_err();
        assert!(matches!(refused.kind(), PolicyErrorKind::Io(_)), "{refused}");
        assert_eq!(refused.path(), Some(link.as_path()));

        // A FIFO is refused before it is opened: nothing blocks on a writer.
        let fifo = dir.path().join("fifo.toml");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            super::super::read_standalone(&fifo).unwrap_err().kind(),
            PolicyErrorKind::Io(_)
        ));

        // `extends` is refused by its key and line, and so is text that is no policy.
        let extending = dir.path().join("ext.toml");
        std::fs::write(&extending, "# node policy\nextends = [\"plain.toml\"]\n").unwrap();
        let refused = super::super::read_standalone(&extending).unwrap_err();
        assert_eq!(
            (refused.key_name(), refused.line()),
            (Some("extends"), Some(2)),
            "{refused}"
        );
        let garbage = dir.path().join("garbage.toml");
        std::fs::write(&garbage, "[limits]\nfuel = \"many\"\n").unwrap();
        assert!(super::super::read_standalone(&garbage).is_err());
    }

    // See: #9
    #[test]
    fn every_value_error_names_its_key() {
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
            ("[wasm]\nproposals = [\"gc\", \"threads\"]", "wasm.proposals", 2),
            ("[wasm]\nproposals = \"gc\"", "wasm.proposals", 2),
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
    fn clock_start_must_fit_a_wasi_clock() {
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
    fn a_file_reached_twice_is_read_once() {
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
    fn overlay_keeps_repeated_list_entries_once_and_the_last_access() {
        let dir = tempfile::tempdir().unwrap();
        let grant = |access| DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/d".into(),
            access,
            rules: Default::default(),
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
        assert_eq!(merged.dirs, [grant(Access::ReadOnly)]);
        assert_eq!(merged.dirs.len(), merged.dir_sites.len());
        let entries: Vec<_> = merged.net.tcp_connect.iter().map(|r| r.entry.as_str()).collect();
        assert_eq!(entries, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(merged.files, [PathBuf::from("base.toml")]);
    }

    #[test]
    fn http_entries_and_secrets_are_refused_where_written() {
        let entry = |extra: &str| format!("[net]\n[[net.http]]\norigin = \"http://127.0.0.1:80\"\n{extra}\n");
        let secret = |source: &str| format!("[net.secrets]\ngh = {source}\n");
        let cases = [
            (entry("methods = [\"get\"]"), "net.http", "in capitals"),
            (entry("methods = []"), "net.http", "admits nothing"),
            (entry("paths = []"), "net.http", "admits nothing"),
            (entry("paths = [\"/a/../b\"]"), "net.http", "`..` segment"),
            (entry("deny-paths = [\"admin\"]"), "net.http", "leading `/`"),
            (
                entry("placeholder-in = [\"body\"]"),
                "net.http",
                "never replaced in a body",
            ),
            (entry("headers = { Host = \"x\" }"), "net.http", "set by the host"),
            (
                entry("headers = { A = \"${secret.nope}\" }"),
                "net.http",
                "does not declare",
            ),
            (entry("secrets = [\"nope\"]"), "net.http", "does not declare"),
            (entry("path = [\"/\"]"), "net.http", "unknown key `path`"),
            (secret("{ env = \"A\", file = \"b\" }"), "net.secrets.gh", "exactly one"),
            (secret("{ }"), "net.secrets.gh", "exactly one"),
            (
                format!("{}[env.vars]\nT = \"${{secret.gh}}\"\n", secret("{ env = \"A\" }")),
                "env.vars.T",
                "placeholder",
            ),
            (
                "[env.vars]\nT = \"${placeholder.gh}\"\n".to_string(),
                "env.vars.T",
                "does not declare",
            ),
            (
                format!("{}[env]\ninherit = [\"A\"]\n", secret("{ env = \"A\" }")),
                "net.secrets.gh",
                "env.inherit",
            ),
        ];
        for (text, key, says) in cases {
            let msg = err(&text).to_string();
            assert!(msg.contains(key) && msg.contains(says), "{text:?}: {msg}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "x").unwrap();
        let stdin = format!("{}[stdio]\nstdin = {{ file = \"t\" }}\n", secret("{ file = \"t\" }"));
        let msg = Policy::from_toml(&stdin, dir.path()).unwrap_err().to_string();
        assert!(msg.contains("also stdio.stdin"), "{msg}");
    }

    #[test]
    fn http_entries_add_up_over_extends_and_a_later_secret_wins() {
        let dir = tempfile::tempdir().unwrap();
        // Origins and tables in one array.
        let base = "[net]\nhttp = [\"http://127.0.0.1:1\", { origin = \"http://127.0.0.1:2\", methods = [\"GET\"], secrets = [\"gh\"] }]\n[net.secrets]\ngh = { env = \"BASE\" }\n";
        std::fs::write(dir.path().join("base.toml"), base).unwrap();
        let top = "extends = [\"base.toml\"]\n[net.secrets]\ngh = { env = \"TOP\" }\n\n[[net.http]]\norigin = \"http://127.0.0.1:3\"\ndeny-paths = [\"/admin/**\"]\n";
        std::fs::write(dir.path().join("top.toml"), top).unwrap();
        let policy = Policy::from_file(dir.path().join("top.toml")).unwrap();
        let net = policy.net();
        let origins: Vec<String> = net.http_entries.iter().map(|e| e.origin.to_string()).collect();
        assert_eq!(origins, ["http://127.0.0.1:2", "http://127.0.0.1:3"]);
        assert_eq!(net.http.len(), 1);
        assert_eq!(net.secrets["gh"], super::super::SecretSource::Env("TOP".into()));
        // The base's entry keeps its rules under the extending file.
        assert!(net.decide_request(("http", "127.0.0.1", 2), "POST", "/").is_err());
        assert!(net.decide_request(("http", "127.0.0.1", 3), "GET", "/admin/x").is_err());
    }
}
