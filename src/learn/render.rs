//! The learned policy as a TOML file for a person to read and edit: every
//! value written through TOML's own quoting, every word that came from a
//! guest escaped (a comment is one line, whatever the guest named), each
//! choice explained in a comment above it.

use super::fs::{Shape, shape};
use super::{Headroom, Learner, set};
use crate::policy::{Access, ByteSize, Clocks, Input, Limits, Output, Policy, SecretSource, UnknownImports, WallMode};
use crate::term::sanitize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The whole file.
pub(super) fn policy(l: &Learner, dir: &Path) -> String {
    let mut out = String::new();
    heading(l, &mut out);
    module(l, dir, &mut out);
    limits(l, &mut out);
    fs(l, dir, &mut out);
    let copied = l.base.as_ref().or(l.merged.as_ref());
    if let Some(base) = copied {
        env(base, &mut out);
        stdio(base, dir, &mut out);
        rest(base, &mut out);
    }
    net(l, dir, &mut out);
    refused(l, &mut out);
    out
}

/// A TOML string.
fn q(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A TOML array of strings.
fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(q).collect();
    format!("[{}]", items.join(", "))
}

/// One comment line of untrusted words: escaped, so nothing a guest named
/// can end the comment and start a line of policy.
fn comment(out: &mut String, text: &str) {
    let line = sanitize(text).replace(['\n', '\r'], " ");
    let _ = writeln!(out, "# {}", crate::term::truncate(&line, MAX_COMMENT_BYTES));
}

/// Longest comment line: what a guest names is escaped into it, and the
/// file must stay within what a policy file may be (1 MiB).
const MAX_COMMENT_BYTES: usize = 400;

/// Most paths one learned `[[net.http]]` entry lists.
const MAX_LEARNED_PATHS: usize = 256;

/// A host path as the file writes it: relative to the file's folder when
/// below it, else absolute. `None` for a path that is not UTF-8.
fn host(path: &Path, dir: &Path) -> Option<String> {
    let shown = match path.strip_prefix(dir) {
        Ok(rel) if rel.as_os_str().is_empty() => Path::new("."),
        Ok(rel) => rel,
        Err(_) => path,
    };
    shown.to_str().map(str::to_string)
}

fn heading(l: &Learner, out: &mut String) {
    comment(out, &format!("Learned by wasmcell from {} run(s):", l.runs.len()));
    for run in &l.runs {
        comment(
            out,
            &format!("  {} ({}, exit code {})", run.name, run.status, run.exit_code),
        );
    }
    if l.merged.is_some() {
        comment(out, "and from the earlier learned policy merged into it.");
    }
    comment(
        out,
        "Every grant below was used by those runs; what they did not use is not granted.",
    );
    comment(out, "It is a policy like any other: read it, edit it, check it.");
    if l.unproven > 0 {
        comment(
            out,
            &format!(
                "{} reported use(s) that the run's own policy does not allow were not learned.",
                l.unproven
            ),
        );
    }
    if l.dropped > 0 {
        comment(
            out,
            &format!(
                "The runs made {} more distinct use(s) than are kept; they were not learned.",
                l.dropped
            ),
        );
    }
    out.push('\n');
}

fn module(l: &Learner, dir: &Path, out: &mut String) {
    let keys = l.base.as_ref().and_then(|b| b.module_signed_by());
    if l.modules.is_empty() && keys.is_none() {
        return;
    }
    out.push_str("[module]\n");
    if !l.modules.is_empty() {
        comment(
            out,
            "The module(s) learned from: any other is refused before it is compiled.",
        );
        let _ = writeln!(out, "sha256 = {}", list(l.modules.iter().map(String::as_str)));
    } else {
        comment(out, "Precompiled code records no digest: no module pin was learned.");
    }
    if let Some(keys) = keys {
        // A key path that is not UTF-8 is written lossily, so that the file
        // fails to load rather than ask for fewer signers.
        let paths: Vec<String> = keys
            .value
            .iter()
            .map(|k| host(k.path(), dir).unwrap_or_else(|| k.path().to_string_lossy().into_owned()))
            .collect();
        let _ = writeln!(out, "signed-by = {}", list(paths.iter().map(String::as_str)));
    }
    out.push('\n');
}

