//! What the second wall lets the run's process reach, built from a policy.

use crate::policy::{Access, HttpRule, Input, NetKind, Output, Policy, WallMode};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The files the host's own name lookups read, allowed read-only when
/// `net.dns` grants lookups (the C library reads them on every lookup).
pub const DNS_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// The most distinct ports the wall lists one by one for TCP connect or bind;
/// a policy allowing more leaves that access to the first wall alone, and the
/// report says so.
pub const MAX_WALL_PORTS: usize = 4096;

/// What a path of the plan may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WallAccess {
    /// Read files and list folders beneath it.
    Read,
    /// List this folder's names, and read nothing in it: the folder of
    /// `[[fs.files]]` grants, whose files have rules of their own.
    List,
    /// Everything a read-write grant allows beneath it: read, write, create,
    /// remove, rename and truncate.
    ReadWrite,
    /// Write and truncate this one file (a stdout or stderr file).
    WriteFile,
    /// Read, write and truncate this one file (a read-write `[[fs.files]]`
    /// grant).
    ReadWriteFile,
}

/// One path the wall lets the process reach, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WallPath {
    /// The host path (canonical when it came from a grant).
    pub path: PathBuf,
    /// What it may be used for.
    pub access: WallAccess,
    /// Why: the policy key or the runtime need, for `wasmcell check` and errors.
    pub why: String,
}

/// The TCP ports one access (connect or bind) is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Only these (empty: none).
    Only(BTreeSet<u16>),
    /// Every port: the policy allows more than [`MAX_WALL_PORTS`], so the wall
    /// does not list them and the first wall alone decides.
    Any,
}

impl Ports {
    fn from_ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> Ports {
        let mut ports = BTreeSet::new();
        for (lo, hi) in ranges {
            if usize::from(hi - lo) + 1 + ports.len() > MAX_WALL_PORTS {
                return Ports::Any;
            }
            ports.extend(lo..=hi);
        }
        Ports::Only(ports)
    }
}

/// What the second wall allows the run's process: the policy's grants with
/// their access, the files the runtime still opens after the wall is up, and
/// the network the policy grants. Built by [`WallPlan::for_policy`].
///
/// Everything the run needs from the host besides these (the module, the
/// compiled code, the preopened folders' handles, the audit file, stdin and
/// the report channel) is open before the wall goes up, so the wall allows no
/// other path at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WallPlan {
    /// `wall.mode`.
    pub mode: WallMode,
    /// `wall.landlock-abi`, when set.
    pub landlock_abi: Option<u32>,
    /// Paths the process may reach, with their access.
    pub paths: Vec<WallPath>,
    /// Whether the process may create TCP sockets (a TCP or HTTP grant).
    pub tcp: bool,
    /// Whether the process may create UDP sockets (a UDP grant, or DNS,
    /// which the host's resolver speaks over UDP).
    pub udp: bool,
    /// Ports TCP connections may go to.
    pub tcp_connect: Ports,
    /// Ports TCP sockets may bind (0 when an ephemeral bind is allowed).
    pub tcp_bind: Ports,
}

