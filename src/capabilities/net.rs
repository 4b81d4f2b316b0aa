//! Every network decision of a run in one place: the socket address check,
//! the audited name lookup and the decision on each outgoing HTTP request
//! ([`decide_http`], made in `handle` before wasi-http parses the request),
//! each recording what it refuses in the run's [`NetAudit`].

use super::denial::Records;
use crate::policy::{NetGrants, NetKind};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode as HttpErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

/// One run's network grants and the run's record of refusals, shared by
/// everything that decides a network use: the socket check, the name-lookup
/// wrapper and the HTTP hook. Cloning shares the record.
#[derive(Clone)]
pub(crate) struct NetAudit {
    pub(crate) grants: Arc<NetGrants>,
    denials: Records,
}

impl NetAudit {
    /// The run's grants, recording refusals in `denials`.
    pub(crate) fn new(grants: &NetGrants, denials: Records) -> NetAudit {
        NetAudit {
            grants: Arc::new(grants.clone()),
            denials,
        }
    }

    /// Records a refused use of `kind` on `target` (see [`Records::refuse`]).
    pub(crate) fn refuse(&self, kind: &'static str, target: &str, rule: &str) {
        self.denials.refuse(kind, target, rule);
    }

    /// Counts (and audits) a granted use of `kind` on `target`.
    pub(crate) fn allow(&self, kind: &'static str, target: impl FnOnce() -> String) {
        self.denials.allow(kind, target, || format!("granted by [net] {kind}"));
    }
}

/// Grants exactly the `[net]` entries. Sockets themselves are always
/// available, so that every refused use reaches the check below and is
/// recorded; a socket the policy grants nothing to can be created (counted
/// against `limits.handles`) but cannot listen, connect, send or receive.
pub(super) fn add_network(builder: &mut WasiCtxBuilder, net: &NetAudit) {
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(net.grants.dns);
    let net = net.clone();
    builder.socket_addr_check(move |addr, usage| {
        let allowed = match decide(&net.grants, addr, usage) {
            Verdict::Allow(Some(kind)) => {
                net.allow(kind, || addr.to_string());
                true
            }
            Verdict::Allow(None) => true,
            Verdict::Drop => false,
            Verdict::Deny(kind, rule) => {
                net.refuse(kind.name(), &addr.to_string(), &rule);
                false
            }
        };
        Box::pin(std::future::ready(allowed))
    });
}

enum Verdict {
    /// Granted: a use of this kind, or (`None`) one that only follows from
    /// another (an implicit bind, an incoming datagram), not counted.
    Allow(Option<&'static str>),
    /// Refused and recorded.
    Deny(NetKind, String),
    /// Refused silently: an incoming datagram the guest never asked for.
    Drop,
}

/// Whether one socket use is granted.
///
/// wasmtime-wasi also checks the implicit bind that `connect` and `send`
/// perform, on the wildcard address and port 0. That only picks the local
/// end, so it is always allowed: the connect or send that follows is what the
/// policy decides, and a socket bound that way cannot listen without a
/// `tcp-bind` entry. Accepting a client is only possible on a listener the
/// policy granted; datagrams are received only when some UDP use is granted.
fn decide(net: &NetGrants, addr: SocketAddr, usage: SocketAddrUse) -> Verdict {
    let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
    let check = |kind: NetKind| match net.check(kind, addr) {
        Ok(()) => Verdict::Allow(Some(kind.name())),
        Err(rule) => Verdict::Deny(kind, rule),
    };
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind if implicit_bind => Verdict::Allow(None),
        SocketAddrUse::TcpBind => check(NetKind::TcpBind),
        SocketAddrUse::TcpListen => check(NetKind::TcpListen),
        SocketAddrUse::TcpConnect => check(NetKind::TcpConnect),
        SocketAddrUse::TcpAccept => Verdict::Allow(Some("tcp-accept")),
        SocketAddrUse::UdpBind => check(NetKind::UdpBind),
        SocketAddrUse::UdpSend => check(NetKind::UdpSend),
        SocketAddrUse::UdpReceive if net.any_udp() => Verdict::Allow(None),
        SocketAddrUse::UdpReceive => Verdict::Drop,
    }
}

