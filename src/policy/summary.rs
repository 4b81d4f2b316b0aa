//! What `wasmcell check` prints: everything a [`Policy`] grants, defaults
//! included, in plain words. Presentation, kept out of the model.

use super::{Access, Clocks, Input, NetKind, Origin, Output, Policy, UnknownImports};
use std::fmt::Write as _;

/// Describes in plain words everything `policy` grants, including the
/// defaults that apply, as `wasmcell check` prints it.
///
/// # Example
///
/// ```
/// let policy = wasmcell::Policy::deny_all();
/// let text = wasmcell::policy::summarize(&policy);
/// assert!(text.contains("no directories: the guest sees no files at all"));
/// ```
pub fn summarize(policy: &Policy) -> String {
    let mut out = String::new();
    describe_source(&mut out, policy);
    describe_module(&mut out, policy);
    describe_fs(&mut out, policy);
    describe_env(&mut out, policy);
    describe_stdio(&mut out, policy);
    describe_clocks_and_random(&mut out, policy);
    describe_net(&mut out, policy);
    describe_wasm(&mut out, policy);
    describe_limits(&mut out, policy);
    out
}

fn line(out: &mut String, s: impl AsRef<str>) {
    out.push_str(s.as_ref());
    out.push('\n');
}

fn describe_source(out: &mut String, policy: &Policy) {
    match policy.source() {
        Some(p) => line(out, format!("policy {}", p.display())),
        None => line(out, "policy (built in: deny all)"),
    }
    if !policy.extends().is_empty() {
        let names: Vec<_> = policy.extends().iter().map(|p| p.display().to_string()).collect();
        line(out, format!("  extends {}", names.join(", ")));
    }
    line(
        out,
        format!(
            "  sha256 {} (its digest: every report of a run under it carries it)",
            policy.sha256()
        ),
    );
}

fn describe_module(out: &mut String, policy: &Policy) {
    match policy.module_sha256() {
        None => line(
            out,
            "module: any (no module.sha256): the grants go to whatever module is run",
        ),
        Some(pins) => {
            line(
                out,
                format!(
                    "module: only a module whose SHA-256 is listed ({}); any other is refused before it is compiled",
                    origin_words(&pins.origin)
                ),
            );
            for digest in &pins.value {
                line(out, format!("  sha256 {digest}"));
            }
        }
    }
    if let Some(keys) = policy.module_signed_by() {
        line(
            out,
            format!(
                "  signed by one of these keys ({}); an unsigned module, or one no key verifies, is refused before it is compiled",
                origin_words(&keys.origin)
            ),
        );
        for key in &keys.value {
            line(
                out,
                format!("  key {} (sha256 {})", key.path().display(), key.fingerprint()),
            );
        }
    }
}

fn describe_fs(out: &mut String, policy: &Policy) {
    line(out, "filesystem:");
    if policy.dirs().is_empty() {
        line(out, "  no directories: the guest sees no files at all");
    }
    for d in policy.dirs() {
        if !d.rules.files.is_empty() {
            for f in &d.rules.files {
                let what = match f.access {
                    Access::ReadOnly => "read-only: the guest can read it, and change nothing",
                    Access::ReadWrite => "read-write: the guest can read and change it, not remove or rename it",
                };
                let guest = format!("{}/{}", d.guest.trim_end_matches('/'), f.name);
                line(
                    out,
                    format!("  host file {} -> {guest} ({what})", d.host.join(&f.host).display()),
                );
            }
            line(
                out,
                format!("    nothing else of {} is visible in {}", d.host.display(), d.guest),
            );
            continue;
        }
        let what = match d.access {
            Access::ReadOnly => "read-only: the guest can list and read, and change nothing",
            Access::ReadWrite => "read-write: the guest can create, change and delete files inside",
        };
        line(out, format!("  {} -> host {} ({what})", d.guest, d.host.display()));
        describe_rules(out, &d.rules);
    }
    if let Some(cwd) = policy.cwd() {
        line(
            out,
            format!(
                "  working directory: {cwd} (told to components as initial-cwd, and to every guest as PWD; the program changes to it itself)"
            ),
        );
    }
}

