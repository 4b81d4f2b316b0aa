//! Network grants: which addresses and ports a guest may connect to, bind,
//! or send datagrams to, and whether it may look up names.
//!
//! An entry is an IP (`127.0.0.1`, `[::1]`), a CIDR block (`10.1.0.0/16`,
//! `[fd00::/8]`) or a host name (`localhost`), then `:port`, `:lo-hi` or `:*`.
//! Host names are resolved when the policy is loaded and every check compares
//! IP addresses, so renaming tricks cannot widen a grant. Addresses are
//! compared after normalization: an IPv4-mapped IPv6 address is the IPv4
//! address. An unspecified address (`0.0.0.0`, `::`) is matched only by an
//! entry that names it literally, never by a CIDR block.

use super::http::{HttpEntry, RequestPath, Secrets};
use super::tls::CaFile;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// What a guest wants to do with an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetKind {
    /// Open a TCP connection to a remote address (`net.tcp-connect`).
    TcpConnect,
    /// Bind a TCP socket to a local address to listen on it (`net.tcp-bind`).
    TcpBind,
    /// Put a bound TCP socket into listening mode (checked against `net.tcp-bind`).
    TcpListen,
    /// Bind a UDP socket to a local address (`net.udp-bind`).
    UdpBind,
    /// Send datagrams to, or connect a UDP socket to, a remote address (`net.udp-send`).
    UdpSend,
}

impl NetKind {
    /// The kind as the report and the policy key spell it: `tcp-connect`, ...
    pub fn name(self) -> &'static str {
        match self {
            NetKind::TcpConnect => "tcp-connect",
            NetKind::TcpBind => "tcp-bind",
            NetKind::TcpListen => "tcp-listen",
            NetKind::UdpBind => "udp-bind",
            NetKind::UdpSend => "udp-send",
        }
    }
}

/// One `[net]` entry, parsed and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// The entry as written, for messages and `wasmcell check`.
    pub entry: String,
    hosts: Vec<HostMatch>,
    ports: (u16, u16),
    /// Whether the entry named a host, resolved when the policy was loaded.
    from_name: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostMatch {
    Ip(IpAddr),
    Cidr(IpAddr, u8),
}

impl NetRule {
    /// Parses an entry such as `10.1.0.0/16:443`, `[::1]:1000-2000` or
    /// `localhost:*`, resolving host names now.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong and what is accepted.
    pub fn parse(entry: &str) -> Result<NetRule, String> {
        let entry = entry.trim();
        let bad = |why: String| format!("invalid [net] entry `{entry}`: {why}");
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, rest) = rest
                .split_once(']')
                .ok_or_else(|| bad("`[` without a closing `]`".into()))?;
            let port = rest.strip_prefix(':').ok_or_else(|| bad(PORT_HELP.into()))?;
            (host, port)
        } else {
            entry.rsplit_once(':').ok_or_else(|| bad(PORT_HELP.into()))?
        };
        let ports = parse_ports(port).map_err(bad)?;
        let hosts = parse_host(host).map_err(bad)?;
        let from_name = !host.contains('/') && host.parse::<IpAddr>().is_err();
        Ok(NetRule {
            entry: entry.to_string(),
            hosts,
            ports,
            from_name,
        })
    }

    /// Whether this entry admits `addr`.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        let ip = normalize(addr.ip());
        if !(self.ports.0..=self.ports.1).contains(&addr.port()) {
            return false;
        }
        self.hosts.iter().any(|host| match *host {
            HostMatch::Ip(allowed) => allowed == ip,
            // A block never admits the unspecified address: that must be
            // listed literally.
            HostMatch::Cidr(_, _) if ip.is_unspecified() => false,
            HostMatch::Cidr(net, prefix) => in_block(ip, net, prefix),
        })
    }

    /// Whether this entry admits listening on `bound`, the address and port
    /// a socket is bound to: the entry admits that address and port, or the
    /// socket's bind asked for port 0 (`ephemeral`) and the entry admits port 0
    /// on that address (the port the socket was given is then the OS's choice).
    pub fn admits_listen(&self, bound: SocketAddr, ephemeral: bool) -> bool {
        self.matches(bound) || (ephemeral && self.matches(SocketAddr::new(bound.ip(), 0)))
    }

    /// Whether this entry admits the IP of `addr`, whatever its port.
    fn matches_ip(&self, addr: SocketAddr) -> bool {
        let any_port = NetRule {
            ports: (0, u16::MAX),
            ..self.clone()
        };
        any_port.matches(addr)
    }
}