/// The `wasi:sockets` `resolve-addresses` call, audited: a lookup the
/// policy does not grant (`[net] dns = false`) is recorded in the run's
/// denials and answered as wasmtime-wasi itself answers when lookups are off;
/// a granted one is handed to wasmtime-wasi unchanged.
///
/// # Errors
///
/// Only when wasmtime-wasi's own lookup fails with something other than a
/// `wasi:sockets` error code (which ends the guest).
pub(crate) fn resolve_addresses(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    network: Resource<Network>,
    name: String,
) -> wasmtime::Result<Result<Resource<ResolveAddressStream>, ErrorCode>> {
    if !net.grants.dns {
        net.refuse("dns", &name, "[net] dns is false: name lookups are not granted");
        return Ok(Err(ErrorCode::PermanentResolverFailure));
    }
    net.allow("dns", || name.clone());
    let mut view = WasiSocketsCtxView {
        ctx: ctx.sockets(),
        table,
    };
    match Host::resolve_addresses(&mut view, network, name) {
        Ok(stream) => Ok(Ok(stream)),
        Err(err) => err.downcast().map(Err),
    }
}

/// The scheme a request that names none is sent with, as wasmtime-wasi-http
/// does by default.
const DEFAULT_HTTP_SCHEME: HttpScheme = HttpScheme::Https;

/// The schemes `[net] http` can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpScheme {
    Http,
    Https,
}

impl HttpScheme {
    fn name(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }

    fn wasi(self) -> Scheme {
        match self {
            HttpScheme::Http => Scheme::Http,
            HttpScheme::Https => Scheme::Https,
        }
    }
}

/// Where an allowed outgoing HTTP request goes: the host sends it there, to
/// an authority rebuilt from these three, and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    pub(crate) scheme: HttpScheme,
    /// Lower-cased; an IPv6 address in brackets, written canonically.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HttpTarget {
    /// The authority the request is sent to and names in its `Host` header:
    /// the host, then the port unless it is the scheme's own.
    pub(crate) fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How an `http` use is recorded: `scheme://host:port`, the port always written.
impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.name(), self.host, self.port)
    }
}

/// An outgoing HTTP request refused before wasi-http sees it.
#[derive(Debug)]
pub(crate) struct HttpRefusal {
    /// What is recorded: the decided `scheme://host:port`, or, for a request
    /// that got no further, its scheme and authority as the guest wrote them
    /// with any userinfo replaced by `***`.
    pub(crate) target: String,
    /// Why, naming `[net] http`.
    pub(crate) rule: String,
    /// What the guest is answered.
    pub(crate) code: HttpErrorCode,
}

/// Decides one outgoing HTTP request from the scheme and authority the guest
/// set, before anything parses, resolves or connects to them.
///
/// A request without a scheme is `https`; scheme names are compared without
/// regard to case. The authority must be `host[:port]`: a name of letters,
/// digits, `-`, `.` and `_`, or an IP address (IPv6 in brackets), and a port
/// from 1 to 65535 (the scheme's own when absent). The host is lower-cased and
/// an IPv6 address written canonically before it is matched against the
/// `[net] http` entries.
///
/// # Errors
///
/// The refusal, with the code wasmtime-wasi-http itself gives where it has
/// one: `HttpProtocolError` for a scheme other than `http` and `https`,
/// `HttpRequestUriInvalid` for a request without an authority; otherwise
/// (userinfo, a malformed authority, no matching entry) `HttpRequestDenied`.
pub(crate) fn decide_http(
    grants: &NetGrants,
    scheme: Option<&Scheme>,
    authority: Option<&str>,
) -> Result<HttpTarget, HttpRefusal> {
    let (name, scheme) = match scheme {
        None => (Cow::Borrowed(DEFAULT_HTTP_SCHEME.name()), Some(DEFAULT_HTTP_SCHEME)),
        Some(Scheme::Http) => (Cow::Borrowed("http"), Some(HttpScheme::Http)),
        Some(Scheme::Https) => (Cow::Borrowed("https"), Some(HttpScheme::Https)),
        Some(Scheme::Other(other)) => {
            let name = other.to_ascii_lowercase();
            let scheme = [HttpScheme::Http, HttpScheme::Https]
                .into_iter()
                .find(|s| s.name() == name);
            (Cow::Owned(name), scheme)
        }
    };
    let written = authority.unwrap_or_default();
    let refuse = |code, rule: &str| HttpRefusal {
        target: format!("{name}://{}", redact_userinfo(written)),
        rule: rule.to_string(),
        code,
    };
    let Some(scheme) = scheme else {
        return Err(refuse(
            HttpErrorCode::HttpProtocolError,
            "[net] http grants only `http` and `https` requests",
        ));
    };
    if written.is_empty() {
        return Err(refuse(
            HttpErrorCode::HttpRequestUriInvalid,
            "the request names no authority, and [net] http grants a host and port",
        ));
    }
    if written.contains('@') {
        return Err(refuse(
            HttpErrorCode::HttpRequestDenied,
            "[net] http refuses an authority with userinfo (`user@`); send credentials in a header",
        ));
    }
    let Some((host, port)) = split_host_port(written, scheme.default_port()) else {
        return Err(refuse(
            HttpErrorCode::HttpRequestDenied,
            "[net] http needs an authority `host[:port]` with a port from 1 to 65535",
        ));
    };
    let target = HttpTarget { scheme, host, port };
    match grants.check_http(scheme.name(), &target.host, port) {
        Ok(()) => Ok(target),
        Err(rule) => Err(HttpRefusal {
            target: target.to_string(),
            rule,
            code: HttpErrorCode::HttpRequestDenied,
        }),
    }
}