fn limits(l: &Learner, out: &mut String) {
    let m = &l.measured;
    out.push_str("[limits]\n");
    let mib = 1u64 << 20;
    let memory = m
        .peak_memory
        .saturating_mul(Headroom::MEMORY)
        .div_ceil(mib)
        .max(1)
        .saturating_mul(mib);
    let memory = clamp(l, "memory", memory.min(Limits::MAX_MEMORY));
    comment(
        out,
        &format!(
            "peak memory measured: {} (x{}, rounded up to a MiB)",
            ByteSize(m.peak_memory),
            Headroom::MEMORY
        ),
    );
    let _ = writeln!(out, "memory = {}", q(&ByteSize(memory).to_string()));
    let secs = (m.elapsed.as_secs_f64() * f64::from(Headroom::TIMEOUT)).ceil();
    let timeout = Duration::from_secs_f64(secs.min(Limits::MAX_TIMEOUT.as_secs_f64()))
        .max(Headroom::TIMEOUT_FLOOR)
        .as_nanos() as u64;
    let timeout = clamp(l, "timeout", timeout);
    comment(
        out,
        &format!(
            "longest run measured: {} ms (x{}, rounded up to a second, at least {}s)",
            m.elapsed.as_millis(),
            Headroom::TIMEOUT,
            Headroom::TIMEOUT_FLOOR.as_secs()
        ),
    );
    let _ = writeln!(
        out,
        "timeout = {}",
        q(&humantime::format_duration(Duration::from_nanos(timeout)).to_string())
    );
    counted_limits(l, out);
    out.push('\n');
}