fn describe_rules(out: &mut String, rules: &super::FsRules) {
    let list = |globs: &[super::PathGlob]| {
        globs
            .iter()
            .map(|g| format!("`{}`", g.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !rules.deny.is_empty() {
        let how = if rules.hide {
            "cannot be read, listed, created, changed, renamed or linked, and look absent (hide = true)"
        } else {
            "cannot be read, created, changed, renamed or linked (refused with \"permission denied\"; their names still show in listings)"
        };
        line(out, format!("    denied: {}: {how}", list(&rules.deny)));
    }
    if !rules.read_only.is_empty() {
        line(
            out,
            format!(
                "    read-only: {}: can be read, not changed, removed, renamed or linked",
                list(&rules.read_only)
            ),
        );
    }
    if let Some(bytes) = rules.quota {
        let what =
            "here (writes, appends, resizing; removing gives nothing back); past it writes fail as on a full disk";
        line(
            out,
            format!("    quota: the run may add at most {} {what}", super::ByteSize(bytes)),
        );
    }
    if let Some(files) = rules.max_files {
        line(
            out,
            format!("    max-files: at most {files} new files, directories and links"),
        );
    }
    if !rules.is_empty() {
        line(
            out,
            "    rules hold for paths below them, through links and `..`; a folder a rule reaches into cannot be renamed",
        );
    }
}

fn describe_env(out: &mut String, policy: &Policy) {
    line(out, "environment:");
    if policy.env_vars().is_empty() && policy.env_inherit().is_empty() {
        line(out, "  empty: no variables are visible");
    }
    for (k, v) in policy.env_vars() {
        line(out, format!("  {k}={v}"));
    }
    for k in policy.env_inherit() {
        let now = match std::env::var_os(k) {
            Some(_) => "set on this host now",
            None => "not set on this host now",
        };
        line(out, format!("  {k} copied from the host when set there ({now})"));
    }
}

fn describe_stdio(out: &mut String, policy: &Policy) {
    let input = match policy.stdin() {
        Input::Null => "closed (reads end-of-file)".to_string(),
        Input::Inherit => "the host's stdin".to_string(),
        Input::File(p) => format!("read from {}", p.display()),
    };
    let output = |o: &Output, name: &str| match o {
        Output::Null => "discarded".to_string(),
        Output::Inherit => format!("the host's {name}"),
        Output::File(p) => format!("written to {} (truncated at start)", p.display()),
    };
    line(out, "stdio:");
    line(out, format!("  stdin: {input}"));
    line(out, format!("  stdout: {}", output(policy.stdout(), "stdout")));
    line(out, format!("  stderr: {}", output(policy.stderr(), "stderr")));
}

fn describe_clocks_and_random(out: &mut String, policy: &Policy) {
    line(out, "clocks:");
    match policy.clocks() {
        Clocks::Host { resolution: None } => line(out, "  the host's clocks at full resolution"),
        Clocks::Host { resolution: Some(r) } => line(
            out,
            format!(
                "  the host's clocks, rounded down to {}",
                humantime::format_duration(*r)
            ),
        ),
        Clocks::Frozen { start } => line(
            out,
            format!(
                "  frozen: wall clock stands at {}, monotonic clock at 0",
                humantime::format_rfc3339(*start)
            ),
        ),
    }
    line(out, "randomness:");
    match policy.seed() {
        Some(seed) => line(
            out,
            format!("  deterministic, seeded with {seed} (not secret: never use it for keys)"),
        ),
        None => line(out, "  host entropy"),
    }
}

fn describe_net(out: &mut String, policy: &Policy) {
    line(out, "network (components only: core modules have no socket API):");
    let n = policy.net();
    if !n.any_tcp() && !n.any_udp() {
        line(out, "  no sockets");
    }
    for (kind, what) in [
        (NetKind::TcpConnect, "may open TCP connections to"),
        (NetKind::TcpBind, "may bind and listen for TCP connections on"),
        (NetKind::UdpBind, "may bind UDP sockets on"),
        (NetKind::UdpSend, "may send UDP datagrams to"),
    ] {
        for rule in n.rules(kind) {
            line(out, format!("  {what} {rule}"));
        }
    }
    line(
        out,
        if n.dns {
            "  name lookups allowed"
        } else {
            "  no name lookups"
        },
    );
    if n.http.is_empty() && n.http_entries.is_empty() {
        line(out, "  no outgoing HTTP requests");
    }
    for rule in &n.http {
        line(out, format!("  may make HTTP requests to {rule}"));
    }
    for ca in &n.ca_certificates {
        let count = match ca.len() {
            1 => "1 CA".to_string(),
            n => format!("{n} CAs"),
        };
        line(out, format!("  https also trusts {count} from {}", ca.path.display()));
    }
    for entry in &n.http_entries {
        line(out, format!("  may make HTTP requests to {entry}"));
    }
    for (name, source) in &n.secrets {
        // The source, never the value: the value is read when a run starts.
        line(
            out,
            format!("  secret {name}: read from the {source} when a run starts"),
        );
    }
}

fn describe_wasm(out: &mut String, policy: &Policy) {
    line(out, "wasm proposals:");
    let asked = policy.proposals();
    if asked.is_empty() {
        line(
            out,
            "  only those every engine has (what wasm32-wasip1/wasm32-wasip2 guests use, and extended-const); exceptions, GC, tail calls and the rest are off",
        );
    }
    for setting in policy.proposal_settings() {
        let p = setting.value;
        let from = origin_words(&setting.origin);
        if p.on_by_default() {
            line(
                out,
                format!("  {p} on in every engine (also asked for, {from}): {}", p.title()),
            );
        } else {
            line(out, format!("  {p} on ({from}): {}; risk: {}", p.title(), p.risk()));
        }
    }
    for p in asked.with_implied().iter().filter(|p| !asked.contains(*p)) {
        let by: Vec<_> = asked
            .iter()
            .filter(|q| q.implies().contains(p))
            .map(|q| q.name())
            .collect();
        let by = by.join(", ");
        line(
            out,
            format!("  {p} on (needed by {by}): {}; risk: {}", p.title(), p.risk()),
        );
    }
    line(out, "  threads and shared memory: off (they cannot be turned on)");
    let unknown = policy.unknown_imports();
    let from = origin_words(&unknown.origin);
    line(
        out,
        match unknown.value {
            UnknownImports::Refuse => format!(
                "unknown imports: refused ({from}): a guest importing anything the WASI linkers do not provide is refused before it is compiled"
            ),
            UnknownImports::Trap => format!(
                "unknown imports: trap ({from}): a guest importing a function the WASI linkers do not provide runs, and ends as a trap naming it if it calls it"
            ),
        },
    );
}

fn origin_words(origin: &Origin) -> String {
    match origin {
        Origin::Default => "default".to_string(),
        Origin::File { path, .. } => format!("from {}", path.display()),
        Origin::Host(words) => format!("from {words}"),
        Origin::Flag(f) => format!("from {f}"),
        Origin::Api => "set through the API".to_string(),
    }
}

fn describe_limits(out: &mut String, policy: &Policy) {
    line(out, "limits:");
    for (name, value, origin) in policy.limits().described() {
        let _ = writeln!(out, "  {name}: {value} ({})", origin_words(origin));
    }
}