impl WallPlan {
    /// The wall for `policy`:
    /// - each `[[fs.dirs]]` grant with its access (read-only: read files and
    ///   list; read-write: everything beneath it);
    /// - each `[[fs.files]]` grant's folder listable (names only, nothing in
    ///   it readable), and the file itself with its access;
    /// - a stdin file read-only, stdout and stderr files writable;
    /// - with `net.dns`, or a `net.http` origin that names its host (the host
    ///   resolves it when it sends the request), the resolver's files
    ///   ([`DNS_FILES`]) read-only, UDP, and TCP connections to port 53;
    /// - each `[net.secrets]` file read-only (secrets are read when the run
    ///   starts);
    /// - TCP connections to the ports of `net.tcp-connect` and `net.http`,
    ///   origins and `[[net.http]]` entries alike
    ///   (80 and 443 for entries without a port), TCP binds on the ports of
    ///   `net.tcp-bind`, UDP sockets when `net.udp-bind` or `net.udp-send`
    ///   grants anything.
    pub fn for_policy(policy: &Policy) -> WallPlan {
        let mut paths = Vec::new();
        for dir in policy.dirs() {
            add_grant(&mut paths, dir);
        }
        if let Input::File(path) = policy.stdin() {
            paths.push(WallPath {
                path: path.clone(),
                access: WallAccess::Read,
                why: "stdio.stdin".into(),
            });
        }
        for (output, key) in [(policy.stdout(), "stdio.stdout"), (policy.stderr(), "stdio.stderr")] {
            if let Output::File(path) = output {
                paths.push(WallPath {
                    path: path.clone(),
                    access: WallAccess::WriteFile,
                    why: key.into(),
                });
            }
        }
        let net = policy.net();
        let mut origins = net.http.iter().chain(net.http_entries.iter().map(|e| &e.origin));
        let resolver = match (net.dns, origins.any(HttpRule::names_a_host)) {
            (true, _) => Some("net.dns (the resolver's files)"),
            (false, true) => Some("a net.http origin named by host name (the resolver's files)"),
            (false, false) => None,
        };
        if let Some(why) = resolver {
            for file in DNS_FILES {
                paths.push(WallPath {
                    path: PathBuf::from(file),
                    access: WallAccess::Read,
                    why: why.into(),
                });
            }
        }
        let mut connect: Vec<(u16, u16)> = net.rules(NetKind::TcpConnect).iter().map(|r| r.ports()).collect();
        connect.extend(net.http.iter().map(|r| r.ports()));
        connect.extend(net.http_entries.iter().map(|e| e.origin.ports()));
        // Secrets are read when the run starts, after the wall is up.
        for (name, source) in &net.secrets {
            if let crate::policy::SecretSource::File(path) = source {
                paths.push(WallPath {
                    path: path.clone(),
                    access: WallAccess::Read,
                    why: format!("net.secrets.{name}"),
                });
            }
        }
        if resolver.is_some() {
            connect.push((53, 53));
        }
        let bind: Vec<(u16, u16)> = net.rules(NetKind::TcpBind).iter().map(|r| r.ports()).collect();
        WallPlan {
            mode: policy.wall().mode.value,
            landlock_abi: policy.wall().landlock_abi.as_ref().map(|s| s.value),
            paths,
            tcp: !connect.is_empty() || !bind.is_empty(),
            udp: resolver.is_some()
                || !net.rules(NetKind::UdpBind).is_empty()
                || !net.rules(NetKind::UdpSend).is_empty(),
            tcp_connect: Ports::from_ranges(connect),
            tcp_bind: Ports::from_ranges(bind),
        }
    }

    /// Lets the process also reach `path` with `access`: for an embedding
    /// host whose runtime opens a file of its own after the wall is up.
    ///
    /// # Security
    ///
    /// Whatever is added here, a subverted runtime can reach too.
    pub fn allow_path(mut self, path: impl Into<PathBuf>, access: WallAccess, why: &str) -> WallPlan {
        self.paths.push(WallPath {
            path: path.into(),
            access,
            why: why.to_string(),
        });
        self
    }
}

impl WallPlan {
    /// What the plan allows, one item per line with two spaces before it,
    /// as `wasmcell check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.paths.is_empty() {
            out.push_str("  paths: none\n");
        }
        for p in &self.paths {
            let access = match p.access {
                WallAccess::Read => "read",
                WallAccess::List => "list",
                WallAccess::ReadWrite => "read-write",
                WallAccess::WriteFile => "write",
                WallAccess::ReadWriteFile => "read-write file",
            };
            out.push_str(&format!("  path {} ({access}): {}\n", p.path.display(), p.why));
        }
        let sockets = match (self.tcp, self.udp) {
            (false, false) => "none",
            (true, false) => "TCP over IPv4 and IPv6",
            (false, true) => "UDP over IPv4 and IPv6",
            (true, true) => "TCP and UDP over IPv4 and IPv6",
        };
        out.push_str(&format!("  sockets: {sockets}\n"));
        for (what, ports) in [("tcp connect", &self.tcp_connect), ("tcp bind", &self.tcp_bind)] {
            let list = match ports {
                Ports::Any => "any (left to the first wall)".to_string(),
                Ports::Only(set) if set.is_empty() => "none".to_string(),
                Ports::Only(set) => set.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            };
            out.push_str(&format!("  {what} ports: {list}\n"));
        }
        out
    }
}

