//! What a guest did on the network, as the exact entries that allow it: the
//! addresses and ports it connected to, bound and sent to, whether it
//! looked a name up, and per origin the methods and paths of its requests.

use crate::policy::{HttpEntry, NetGrants, NetKind, Policy, RequestPath};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// Network uses the runs made, each re-decided against the policy it ran
/// under before it counts.
#[derive(Debug, Default, Clone)]
pub(super) struct NetUse {
    pub tcp_connect: BTreeSet<String>,
    pub tcp_bind: BTreeSet<String>,
    pub udp_bind: BTreeSet<String>,
    pub udp_send: BTreeSet<String>,
    /// Listening sockets' addresses; written as `tcp-bind` entries unless a
    /// learned bind entry already allows them.
    pub tcp_listen: BTreeSet<SocketAddr>,
    /// Names looked up (for the file's comment), or entries from an earlier
    /// learned policy that had `dns = true`.
    pub dns: BTreeSet<String>,
    pub dns_granted: bool,
    /// By origin and the entry that admitted the requests.
    pub http: BTreeMap<HttpKey, HttpUse>,
    /// `net.ca-certificates` of the policy, kept when an `https` origin is used.
    pub https_used: bool,
    /// Where each secret a learned entry names is read from, as the policy
    /// that admitted its requests said.
    pub secrets: BTreeMap<String, crate::policy::SecretSource>,
}

/// One learned `[[net.http]]` entry: an origin, and the headers, secrets and
/// placeholder places of the entry that admitted its requests (empty when a
/// plain `net.http` origin did).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HttpKey {
    pub origin: String,
    /// `(name, template)` pairs as written in the policy.
    pub headers: Vec<(String, String)>,
    pub secrets: Vec<String>,
    pub placeholder_in_query: bool,
    /// The entry's `deny-paths`, kept as they were.
    pub deny_paths: Vec<String>,
}

/// The methods and paths used at one [`HttpKey`].
#[derive(Debug, Default, Clone)]
pub(super) struct HttpUse {
    /// An earlier policy admitted any method.
    pub any_method: bool,
    /// An earlier policy admitted any path.
    pub any_path: bool,
    pub methods: BTreeSet<String>,
    /// Paths as patterns (a used path is its own pattern).
    pub paths: BTreeSet<String>,
    /// Paths that could not be written as a pattern of themselves.
    pub skipped: BTreeSet<String>,
    /// Distinct (method, path) requests seen, not every request sent.
    pub requests: u64,
}

impl NetUse {
    /// Adds an allowed use of `kind` on `target`, when `policy` allows it.
    /// Returns whether it was learned.
    pub(super) fn add(&mut self, policy: &Policy, kind: &str, target: &str) -> bool {
        let grants = policy.net();
        match kind {
            "dns" if grants.dns => {
                self.dns.insert(target.to_string());
                self.dns_granted = true;
                true
            }
            "http" => self.add_http(grants, target),
            _ => self.add_socket(grants, kind, target),
        }
    }

    fn add_socket(&mut self, grants: &NetGrants, kind: &str, target: &str) -> bool {
        let Ok(addr) = target.parse::<SocketAddr>() else {
            return false;
        };
        let (net_kind, set) = match kind {
            "tcp-connect" => (NetKind::TcpConnect, &mut self.tcp_connect),
            "tcp-bind" => (NetKind::TcpBind, &mut self.tcp_bind),
            "udp-bind" => (NetKind::UdpBind, &mut self.udp_bind),
            "udp-send" => (NetKind::UdpSend, &mut self.udp_send),
            "tcp-listen" => {
                // A port asked for is learned as it is; one the policy allows
                // only as an ephemeral port, as port 0.
                if grants.check_listen(addr, false).is_ok() {
                    self.tcp_listen.insert(addr);
                } else if grants.check_listen(addr, true).is_ok() {
                    self.tcp_listen.insert(SocketAddr::new(addr.ip(), 0));
                } else {
                    return false;
                }
                return true;
            }
            _ => return false,
        };
        if grants.check(net_kind, addr).is_err() {
            return false;
        }
        set.insert(entry_of(addr));
        true
    }