impl fmt::Display for NetRule {
    /// The entry as written; for a host name, also the addresses it was
    /// resolved to, since those are what is granted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entry)?;
        if self.from_name {
            let ips: Vec<String> = self
                .hosts
                .iter()
                .map(|h| match h {
                    HostMatch::Ip(ip) => ip.to_string(),
                    HostMatch::Cidr(ip, prefix) => format!("{ip}/{prefix}"),
                })
                .collect();
            write!(f, " (resolved to {})", ips.join(", "))?;
        }
        Ok(())
    }
}

const PORT_HELP: &str = "expected HOST:PORT, HOST:LO-HI or HOST:* (IPv6 in brackets, such as `[::1]:80`)";

fn parse_ports(port: &str) -> Result<(u16, u16), String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number (0 to 65535)"))
    };
    match port.trim() {
        "*" => Ok((0, u16::MAX)),
        "" => Err(PORT_HELP.into()),
        range => match range.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(format!("port range {lo}-{hi} runs backwards; write it as {hi}-{lo}"));
                }
                Ok((lo, hi))
            }
            None => number(range).map(|p| (p, p)),
        },
    }
}

fn parse_host(host: &str) -> Result<Vec<HostMatch>, String> {
    if let Some((ip, prefix)) = host.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| format!("`{ip}` is not an IP address"))?;
        let ip = normalize(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`/{prefix}` is not a prefix length for this address (0 to {max})"))?;
        return Ok(vec![HostMatch::Cidr(ip, prefix)]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![HostMatch::Ip(normalize(ip))]);
    }
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid_name {
        return Err(format!(
            "`{host}` is neither an IP address, a CIDR block nor a host name"
        ));
    }
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name `{host}`: {e}"))?
        .map(|a| normalize(a.ip()))
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(format!("host name `{host}` resolves to no address"));
    }
    Ok(ips.into_iter().map(HostMatch::Ip).collect())
}

/// An IPv4-mapped IPv6 address is the IPv4 address.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (ip, net, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (ip >> shift) == (net >> shift)
}

/// One `net.http` entry: a scheme, a host and a port (or `*`), such as
/// `https://api.example.com` or `http://127.0.0.1:*`. Without a port the
/// scheme's default (80, 443) is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// The entry as written.
    pub entry: String,
    scheme: String,
    host: String,
    ports: (u16, u16),
}

impl NetRule {
    /// The ports the entry allows, inclusive (`(0, 65535)` for `:*`).
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }
}

impl HttpRule {
    /// Parses an entry such as `https://api.example.com` or `http://[::1]:8080`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong and what is accepted.
    pub fn parse(entry: &str) -> Result<HttpRule, String> {
        let entry = entry.trim();
        let bad = |why: &str| {
            format!(
                "invalid [net] http entry `{entry}`: {why}; write it like `https://api.example.com` or `http://127.0.0.1:*`"
            )
        };
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('@') || authority.contains('?') {
            return Err(bad(
                "only a scheme, a host and a port are matched: no path, query or user",
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6.split_once(']').ok_or_else(|| bad("`[` without a closing `]`"))?;
                // Written as requests are decided, so `[0::1]` names `[::1]`.
                let host = host
                    .parse::<std::net::Ipv6Addr>()
                    .map_or_else(|_| host.to_ascii_lowercase(), |ip| ip.to_string());
                (format!("[{host}]"), rest.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
                None => (authority.to_ascii_lowercase(), None),
            },
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        let ports = match port {
            None => (default_port, default_port),
            Some(port) => parse_ports(port).map_err(|why| bad(&why))?,
        };
        Ok(HttpRule {
            entry: entry.to_string(),
            scheme,
            host,
            ports,
        })
    }

    /// The ports the entry allows, inclusive (the scheme's port when the
    /// entry names none).
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }

    /// Whether the entry names its host by name rather than by IP address:
    /// the host then resolves the name itself when it sends a request, so
    /// the process needs the resolver whatever `net.dns` (the guest's own
    /// lookups) says.
    pub fn names_a_host(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>().is_err()
    }

    /// Whether this entry admits a request to `scheme://host:port`.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.host.eq_ignore_ascii_case(host)
            && (self.ports.0..=self.ports.1).contains(&port)
    }
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entry)
    }
}

