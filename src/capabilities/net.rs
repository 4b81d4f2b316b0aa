//! Every network decision of a run in one place: the socket address check,
//! the audited name lookup and the HTTP allowlist hook, each recording what
//! it refuses in the run's [`NetAudit`].

use super::denial::Records;
use super::http_bounds::{self, InFlight, LiveBodies};
use crate::policy::{NetGrants, NetKind};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpHooks;

/// One run's network grants and the run's record of refusals, shared by
/// everything that decides a network use: the socket check, the name-lookup
/// wrapper and the HTTP hook. Cloning shares the record.
#[derive(Clone)]
pub(crate) struct NetAudit {
    pub(crate) grants: Arc<NetGrants>,
    denials: Records,
    /// The run's outgoing HTTP requests in flight, capped.
    in_flight: InFlight,
    /// The run's outgoing HTTP bodies, capped.
    pub(crate) bodies: LiveBodies,
}

impl NetAudit {
    /// The run's grants, recording refusals in `denials`.
    pub(crate) fn new(grants: &NetGrants, denials: Records) -> NetAudit {
        NetAudit {
            grants: Arc::new(grants.clone()),
            denials,
            in_flight: InFlight::default(),
            bodies: LiveBodies::default(),
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

    /// Sends a request the policy allowed with wasmtime-wasi-http's sender,
    /// unless [`http_bounds::MAX_HTTP_IN_FLIGHT`] are in flight already: then
    /// the guest gets `connection-limit-reached` and can retry once one ends.
    fn send_bounded(
        &self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = http_bounds::SendResult> + Send> {
        let Some(slot) = self.in_flight.try_start() else {
            return Box::new(std::future::ready(Err(
                wasmtime_wasi_http::Error::ConnectionLimitReached,
            )));
        };
        http_bounds::hold_slot(
            slot,
            wasmtime_wasi_http::default_hooks().send_request(request, options, fut),
        )
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

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

/// The `net.http` allowlist, consulted before every outgoing `wasi:http`
/// request; an allowed request is sent by wasmtime-wasi-http unchanged.
impl WasiHttpHooks for NetAudit {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        if let Err(rule) = self.grants.check_http(&scheme, &host, port) {
            self.refuse("http", &format!("{scheme}://{host}:{port}"), &rule);
            return Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
        }
        self.allow("http", || format!("{scheme}://{host}:{port}"));
        self.send_bounded(request, options, fut)
    }

    /// One write to an outgoing body carries at most this much, and two are
    /// queued at most (see [`http_bounds`]).
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        http_bounds::HTTP_BODY_CHUNK
    }
}