/// `fuel` and `http-requests` from what was counted, and the limits the
/// policy set that are not learned.
fn counted_limits(l: &Learner, out: &mut String) {
    let m = &l.measured;
    match m.fuel.filter(|_| !m.unmetered) {
        Some(fuel) => {
            let learned = clamp(l, "fuel", fuel.saturating_mul(Headroom::FUEL).max(1));
            comment(out, &format!("most fuel measured: {fuel} units (x{})", Headroom::FUEL));
            let _ = writeln!(out, "fuel = {learned}");
        }
        None => match l.base.as_ref().and_then(|p| limit_of(p, "fuel")) {
            Some(fuel) => {
                comment(
                    out,
                    "fuel was not measured in every run learned from: as the policy learned under set it",
                );
                let _ = writeln!(out, "fuel = {fuel}");
            }
            None => comment(
                out,
                "fuel was not metered in every run learned from (set limits.fuel to learn it)",
            ),
        },
    }
    if !l.net.http.is_empty() {
        let learned = m
            .http_requests
            .saturating_mul(Headroom::HTTP_REQUESTS)
            .max(Headroom::HTTP_REQUESTS_FLOOR);
        let learned = clamp(l, "http-requests", learned);
        comment(
            out,
            &format!(
                "most HTTP requests in a run: {} (x{}, at least {})",
                m.http_requests,
                Headroom::HTTP_REQUESTS,
                Headroom::HTTP_REQUESTS_FLOOR
            ),
        );
        let _ = writeln!(out, "http-requests = {learned}");
    }
    let learned = ["memory", "timeout", "fuel", "http-requests"];
    if let Some(base) = l.base.as_ref().or(l.merged.as_ref()) {
        for (key, value) in base.limits().set_values() {
            if let (false, Some(value)) = (learned.contains(&key), value) {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
    }
}

/// The learned limit `key` at `value`, at least what an earlier learned
/// policy allowed and at most what the policy learned under allowed:
/// learning never grants more than was granted.
fn clamp(l: &Learner, key: &str, value: u64) -> u64 {
    let floor = l.merged.as_ref().and_then(|p| limit_of(p, key));
    let cap = l.base.as_ref().and_then(|p| limit_of(p, key));
    value.max(floor.unwrap_or(0)).min(cap.unwrap_or(u64::MAX))
}

/// A learned limit's value in `policy`, in bytes, nanoseconds or units.
fn limit_of(policy: &Policy, key: &str) -> Option<u64> {
    let limits = policy.limits();
    match key {
        "memory" => Some(limits.memory.value),
        "timeout" => Some(limits.timeout.value.as_nanos().min(u128::from(u64::MAX)) as u64),
        "fuel" => limits.fuel.value,
        "http-requests" => Some(limits.http_requests.value),
        _ => None,
    }
}

fn fs(l: &Learner, dir: &Path, out: &mut String) {
    if let Some(cwd) = l.base.as_ref().and_then(|b| b.cwd()) {
        let _ = writeln!(out, "[fs]\ncwd = {}\n", q(cwd));
    }
    let mut grants: Vec<_> = l.grants.iter().collect();
    grants.sort_by(|a, b| a.guest.cmp(&b.guest));
    for g in grants {
        if !g.needed() {
            comment(
                out,
                &format!("{}: granted while learning, never used: not granted", g.guest),
            );
            out.push('\n');
            continue;
        }
        if !g.host_unchanged() {
            comment(
                out,
                &format!("{}: its host path is now reached through a link: not granted", g.guest),
            );
            out.push('\n');
            continue;
        }
        let nested = l.grants.iter().any(|o| {
            !std::ptr::eq(o, g)
                && o.needed()
                && (overlaps(&o.guest, &g.guest) || o.host.starts_with(&g.host) || g.host.starts_with(&o.host))
        });
        let (shape, why) = shape(g, nested);
        comment(out, &format!("{}:{why}", g.guest));
        match shape {
            Shape::Files(files) => {
                for (path, guest, access) in files {
                    let Some(path) = host(&path, dir) else {
                        comment(
                            out,
                            &format!("{guest}: its host path is not UTF-8 and cannot be written here"),
                        );
                        continue;
                    };
                    let _ = writeln!(
                        out,
                        "[[fs.files]]\nhost = {}\nguest = {}\naccess = {}\n",
                        q(&path),
                        q(&guest),
                        q(access_name(access))
                    );
                }
            }
            Shape::Folder { access, deny } => folder(g, access, &deny, dir, out),
        }
    }
}

/// Whether one guest path lies inside the other (or is it).
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |a: &str, b: &str| {
        let b = b.trim_end_matches('/');
        a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
    };
    inside(a, b) || inside(b, a)
}

fn folder(g: &super::fs::GrantUse, access: Access, learned: &[String], dir: &Path, out: &mut String) {
    let Some(path) = host(&g.host, dir) else {
        comment(
            out,
            &format!("{}: its host path is not UTF-8 and cannot be written here", g.guest),
        );
        return;
    };
    let _ = writeln!(
        out,
        "[[fs.dirs]]\nhost = {}\nguest = {}\naccess = {}",
        q(&path),
        q(&g.guest),
        q(access_name(access))
    );
    let rules = &g.rules;
    let deny: Vec<&str> = rules
        .deny
        .iter()
        .map(|d| d.as_str())
        .chain(learned.iter().map(String::as_str))
        .collect();
    if !deny.is_empty() {
        let _ = writeln!(out, "deny = {}", list(deny));
    }
    if access == Access::ReadWrite && !rules.read_only.is_empty() {
        let _ = writeln!(out, "read-only = {}", list(rules.read_only.iter().map(|r| r.as_str())));
    }
    if rules.hide || !learned.is_empty() {
        out.push_str("hide = true\n");
    }
    if access == Access::ReadWrite {
        if let Some(quota) = rules.quota {
            let _ = writeln!(out, "quota = {}", q(&ByteSize(quota).to_string()));
        }
        if let Some(max) = rules.max_files {
            let _ = writeln!(out, "max-files = {max}");
        }
    }
    out.push('\n');
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

fn env(base: &Policy, out: &mut String) {
    if base.env_vars().is_empty() && base.env_inherit().is_empty() {
        return;
    }
    out.push_str("[env]\n");
    comment(
        out,
        "As given: a guest is handed its whole environment when it starts, so which variables it reads cannot be learned.",
    );
    if !base.env_inherit().is_empty() {
        let _ = writeln!(out, "inherit = {}", list(base.env_inherit().iter().map(String::as_str)));
    }
    if !base.env_vars().is_empty() {
        out.push_str("[env.vars]\n");
        for (name, value) in base.env_vars() {
            let _ = writeln!(out, "{} = {}", q(name), q(value));
        }
    }
    out.push('\n');
}

fn stdio(base: &Policy, dir: &Path, out: &mut String) {
    let file = |p: &Path| host(p, dir).map(|p| format!("{{ file = {} }}", q(&p)));
    let stdin = match base.stdin() {
        Input::Null => None,
        Input::Inherit => Some(q("inherit")),
        Input::File(p) => file(p),
    };
    let output = |o: &Output| match o {
        Output::Inherit => None,
        Output::Null => Some(q("null")),
        Output::File(p) => file(p),
    };
    let lines: Vec<String> = [
        ("stdin", stdin),
        ("stdout", output(base.stdout())),
        ("stderr", output(base.stderr())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
    .collect();
    if !lines.is_empty() {
        let _ = writeln!(out, "[stdio]\n{}\n", lines.join("\n"));
    }
}

/// Clocks, randomness, Wasm proposals and the wall, as the policy had them.
fn rest(base: &Policy, out: &mut String) {
    match base.clocks() {
        Clocks::Host { resolution: None } => {}
        Clocks::Host { resolution: Some(r) } => {
            let r = humantime::format_duration(*r).to_string();
            let _ = writeln!(out, "[clocks]\nmode = \"host\"\nresolution = {}\n", q(&r));
        }
        Clocks::Frozen { start } => {
            let start = humantime::format_rfc3339(*start).to_string();
            let _ = writeln!(out, "[clocks]\nmode = \"frozen\"\nstart = {}\n", q(&start));
        }
    }
    if let Some(seed) = base.seed() {
        let _ = writeln!(out, "[random]\nseed = {seed}\n");
    }
    let proposals: Vec<String> = base.proposal_settings().iter().map(|p| p.value.to_string()).collect();
    let trap = base.unknown_imports().value == UnknownImports::Trap;
    if !proposals.is_empty() || trap {
        out.push_str("[wasm]\n");
        if !proposals.is_empty() {
            let _ = writeln!(out, "proposals = {}", list(proposals.iter().map(String::as_str)));
        }
        if trap {
            out.push_str("unknown-imports = \"trap\"\n");
        }
        out.push('\n');
    }
    let wall = base.wall();
    let mode = set(&wall.mode).map(|m| match m {
        WallMode::Require => "require",
        WallMode::Auto => "auto",
        WallMode::Off => "off",
    });
    let abi = wall.landlock_abi.as_ref().map(|s| s.value);
    if mode.is_some() || abi.is_some() {
        out.push_str("[wall]\n");
        if let Some(mode) = mode {
            let _ = writeln!(out, "mode = {}", q(mode));
        }
        if let Some(abi) = abi {
            let _ = writeln!(out, "landlock-abi = {abi}");
        }
        out.push('\n');
    }
}

fn net(l: &Learner, dir: &Path, out: &mut String) {
    let n = &l.net;
    if !n.any() {
        return;
    }
    out.push_str("[net]\n");
    let lists = [
        ("tcp-connect", n.tcp_connect.iter().cloned().collect::<Vec<_>>()),
        ("tcp-bind", n.bind_entries()),
        ("udp-bind", n.udp_bind.iter().cloned().collect()),
        ("udp-send", n.udp_send.iter().cloned().collect()),
    ];
    for (key, entries) in lists {
        if !entries.is_empty() {
            let _ = writeln!(out, "{key} = {}", list(entries.iter().map(String::as_str)));
        }
    }
    if n.dns_granted {
        let names: Vec<&str> = n.dns.iter().take(8).map(String::as_str).collect();
        if !names.is_empty() {
            comment(out, &format!("names looked up: {}", names.join(", ")));
        }
        out.push_str("dns = true\n");
    }
    let base = l.base.as_ref().or(l.merged.as_ref());
    if n.https_used
        && let Some(base) = base
        && !base.net().ca_certificates.is_empty()
    {
        let cas: Vec<String> = base
            .net()
            .ca_certificates
            .iter()
            .filter_map(|c| host(&c.path, dir))
            .collect();
        let _ = writeln!(out, "ca-certificates = {}", list(cas.iter().map(String::as_str)));
    }
    out.push('\n');
    secrets(l, dir, out);
    for (key, used) in &n.http {
        http_entry(key, used, out);
    }
}

fn secrets(l: &Learner, dir: &Path, out: &mut String) {
    let names: std::collections::BTreeSet<&str> = l
        .net
        .http
        .keys()
        .flat_map(|k| k.secrets.iter().map(String::as_str))
        .collect();
    if names.is_empty() {
        return;
    }
    out.push_str("[net.secrets]\n");
    for name in names {
        match l.net.secrets.get(name) {
            Some(SecretSource::Env(var)) => {
                let _ = writeln!(out, "{} = {{ env = {} }}", q(name), q(var));
            }
            Some(SecretSource::File(path)) => {
                if let Some(path) = host(path, dir) {
                    let _ = writeln!(out, "{} = {{ file = {} }}", q(name), q(&path));
                }
            }
            None => {}
        }
    }
    out.push('\n');
}

fn http_entry(key: &super::net::HttpKey, used: &super::net::HttpUse, out: &mut String) {
    comment(
        out,
        &format!("{}: {} distinct request(s) seen", key.origin, used.requests),
    );
    if used.paths.len() > MAX_LEARNED_PATHS && !used.any_path {
        let more = used.paths.len() - MAX_LEARNED_PATHS;
        comment(
            out,
            &format!("{more} more paths were requested than an entry lists: not granted"),
        );
    }
    for path in used.skipped.iter().take(8) {
        comment(out, &format!("not learned, not a plain path: {path}"));
    }
    if used.paths.is_empty() && !used.any_path {
        comment(out, "no path of it could be learned: not granted");
        out.push('\n');
        return;
    }
    let _ = writeln!(out, "[[net.http]]\norigin = {}", q(&key.origin));
    if !used.any_method {
        let _ = writeln!(out, "methods = {}", list(used.methods.iter().map(String::as_str)));
    }
    if !used.any_path {
        let paths = used.paths.iter().take(MAX_LEARNED_PATHS).map(String::as_str);
        let _ = writeln!(out, "paths = {}", list(paths));
    }
    if !key.deny_paths.is_empty() {
        let _ = writeln!(out, "deny-paths = {}", list(key.deny_paths.iter().map(String::as_str)));
    }
    if !key.headers.is_empty() {
        let headers: Vec<String> = key
            .headers
            .iter()
            .map(|(k, v)| format!("{} = {}", q(k), q(v)))
            .collect();
        let _ = writeln!(out, "headers = {{ {} }}", headers.join(", "));
    }
    if !key.secrets.is_empty() {
        let _ = writeln!(out, "secrets = {}", list(key.secrets.iter().map(String::as_str)));
    }
    if key.placeholder_in_query {
        out.push_str("placeholder-in = [\"headers\", \"query\"]\n");
    }
    out.push('\n');
}

fn refused(l: &Learner, out: &mut String) {
    if l.refused.is_empty() {
        return;
    }
    comment(
        out,
        "Refused while learning, so not granted (learn under wider grants if the program needs them):",
    );
    for (kind, target, rule) in l.refused() {
        comment(out, &format!("  {kind} {target}: {rule}"));
    }
}