/// The resolved `[net]` table: deny everything unless listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGrants {
    /// `net.tcp-connect`.
    pub tcp_connect: Vec<NetRule>,
    /// `net.tcp-bind`.
    pub tcp_bind: Vec<NetRule>,
    /// `net.udp-bind`.
    pub udp_bind: Vec<NetRule>,
    /// `net.udp-send`.
    pub udp_send: Vec<NetRule>,
    /// `net.dns`: whether name lookups are allowed.
    pub dns: bool,
    /// `net.http` origins: where outgoing `wasi:http` requests may go, with
    /// any method and path.
    pub http: Vec<HttpRule>,
    /// `[[net.http]]` entries: origins admitted by method and path, with the
    /// headers and secrets their requests carry.
    pub http_entries: Vec<HttpEntry>,
    /// `[net.secrets]`: each secret's name and where its value is read.
    pub secrets: Secrets,
    /// `net.ca-certificates`: the CAs trusted for `https` requests beside
    /// the public ones, read when the policy was loaded.
    pub ca_certificates: Vec<CaFile>,
}

/// How the `net.http` grants admit one request (see [`NetGrants::decide_request`]).
#[derive(Debug, PartialEq, Eq)]
pub struct HttpAdmit<'a> {
    /// The `[[net.http]]` entry that admits it; `None` when an origin entry
    /// of `[net] http` does.
    pub entry: Option<&'a HttpEntry>,
    /// The normalised path and query to send, when some `[[net.http]]` entry
    /// names the origin; `None`: the guest's, as written.
    pub path: Option<RequestPath>,
}

impl NetGrants {
    /// The entries for `kind` (listening is checked against `tcp-bind`).
    pub fn rules(&self, kind: NetKind) -> &[NetRule] {
        match kind {
            NetKind::TcpConnect => &self.tcp_connect,
            NetKind::TcpBind | NetKind::TcpListen => &self.tcp_bind,
            NetKind::UdpBind => &self.udp_bind,
            NetKind::UdpSend => &self.udp_send,
        }
    }

    /// The entries for `kind`, to add to.
    pub(crate) fn rules_mut(&mut self, kind: NetKind) -> &mut Vec<NetRule> {
        match kind {
            NetKind::TcpConnect => &mut self.tcp_connect,
            NetKind::TcpBind | NetKind::TcpListen => &mut self.tcp_bind,
            NetKind::UdpBind => &mut self.udp_bind,
            NetKind::UdpSend => &mut self.udp_send,
        }
    }

    /// Whether any TCP use is granted.
    pub fn any_tcp(&self) -> bool {
        !self.tcp_connect.is_empty() || !self.tcp_bind.is_empty()
    }

    /// Whether any UDP use is granted.
    pub fn any_udp(&self) -> bool {
        !self.udp_bind.is_empty() || !self.udp_send.is_empty()
    }

    /// Decides one outgoing HTTP request's origin: `Ok` when a `[net] http`
    /// origin or a `[[net.http]]` entry names it, `Err(rule)` to refuse.
    pub fn check_http(&self, scheme: &str, host: &str, port: u16) -> Result<(), String> {
        let entries = self.http_entries.iter().map(|e| &e.origin);
        if self.http.iter().chain(entries).any(|r| r.matches(scheme, host, port)) {
            Ok(())
        } else {
            Err("no [net] http entry matches".to_string())
        }
    }