/// A grant's paths: a folder with its access, or a `[[fs.files]]` folder
/// (listable) and each of its files with its own access.
fn add_grant(paths: &mut Vec<WallPath>, dir: &crate::policy::DirGrant) {
    let why = format!("the grant at `{}`", dir.guest);
    if dir.rules.files.is_empty() {
        let access = match dir.access {
            Access::ReadOnly => WallAccess::Read,
            Access::ReadWrite => WallAccess::ReadWrite,
        };
        paths.push(WallPath {
            path: dir.host.clone(),
            access,
            why,
        });
        return;
    }
    paths.push(WallPath {
        path: dir.host.clone(),
        access: WallAccess::List,
        why: format!("{why} (listing its names only)"),
    });
    for file in &dir.rules.files {
        let access = match file.access {
            Access::ReadOnly => WallAccess::Read,
            Access::ReadWrite => WallAccess::ReadWriteFile,
        };
        paths.push(WallPath {
            path: dir.host.join(&file.host),
            access,
            why: why.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_the_grants() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/app.conf"), "x").unwrap();
        std::fs::create_dir(tmp.path().join("ro")).unwrap();
        let text = format!(
            "[[fs.dirs]]\nhost = \"{0}/ro\"\nguest = \"/ro\"\naccess = \"read-only\"\n\
             [[fs.files]]\nhost = \"{0}/etc/app.conf\"\nguest = \"/etc/app.conf\"\naccess = \"read-write\"\n\
             [net]\ntcp-connect = [\"127.0.0.1:8080\", \"10.0.0.0/8:9000-9002\"]\ntcp-bind = [\"127.0.0.1:0\"]\n\
             http = [\"https://192.0.2.1\"]\n",
            tmp.path().display()
        );
        let policy = Policy::from_toml(&text, tmp.path()).unwrap();
        let plan = WallPlan::for_policy(&policy);
        let canon = std::fs::canonicalize(tmp.path()).unwrap();
        let find = |p: PathBuf| plan.paths.iter().find(|w| w.path == p).map(|w| w.access);
        assert_eq!(find(canon.join("ro")), Some(WallAccess::Read));
        assert_eq!(
            find(canon.join("etc")),
            Some(WallAccess::List),
            "the file grant's folder is listable only"
        );
        assert_eq!(find(canon.join("etc/app.conf")), Some(WallAccess::ReadWriteFile));
        assert!(plan.tcp && !plan.udp);
        assert_eq!(plan.tcp_connect, Ports::Only([443, 8080, 9000, 9001, 9002].into()));
        assert_eq!(plan.tcp_bind, Ports::Only([0].into()));
        assert_eq!(plan.mode, WallMode::Auto);
    }

    #[test]
    fn a_named_http_origin_brings_the_resolver_and_an_address_does_not() {
        let plan = |http: &str| {
            let text = format!("[net]\nhttp = [\"{http}\"]\n");
            WallPlan::for_policy(&Policy::from_toml(&text, ".").unwrap())
        };
        for address in ["https://192.0.2.1", "http://[::1]:8080"] {
            let plan = plan(address);
            assert!(plan.tcp && !plan.udp && plan.paths.is_empty(), "{address}");
        }
        let named = plan("https://api.example.com");
        assert!(named.tcp && named.udp);
        assert_eq!(named.tcp_connect, Ports::Only([53, 443].into()));
        assert!(
            named
                .paths
                .iter()
                .any(|p| p.path == std::path::Path::new("/etc/resolv.conf"))
        );
    }

    #[test]
    fn no_network_means_no_sockets_and_no_ports() {
        let plan = WallPlan::for_policy(&Policy::deny_all());
        assert!(!plan.tcp && !plan.udp && plan.paths.is_empty());
        assert_eq!(plan.tcp_connect, Ports::Only(BTreeSet::new()));
    }

    #[test]
    fn dns_brings_its_files_udp_and_port_53() {
        let plan = WallPlan::for_policy(&Policy::from_toml("[net]\ndns = true", ".").unwrap());
        assert!(plan.udp && plan.tcp);
        assert_eq!(plan.tcp_connect, Ports::Only([53].into()));
        assert!(
            plan.paths
                .iter()
                .any(|p| p.path == std::path::Path::new("/etc/resolv.conf"))
        );
    }

    #[test]
    fn every_port_is_left_to_the_first_wall() {
        let plan = WallPlan::for_policy(&Policy::from_toml("[net]\ntcp-connect = [\"127.0.0.1:*\"]", ".").unwrap());
        assert_eq!(plan.tcp_connect, Ports::Any);
        assert_eq!(plan.tcp_bind, Ports::Only(BTreeSet::new()));
    }
}
