//! Reading policy files: parsing each one, resolving its relative paths
//! against its own folder, following `extends`, and merging the layers.

use super::error::{PolicyError, PolicyErrorKind, invalid};
use super::error::{line_of, reword_parse_error};
use super::file::{ClockMode, InputSpec, OutputSpec, PolicyFile};
use super::net::{HttpRule, NetGrants, NetKind, NetRule};
use super::{Access, ByteSize, DirGrant, DirSite, Input, Limits, Origin, Output, Setting};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The partially merged contents of one file and everything it extends.
#[derive(Default)]
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

#[derive(Default)]
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
    fn overlay(mut self, mut top: Layer) -> Layer {
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
        for kind in [
            NetKind::TcpConnect,
            NetKind::TcpBind,
            NetKind::UdpBind,
            NetKind::UdpSend,
        ] {
            let extra = std::mem::take(top.net.rules_mut(kind));
            self.net.rules_mut(kind).extend(extra);
        }
        self.net.http.append(&mut top.net.http);
        self.dirs.extend(top.dirs);
        self.dir_sites.extend(top.dir_sites);
        self.env_vars.extend(top.env_vars);
        for name in top.env_inherit {
            if !self.env_inherit.contains(&name) {
                self.env_inherit.push(name);
            }
        }
        self.files.extend(top.files);
        self
    }
}

pub(super) fn load_layer(path: &Path, stack: &mut Vec<PathBuf>) -> Result<Layer, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut err = PolicyError::new(PolicyErrorKind::Io(e));
        err.path = Some(path.to_path_buf());
        err
    })?;
    parse_layer(&text, path, stack)
}

pub(super) fn parse_layer(text: &str, path: &Path, stack: &mut Vec<PathBuf>) -> Result<Layer, PolicyError> {
    let identity = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&identity) {
        let mut chain = stack.clone();
        chain.push(identity);
        return Err(PolicyError::new(PolicyErrorKind::Cycle(chain)).key("extends"));
    }
    stack.push(identity);

    let file: PolicyFile = toml::from_str(text)
        .map_err(|e| PolicyError::new(PolicyErrorKind::Parse(reword_parse_error(&e, text))).at(path, text, e.span()))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    let at = |e: PolicyError, span: std::ops::Range<usize>| e.at(path, text, Some(span));

    let mut merged = Layer::default();
    for parent in &file.extends {
        let parent_path = base_dir.join(parent.get_ref());
        let layer = match load_layer(&parent_path, stack) {
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
        check_env_name(name).map_err(|e| e.at(path, text, None).key("env.vars"))?;
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
        .at(path, text, None)
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

    stack.pop();
    Ok(merged.overlay(own))
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