    /// Decides one request to an origin [`NetGrants::check_http`] admits, by
    /// its method and path (`path_with_query` as the guest set it).
    ///
    /// When no `[[net.http]]` entry names the origin, a `[net] http` origin
    /// admits it as it is. Otherwise the path must pass
    /// [`RequestPath::parse`]; a `deny-paths` pattern of any entry for the
    /// origin refuses it (deny wins); then the first entry, in policy order,
    /// whose methods and paths admit it decides it (its headers and secrets
    /// apply); failing that, a `[net] http` origin admits it with nothing
    /// injected.
    ///
    /// # Errors
    ///
    /// The rule that refuses it, naming `[[net.http]]`.
    pub fn decide_request(
        &self,
        (scheme, host, port): (&str, &str, u16),
        method: &str,
        path_with_query: &str,
    ) -> Result<HttpAdmit<'_>, String> {
        let listed = self.http.iter().any(|r| r.matches(scheme, host, port));
        let entries: Vec<&HttpEntry> = self
            .http_entries
            .iter()
            .filter(|e| e.origin.matches(scheme, host, port))
            .collect();
        if entries.is_empty() {
            return if listed {
                Ok(HttpAdmit {
                    entry: None,
                    path: None,
                })
            } else {
                Err("no [net] http entry matches".to_string())
            };
        }
        let path = RequestPath::parse(path_with_query).map_err(|why| {
            format!("[[net.http]] decides a path as it is sent, and this one has {why}; send it spelled plainly")
        })?;
        if let Some((entry, glob)) = entries.iter().find_map(|e| e.denies(&path.path).map(|g| (e, g))) {
            return Err(format!(
                "deny-paths `{glob}` of the [[net.http]] entry for {} refuses this path",
                entry.origin
            ));
        }
        let admits = |e: &&&HttpEntry| e.allows_method(method) && e.allows_path(&path.path);
        if let Some(entry) = entries.iter().find(admits) {
            return Ok(HttpAdmit {
                entry: Some(entry),
                path: Some(path),
            });
        }
        if listed {
            return Ok(HttpAdmit {
                entry: None,
                path: Some(path),
            });
        }
        Err(if entries.iter().any(|e| e.allows_method(method)) {
            "no [[net.http]] entry for this origin admits this path with this method".to_string()
        } else {
            "no [[net.http]] entry for this origin admits this method".to_string()
        })
    }

    /// Decides one use: `Ok` to allow, `Err(rule)` with the reason to refuse.
    ///
    /// `TcpListen` is decided as [`NetGrants::check_listen`] decides a socket
    /// bound to a port it asked for.
    pub fn check(&self, kind: NetKind, addr: SocketAddr) -> Result<(), String> {
        if kind == NetKind::TcpListen {
            return self.check_listen(addr, false);
        }
        self.decided(kind, addr, self.rules(kind).iter().any(|r| r.matches(addr)))
    }

    /// Decides listening on `bound`, the address and port a TCP socket is
    /// bound to, against `tcp-bind` (see [`NetRule::admits_listen`]); `ephemeral`
    /// when the socket's bind asked for port 0.
    pub fn check_listen(&self, bound: SocketAddr, ephemeral: bool) -> Result<(), String> {
        let rules = self.rules(NetKind::TcpListen);
        let allowed = rules.iter().any(|r| r.admits_listen(bound, ephemeral));
        self.decided(NetKind::TcpListen, bound, allowed)
    }

    fn decided(&self, kind: NetKind, addr: SocketAddr, allowed: bool) -> Result<(), String> {
        if allowed {
            return Ok(());
        }
        let rules = self.rules(kind);
        let key = match kind {
            NetKind::TcpListen => "tcp-bind",
            other => other.name(),
        };
        let named = rules.iter().any(|r| r.matches_ip(addr));
        Err(
            if normalize(addr.ip()).is_unspecified() && !rules.is_empty() && !named {
                format!("the unspecified address is allowed only when a [net] {key} entry names it literally")
            } else if kind == NetKind::TcpListen {
                "no [net] tcp-bind entry admits listening on this address and port".to_string()
            } else {
                format!("no [net] {key} entry matches")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> NetRule {
        NetRule::parse(entry).unwrap_or_else(|e| panic!("{e}"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse_and_match() {
        assert!(rule("127.0.0.1:8080").matches(addr("127.0.0.1:8080")));
        assert!(!rule("127.0.0.1:8080").matches(addr("127.0.0.1:8081")));
        assert!(rule("10.1.0.0/16:443").matches(addr("10.1.200.3:443")));
        assert!(!rule("10.1.0.0/16:443").matches(addr("10.2.0.1:443")));
        assert!(rule("[::1]:1000-2000").matches(addr("[::1]:1500")));
        assert!(!rule("[::1]:1000-2000").matches(addr("[::1]:2001")));
        assert!(rule("[fd00::/8]:*").matches(addr("[fd12::1]:1")));
        assert!(rule("0.0.0.0/0:*").matches(addr("8.8.8.8:53")));
        assert!(
            rule("localhost:5432").matches(addr("127.0.0.1:5432")),
            "host names resolve at load"
        );
        let named = rule("localhost:5432").to_string();
        assert!(
            named.starts_with("localhost:5432 (resolved to ") && named.contains("127.0.0.1"),
            "{named}"
        );
        assert_eq!(
            rule("10.1.0.0/16:443").to_string(),
            "10.1.0.0/16:443",
            "only names show addresses"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert!(rule("127.0.0.1:80").matches(addr("[::ffff:127.0.0.1]:80")));
        assert!(rule("[::ffff:10.0.0.1]:80").matches(addr("10.0.0.1:80")));
        assert!(rule("10.0.0.0/8:80").matches(addr("[::ffff:10.9.9.9]:80")));
    }

    #[test]
    fn unspecified_addresses_need_a_literal_entry() {
        assert!(!rule("0.0.0.0/0:*").matches(addr("0.0.0.0:80")));
        assert!(!rule("[::/0]:*").matches(addr("[::]:80")));
        assert!(rule("0.0.0.0:80").matches(addr("0.0.0.0:80")));
        assert!(!rule("0.0.0.0/0:*").matches(addr("[::ffff:0.0.0.0]:80")));
        let grants = NetGrants {
            tcp_connect: vec![rule("0.0.0.0/0:*")],
            ..NetGrants::default()
        };
        assert!(
            grants
                .check(NetKind::TcpConnect, addr("0.0.0.0:1"))
                .unwrap_err()
                .contains("literally")
        );
    }

    #[test]
    fn bad_entries_say_what_is_accepted() {
        for (entry, says) in [
            ("10.0.0.0/40:80", "prefix length"),
            ("127.0.0.1:70000", "not a port number"),
            ("127.0.0.1:9-3", "runs backwards"),
            ("127.0.0.1", "expected HOST:PORT"),
            ("[::1:80", "closing `]`"),
            ("[::1]80", "expected HOST:PORT"),
            ("bad host!:80", "neither an IP address"),
            ("300.1.1.1/8:1", "not an IP address"),
        ] {
            let err = NetRule::parse(entry).unwrap_err();
            assert!(err.contains(says) && err.contains(entry), "{entry}: {err}");
        }
    }

    #[test]
    fn http_entries() {
        let https = HttpRule::parse("https://API.example.com").unwrap();
        assert!(https.matches("https", "api.example.com", 443));
        assert!(
            !https.matches("http", "api.example.com", 443),
            "the scheme is part of the grant"
        );
        assert!(!https.matches("https", "api.example.com", 8443));
        assert!(!https.matches("https", "evil.example.com", 443));
        assert!(HttpRule::parse("http://[0:0::1]").unwrap().matches("http", "[::1]", 80));
        let any = HttpRule::parse("http://127.0.0.1:*").unwrap();
        assert!(any.matches("http", "127.0.0.1", 8080));
        assert!(
            HttpRule::parse("http://[::1]:8000-8100/")
                .unwrap()
                .matches("http", "[::1]", 8050)
        );
        for (entry, says) in [
            ("api.example.com", "no scheme"),
            ("ftp://x", "http or https"),
            ("https://x/path", "no path"),
            ("https://user@x", "no path"),
            ("http://x:99999", "not a port number"),
            ("http://", "no host"),
        ] {
            let err = HttpRule::parse(entry).unwrap_err();
            assert!(err.contains(says) && err.contains(entry), "{entry}: {err}");
        }
    }

    fn entry(origin: &str, methods: &[&str], paths: &[&str], deny: &[&str]) -> HttpEntry {
        let globs = |list: &[&str]| {
            list.iter()
                .map(|p| super::super::HttpPathGlob::new(p).unwrap())
                .collect()
        };
        HttpEntry {
            origin: HttpRule::parse(origin).unwrap(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            paths: globs(paths),
            deny_paths: globs(deny),
            headers: Vec::new(),
            secrets: Vec::new(),
            placeholder_in: Default::default(),
        }
    }

    #[test]
    fn requests_are_decided_by_method_and_path_and_deny_wins_across_entries() {
        let grants = NetGrants {
            http: vec![
                HttpRule::parse("http://open:80").unwrap(),
                HttpRule::parse("http://both:80").unwrap(),
            ],
            http_entries: vec![
                entry("http://api:80", &["GET"], &["/repos/acme/**"], &[]),
                entry("http://api:80", &[], &["/**"], &["/admin/**", "/repos/acme/private/**"]),
                entry("http://both:80", &["GET"], &["/read"], &["/secret"]),
            ],
            ..NetGrants::default()
        };
        let decide = |host: &str, method: &str, path: &str| grants.decide_request(("http", host, 80), method, path);
        // An origin without entries admits anything, sent as written.
        assert_eq!(
            decide("open", "DELETE", "/a/../b"),
            Ok(HttpAdmit {
                entry: None,
                path: None
            })
        );
        // The first entry admitting a request decides it.
        let admit = decide("api", "GET", "/repos/%61cme/x").unwrap();
        assert_eq!(admit.entry, Some(&grants.http_entries[0]));
        assert_eq!(admit.path.unwrap().path, "/repos/acme/x");
        assert_eq!(
            decide("api", "POST", "/x").unwrap().entry,
            Some(&grants.http_entries[1])
        );
        // Another entry's deny-paths refuse what the first admits.
        let err = decide("api", "GET", "/repos/acme/private/x").unwrap_err();
        assert!(err.contains("deny-paths `/repos/acme/private/**`"), "{err}");
        assert!(decide("api", "GET", "/admin/users").is_err());
        assert!(
            decide("api", "GET", "/repos/acme/../../admin")
                .unwrap_err()
                .contains("`..`")
        );
        // An origin listed too admits what no entry does, with no entry's
        // headers, but never a denied path.
        let admit = decide("both", "POST", "/other").unwrap();
        assert_eq!((admit.entry, admit.path.unwrap().path.as_str()), (None, "/other"));
        assert!(decide("both", "GET", "/secret").is_err());
        assert!(decide("elsewhere", "GET", "/").is_err());
        assert!(
            grants.check_http("http", "api", 80).is_ok(),
            "an entry's origin is admitted"
        );
    }

    // See: #27
    #[test]
    fn listen_is_decided_on_the_bound_address_and_port() {
        let grants = NetGrants {
            tcp_bind: vec![rule("127.0.0.1:0"), rule("0.0.0.0:8080")],
            ..NetGrants::default()
        };
        assert!(grants.check(NetKind::TcpBind, addr("127.0.0.1:0")).is_ok());
        assert!(grants.check(NetKind::TcpBind, addr("127.0.0.1:8080")).is_err());
        // Port 0 admits the port the OS picked, only for a socket that asked for it.
        assert!(grants.check_listen(addr("127.0.0.1:41234"), true).is_ok());
        assert!(grants.check_listen(addr("127.0.0.1:41234"), false).is_err());
        assert!(grants.check_listen(addr("10.0.0.1:41234"), true).is_err());
        // An entry's own port admits exactly that port, bound either way.
        assert!(grants.check_listen(addr("0.0.0.0:8080"), false).is_ok());
        assert!(grants.check_listen(addr("0.0.0.0:41234"), true).is_err());
        assert!(grants.check_listen(addr("0.0.0.0:41234"), false).is_err());
        assert!(grants.check(NetKind::TcpListen, addr("0.0.0.0:41234")).is_err());
    }
}