/// `authority` with everything up to its last `@` (the userinfo, by the
/// reading `http::uri::Authority` gives it) replaced by `***`.
fn redact_userinfo(authority: &str) -> Cow<'_, str> {
    match authority.rsplit_once('@') {
        Some((_, host)) => Cow::Owned(format!("***@{host}")),
        None => Cow::Borrowed(authority),
    }
}

/// The checked host (see [`decide_http`]) and port of a `host[:port]`
/// authority without userinfo, or `None` if it is not one.
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, rest) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6.split_once(']')?;
            (format!("[{}]", ip.parse::<Ipv6Addr>().ok()?), rest)
        }
        None => {
            let (host, rest) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
            if host.is_empty() || !host.bytes().all(name_byte) {
                return None;
            }
            (host.to_ascii_lowercase(), rest)
        }
    };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => default_port,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            port.parse().ok().filter(|&port| port != 0)?
        }
        _ => return None,
    };
    Some((host, port))
}

/// The `wasi:http/outgoing-handler` `handle` call, decided first: wasmcell
/// reads the request's scheme and authority from the table, decides them
/// ([`decide_http`]) and records the use; a refused request is dropped and
/// answered with the refusal's code before wasi-http parses, resolves or
/// connects anything. An allowed one gets the decided scheme and an
/// authority rebuilt from the decided host and port, then goes to
/// wasmtime-wasi-http's own `handle`, so the host connects only there.
///
/// # Errors
///
/// When the request or options handle is not in the table, or wasi-http's
/// own `handle` fails with something other than an error code: both end the
/// guest, as they do in wasmtime-wasi-http.
pub(crate) fn handle_http(
    net: &mut NetAudit,
    table: &mut ResourceTable,
    http: &mut WasiHttpCtx,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, HttpErrorCode>> {
    let parts = table.get_mut(&request)?;
    match decide_http(&net.grants, parts.scheme.as_ref(), parts.authority.as_deref()) {
        Ok(target) => {
            net.allow("http", || target.to_string());
            parts.scheme = Some(target.scheme.wasi());
            parts.authority = Some(target.authority());
        }
        Err(refusal) => {
            net.refuse("http", &refusal.target, &refusal.rule);
            // `handle` owns both handles: the guest gave them up with the call.
            table.delete(request)?;
            if let Some(options) = options {
                table.delete(options)?;
            }
            return Ok(Err(refusal.code));
        }
    }
    let mut view = WasiHttpCtxView {
        hooks: net,
        table,
        ctx: http,
    };
    match outgoing_handler::Host::handle(&mut view, request, options) {
        Ok(response) => Ok(Ok(response)),
        Err(err) => err.downcast().map(Err),
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

/// Sends what [`handle_http`] decided and recorded. wasi-http built the
/// request from the decided scheme and rebuilt authority; they are decided
/// once more here, without a record, so that nothing reaching this hook
/// another way is sent where no `[net] http` entry admits.
impl WasiHttpHooks for NetAudit {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().map(|s| Scheme::Other(s.to_string()));
        let authority = uri.authority().map(|a| a.as_str());
        if decide_http(&self.grants, scheme.as_ref(), authority).is_err() {
            return Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
        }
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::HttpRule;

    fn grants(entries: &[&str]) -> NetGrants {
        NetGrants {
            http: entries.iter().map(|e| HttpRule::parse(e).unwrap()).collect(),
            ..NetGrants::default()
        }
    }

    /// Each row: the scheme a guest sets (`-` for none), its authority (`-`
    /// for none), then the decided target and the authority it is sent to,
    /// or the recorded target and the error code.
    const CASES: &[(&str, &str, &str, &str)] = &[
        ("http", "127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http", "127.0.0.1:08080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("HTTP", "127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("-", "API.Example.com", "https://api.example.com:443", "api.example.com"),
        (
            "https",
            "api.example.com:443",
            "https://api.example.com:443",
            "api.example.com",
        ),
        ("http", "[0:0::1]:9", "http://[::1]:9", "[::1]:9"),
        ("http", "[::1]", "http://[::1]:80", "[::1]"),
        ("ftp", "127.0.0.1:8080", "ftp://127.0.0.1:8080", "HttpProtocolError"),
        ("ftp", "u:pw@h", "ftp://***@h", "HttpProtocolError"),
        ("http", "-", "http://", "HttpRequestUriInvalid"),
        ("-", "-", "https://", "HttpRequestUriInvalid"),
        (
            "http",
            "u:pw@127.0.0.1:8080",
            "http://***@127.0.0.1:8080",
            "HttpRequestDenied",
        ),
        (
            "http",
            "a@b:pw@127.0.0.1:8080",
            "http://***@127.0.0.1:8080",
            "HttpRequestDenied",
        ),
        ("http", "127.0.0.1:", "http://127.0.0.1:", "HttpRequestDenied"),
        ("http", "127.0.0.1:0", "http://127.0.0.1:0", "HttpRequestDenied"),
        ("http", "127.0.0.1:65536", "http://127.0.0.1:65536", "HttpRequestDenied"),
        ("http", "127.0.0.1:+80", "http://127.0.0.1:+80", "HttpRequestDenied"),
        ("http", ":8080", "http://:8080", "HttpRequestDenied"),
        ("http", "a!b:8080", "http://a!b:8080", "HttpRequestDenied"),
        ("http", "[::1%lo]:80", "http://[::1%lo]:80", "HttpRequestDenied"),
        ("http", "[::1]x", "http://[::1]x", "HttpRequestDenied"),
        ("http", "127.0.0.1:8081", "http://127.0.0.1:8081", "HttpRequestDenied"),
        ("https", "127.0.0.1:8080", "https://127.0.0.1:8080", "HttpRequestDenied"),
        ("-", "127.0.0.1:8080", "https://127.0.0.1:8080", "HttpRequestDenied"),
    ];

    #[test]
    fn http_requests_are_decided_on_their_checked_parts() {
        let net = grants(&["http://127.0.0.1:8080", "https://api.example.com", "http://[::1]:*"]);
        for &(scheme, authority, target, then) in CASES {
            let scheme = match scheme {
                "-" => None,
                "http" => Some(Scheme::Http),
                "https" => Some(Scheme::Https),
                other => Some(Scheme::Other(other.to_string())),
            };
            let authority = Some(authority).filter(|&a| a != "-");
            let got = match decide_http(&net, scheme.as_ref(), authority) {
                Ok(decided) => (decided.to_string(), decided.authority()),
                Err(refusal) => {
                    assert!(refusal.rule.contains("[net] http"), "{refusal:?}");
                    let code = format!("{:?}", refusal.code);
                    (refusal.target, code.trim_start_matches("ErrorCode::").to_string())
                }
            };
            assert_eq!(got, (target.to_string(), then.to_string()), "{scheme:?} {authority:?}");
        }
    }
}