    fn add_http(&mut self, grants: &NetGrants, target: &str) -> bool {
        let Some((method, scheme, host, port, path)) = parse_request(target) else {
            return false;
        };
        if method.is_empty() || method.len() > 32 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return false;
        }
        if grants.check_http(scheme, host, port).is_err() {
            return false;
        }
        let Ok(admit) = grants.decide_request((scheme, host, port), method, path) else {
            return false;
        };
        let key = http_key(&format!("{scheme}://{host}:{port}"), admit.entry);
        self.add_secrets(grants, &key);
        self.https_used |= scheme == "https";
        let used = self.http.entry(key).or_default();
        used.methods.insert(method.to_string());
        used.requests = used.requests.saturating_add(1);
        match RequestPath::parse(path) {
            Ok(p) if !p.path.contains('*') => {
                used.paths.insert(p.path);
            }
            _ => {
                used.skipped.insert(path.to_string());
            }
        }
        true
    }

    /// Adds an earlier learned policy's network grants as used.
    pub(super) fn add_granted(&mut self, grants: &NetGrants) {
        let entries = |rules: &[crate::policy::NetRule]| rules.iter().map(|r| r.entry.clone()).collect::<Vec<_>>();
        self.tcp_connect.extend(entries(&grants.tcp_connect));
        self.tcp_bind.extend(entries(&grants.tcp_bind));
        self.udp_bind.extend(entries(&grants.udp_bind));
        self.udp_send.extend(entries(&grants.udp_send));
        self.dns_granted |= grants.dns;
        for origin in &grants.http {
            self.https_used |= origin.entry.starts_with("https:");
            let used = self.http.entry(http_key(&origin.entry, None)).or_default();
            (used.any_method, used.any_path) = (true, true);
        }
        for entry in &grants.http_entries {
            self.https_used |= entry.origin.entry.starts_with("https:");
            let key = http_key(&entry.origin.entry, Some(entry));
            self.add_secrets(grants, &key);
            let used = self.http.entry(key).or_default();
            used.any_method |= entry.methods.is_empty();
            used.any_path |= entry.paths.is_empty();
            used.methods.extend(entry.methods.iter().cloned());
            used.paths.extend(entry.paths.iter().map(|p| p.as_str().to_string()));
        }
    }

    /// Keeps where the secrets `key` names are read from.
    fn add_secrets(&mut self, grants: &NetGrants, key: &HttpKey) {
        for name in &key.secrets {
            if let Some(source) = grants.secrets.get(name) {
                self.secrets.entry(name.clone()).or_insert_with(|| source.clone());
            }
        }
    }

    /// The `tcp-bind` entries to write: those bound, and the listening
    /// addresses no bound entry allows.
    pub(super) fn bind_entries(&self) -> Vec<String> {
        let mut entries = self.tcp_bind.clone();
        for addr in &self.tcp_listen {
            let covered = self.tcp_bind.iter().any(|e| match e.parse::<SocketAddr>() {
                Ok(bound) => bound.ip() == addr.ip() && (bound.port() == 0 || bound.port() == addr.port()),
                Err(_) => false,
            });
            if !covered {
                entries.insert(entry_of(*addr));
            }
        }
        entries.into_iter().collect()
    }

    /// Whether any network use is learned.
    pub(super) fn any(&self) -> bool {
        !(self.tcp_connect.is_empty()
            && self.tcp_bind.is_empty()
            && self.tcp_listen.is_empty()
            && self.udp_bind.is_empty()
            && self.udp_send.is_empty()
            && !self.dns_granted
            && self.http.is_empty())
    }
}

/// An address as a `[net]` entry: `1.2.3.4:80`, `[::1]:80`.
fn entry_of(addr: SocketAddr) -> String {
    addr.to_string()
}

fn http_key(origin: &str, entry: Option<&HttpEntry>) -> HttpKey {
    let Some(entry) = entry else {
        return HttpKey {
            origin: origin.to_string(),
            headers: Vec::new(),
            secrets: Vec::new(),
            placeholder_in_query: false,
            deny_paths: Vec::new(),
        };
    };
    let headers = entry
        .headers
        .iter()
        .map(|h| (h.name.clone(), crate::policy::template_text(&h.value)))
        .collect();
    HttpKey {
        origin: origin.to_string(),
        headers,
        secrets: entry.secrets.clone(),
        placeholder_in_query: entry.placeholder_in.query,
        deny_paths: entry.deny_paths.iter().map(|p| p.as_str().to_string()).collect(),
    }
}

/// Splits an audited request, `METHOD scheme://host:port/path`, into its
/// parts; `None` for anything else.
fn parse_request(target: &str) -> Option<(&str, &str, &str, u16, &str)> {
    let (method, url) = target.split_once(' ')?;
    let (scheme, rest) = url.split_once("://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let path = if path.is_empty() { "/" } else { path };
    Some((method, scheme, host, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audited_request_splits_into_its_parts() {
        assert_eq!(
            parse_request("GET http://127.0.0.1:8080/a/b"),
            Some(("GET", "http", "127.0.0.1", 8080, "/a/b"))
        );
        assert_eq!(
            parse_request("POST https://[::1]:443"),
            Some(("POST", "https", "[::1]", 443, "/"))
        );
        assert_eq!(parse_request("GET nothing"), None);
        assert_eq!(parse_request("GET http://host/a"), None);
    }
}
