//! The WASI linkers every program is linked with: wasi_snapshot_preview1 for
//! modules; WASI 0.2 and outgoing wasi:http for components. Shadowed:
//! `proc_exit`, so every exit status is reported as what it is;
//! `resolve-addresses` and `wasi:http`'s `handle`, whose decision and record
//! belong to the network capability ([`capabilities::resolve_addresses`],
//! [`capabilities::handle_http`]); creating a socket, and a socket's
//! `start-bind` and `start-listen`, which the network capability decides and
//! records ([`capabilities::tcp_start_bind`] and its siblings); and the filesystem, whose
//! calls pass the run's guard first: preview 1's path functions one by one
//! ([`capabilities::fs_p1`]), preview 2's `wasi:filesystem` as a whole
//! ([`capabilities::fs_p2`]). The guard's state lives in the store. With the
//! test-only feature `wall-drill`, each linker also gets the escape drill's
//! one import (`drill.rs`).

use crate::capabilities::{self, fs_p1, fs_p2};
use crate::store::{P2Ctx, State};
use anyhow::Result;
use wasmtime::component::Resource;
use wasmtime::{AsContextMut as _, Caller, Extern, StoreContextMut};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;

pub(super) fn new_p1_linker(engine: &wasmtime::Engine) -> Result<wasmtime::Linker<State<WasiP1Ctx>>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State<WasiP1Ctx>| &mut s.wasi)
        .map_err(anyhow::Error::from)?;
    // wasmtime-wasi turns an exit status of 126 or more into an untyped error;
    // report every status as what it is, so the outcome can say "exited 200"
    // rather than mistaking it for a trap.
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |status: i32| -> wasmtime::Result<()> { Err(wasmtime::Error::new(I32Exit(status))) },
        )
        .map_err(anyhow::Error::from)?;
    guard_p1_files(&mut linker)?;
    linker.allow_shadowing(false);
    #[cfg(feature = "wall-drill")]
    super::drill::add_to_p1_linker(&mut linker)?;
    Ok(linker)
}

/// Shadows one preview 1 function with its guarded version in
/// [`capabilities::fs_p1`], doing first what wasmtime-wasi's own glue does
/// before each call: find the guest's memory and hand the context the
/// store's host-call fuel (which bounds what a call may copy).
macro_rules! guard_p1 {
    ($linker:expr, $name:ident, ($($ty:ty),*)) => {
        $linker
            .func_wrap_async(
                "wasi_snapshot_preview1",
                stringify!($name),
                |mut caller: Caller<'_, State<WasiP1Ctx>>, args: ($($ty,)*)| {
                    Box::new(async move {
                        use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
                        let fuel = caller.as_context_mut().hostcall_fuel();
                        let memory = caller
                            .get_export("memory")
                            .and_then(Extern::into_memory)
                            .ok_or_else(|| wasmtime::Error::msg("missing required memory export"))?;
                        let (mem, state) = memory.data_and_store_mut(&mut caller);
                        state.wasi.set_hostcall_fuel(fuel);
                        let call = fs_p1::Call { ctx: &mut state.wasi, guard: &mut state.fs, mem };
                        fs_p1::$name(call, args).await
                    })
                },
            )
            .map_err(anyhow::Error::from)?
    };
}

fn guard_p1_files(linker: &mut wasmtime::Linker<State<WasiP1Ctx>>) -> Result<()> {
    guard_p1!(linker, path_open, (i32, i32, i32, i32, i32, i64, i64, i32, i32));
    guard_p1!(linker, path_filestat_get, (i32, i32, i32, i32, i32));
    guard_p1!(linker, fd_filestat_get, (i32, i32));
    guard_p1!(linker, path_filestat_set_times, (i32, i32, i32, i32, i64, i64, i32));
    guard_p1!(linker, path_readlink, (i32, i32, i32, i32, i32, i32));
    guard_p1!(linker, path_create_directory, (i32, i32, i32));
    guard_p1!(linker, path_unlink_file, (i32, i32, i32));
    guard_p1!(linker, path_remove_directory, (i32, i32, i32));
    guard_p1!(linker, path_rename, (i32, i32, i32, i32, i32, i32));
    guard_p1!(linker, path_link, (i32, i32, i32, i32, i32, i32, i32));
    guard_p1!(linker, path_symlink, (i32, i32, i32, i32, i32));
    guard_p1!(linker, fd_filestat_set_times, (i32, i64, i64, i32));
    guard_p1!(linker, fd_close, (i32));
    guard_p1!(linker, fd_renumber, (i32, i32));
    guard_p1!(linker, fd_readdir, (i32, i32, i32, i64, i32));
    guard_p1!(linker, fd_write, (i32, i32, i32, i32));
    guard_p1!(linker, fd_pwrite, (i32, i32, i32, i64, i32));
    guard_p1!(linker, fd_fdstat_set_flags, (i32, i32));
    guard_p1!(linker, fd_filestat_set_size, (i32, i64));
    Ok(())
}

pub(super) fn new_p2_linker(engine: &wasmtime::Engine) -> Result<wasmtime::component::Linker<State<P2Ctx>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    audit_name_lookups(&mut linker)?;
    audit_sockets(&mut linker)?;
    guard_p2_files(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    bound_http_fields(&mut linker)?;
    bound_http_request_parts(&mut linker)?;
    decide_http_requests(&mut linker)?;
    #[cfg(feature = "wall-drill")]
    super::drill::add_to_p2_linker(&mut linker)?;
    Ok(linker)
}

/// The `wasi:http` version wasmtime-wasi-http 48 implements.
const WASI_HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// Replaces the `fields` functions that add to a header map with the network
/// capability's bounded versions, which answer `header-error` where
/// wasmtime-wasi-http would trap on a map over its size bound, and the
/// functions that make an outgoing body with versions that count the run's
/// live bodies.
fn bound_http_fields(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi_http::p2::types::{HostOutgoingRequest, HostOutgoingResponse};
    use wasmtime_wasi_http::{FieldMap, WasiHttpView as _};
    type Fields = Resource<FieldMap>;
    linker.allow_shadowing(true);
    let mut types = linker.instance(WASI_HTTP_TYPES).map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]fields.append",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (fields, name, value): (Fields, String, Vec<u8>)| {
                capabilities::append_field(store.data_mut().http(), fields, name, value).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]fields.set",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (fields, name, values): (Fields, String, Vec<Vec<u8>>)| {
                capabilities::set_field(store.data_mut().http(), fields, name, values).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]fields.delete",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (fields, name): (Fields, String)| {
                capabilities::delete_field(store.data_mut().http(), fields, name).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[static]fields.from-list",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (entries,): (Vec<(String, Vec<u8>)>,)| {
                capabilities::fields_from_list(store.data_mut().http(), entries).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]outgoing-request.body",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (request,): (Resource<HostOutgoingRequest>,)| {
                let bodies = store.data().wasi.net.bodies.clone();
                capabilities::request_body(&bodies, store.data_mut().http(), request).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]outgoing-response.body",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (response,): (Resource<HostOutgoingResponse>,)| {
                let bodies = store.data().wasi.net.bodies.clone();
                capabilities::response_body(&bodies, store.data_mut().http(), response).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Replaces the `outgoing-request` setters that keep a guest's string with
/// the network capability's bounded versions, which answer `err` past a
/// length bound before wasmtime-wasi-http keeps it.
fn bound_http_request_parts(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi_http::WasiHttpView as _;
    use wasmtime_wasi_http::p2::bindings::http::types::Method;
    use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
    type Request = Resource<HostOutgoingRequest>;
    linker.allow_shadowing(true);
    let mut types = linker.instance(WASI_HTTP_TYPES).map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]outgoing-request.set-authority",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (request, authority): (Request, Option<String>)| {
                capabilities::set_authority(store.data_mut().http(), request, authority).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]outgoing-request.set-method",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (request, method): (Request, Method)| {
                capabilities::set_method(store.data_mut().http(), request, method).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap(
            "[method]outgoing-request.set-path-with-query",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (request, path): (Request, Option<String>)| {
                capabilities::set_path_with_query(store.data_mut().http(), request, path).map(|r| (r,))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:sockets` version wasmtime-wasi 48 implements; guests importing
/// any compatible 0.2.x version link against it.
const WASI_SOCKETS: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Replaces `resolve-addresses` with the network capability's audited
/// version, which records a refused lookup in the run's denials
/// (wasmtime-wasi refuses it silently) and otherwise hands the call to
/// wasmtime-wasi unchanged.
fn audit_name_lookups(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::sockets::network::Network;
    linker.allow_shadowing(true);
    linker
        .instance(WASI_SOCKETS)
        .map_err(anyhow::Error::from)?
        .func_wrap(
            "resolve-addresses",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (network, name): (Resource<Network>, String)| {
                let p2 = &mut store.data_mut().wasi;
                capabilities::resolve_addresses(&p2.net, &mut p2.ctx, &mut p2.table, network, name)
                    .map(|lookup| (lookup,))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:sockets` interfaces whose calls the network capability decides
/// itself, at the versions wasmtime-wasi 48 implements.
const WASI_TCP: &str = "wasi:sockets/tcp@0.2.12";
const WASI_UDP: &str = "wasi:sockets/udp@0.2.12";
const WASI_TCP_CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const WASI_UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// Replaces the socket calls the network capability must tell apart with its
/// versions in [`capabilities::tcp_start_bind`] and its siblings: creating a TCP or UDP socket
/// (refused and recorded when the policy grants no use of it), and `start-bind`
/// and `start-listen`, so that an explicit bind is never mistaken for the
/// implicit one a connect performs and a listen knows how its socket was bound.
/// Each decides, then runs wasmtime-wasi's own call.
fn audit_sockets(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::sockets::network::{IpAddressFamily, IpSocketAddress, Network};
    use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
    type Bind<S> = (Resource<S>, Resource<Network>, IpSocketAddress);
    linker.allow_shadowing(true);
    let mut create = linker.instance(WASI_TCP_CREATE).map_err(anyhow::Error::from)?;
    create
        .func_wrap(
            "create-tcp-socket",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (family,): (IpAddressFamily,)| {
                let P2Ctx { net, ctx, table, .. } = &mut store.data_mut().wasi;
                capabilities::create_tcp_socket(net, ctx, table, family).map(|socket| (socket,))
            },
        )
        .map_err(anyhow::Error::from)?;
    let mut create = linker.instance(WASI_UDP_CREATE).map_err(anyhow::Error::from)?;
    create
        .func_wrap_async(
            "create-udp-socket",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (family,): (IpAddressFamily,)| {
                Box::new(async move {
                    let P2Ctx { net, ctx, table, .. } = &mut store.data_mut().wasi;
                    capabilities::create_udp_socket(net, ctx, table, family)
                        .await
                        .map(|socket| (socket,))
                })
            },
        )
        .map_err(anyhow::Error::from)?;
    let mut tcp = linker.instance(WASI_TCP).map_err(anyhow::Error::from)?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-bind",
        |mut store: StoreContextMut<'_, State<P2Ctx>>, (this, network, local): Bind<TcpSocket>| {
            Box::new(async move {
                let P2Ctx { net, ctx, table, .. } = &mut store.data_mut().wasi;
                capabilities::tcp_start_bind(net, ctx, table, this, network, local)
                    .await
                    .map(|r| (r,))
            })
        },
    )
    .map_err(anyhow::Error::from)?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-listen",
        |mut store: StoreContextMut<'_, State<P2Ctx>>, (this,): (Resource<TcpSocket>,)| {
            Box::new(async move {
                let P2Ctx { net, ctx, table, .. } = &mut store.data_mut().wasi;
                capabilities::tcp_start_listen(net, ctx, table, this)
                    .await
                    .map(|r| (r,))
            })
        },
    )
    .map_err(anyhow::Error::from)?;
    let mut udp = linker.instance(WASI_UDP).map_err(anyhow::Error::from)?;
    udp.func_wrap_async(
        "[method]udp-socket.start-bind",
        |mut store: StoreContextMut<'_, State<P2Ctx>>, (this, network, local): Bind<UdpSocket>| {
            Box::new(async move {
                let P2Ctx { ctx, table, .. } = &mut store.data_mut().wasi;
                capabilities::udp_start_bind(ctx, table, this, network, local)
                    .await
                    .map(|r| (r,))
            })
        },
    )
    .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:http` version wasmtime-wasi-http 48 implements; guests
/// importing any compatible 0.2.x version link against it.
const WASI_HTTP_OUTGOING: &str = "wasi:http/outgoing-handler@0.2.12";

/// Replaces `handle` with the network capability's, which decides and
/// records each request before wasi-http parses it, then hands an allowed
/// one, rebuilt from what was decided, to wasi-http's own.
fn decide_http_requests(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi_http::RequestOptions;
    use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
    type Args = (Resource<HostOutgoingRequest>, Option<Resource<RequestOptions>>);
    linker.allow_shadowing(true);
    linker
        .instance(WASI_HTTP_OUTGOING)
        .map_err(anyhow::Error::from)?
        .func_wrap(
            "handle",
            |mut store: StoreContextMut<'_, State<P2Ctx>>, (request, options): Args| {
                let p2 = &mut store.data_mut().wasi;
                capabilities::handle_http(&mut p2.net, &mut p2.table, &mut p2.http, request, options)
                    .map(|handled| (handled,))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Registers the guarded view of wasmtime-wasi's `wasi:filesystem` over its
/// own: every `types` and `preopens` function now asks the store's guard.
fn guard_p2_files(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
    fn view(state: &mut State<P2Ctx>) -> fs_p2::Guarded<'_> {
        fs_p2::Guarded {
            inner: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: state.wasi.ctx.filesystem(),
                table: &mut state.wasi.table,
            },
            guard: &mut state.fs,
        }
    }
    linker.allow_shadowing(true);
    types::add_to_linker::<State<P2Ctx>, fs_p2::GuardedFs>(linker, view).map_err(anyhow::Error::from)?;
    preopens::add_to_linker::<State<P2Ctx>, fs_p2::GuardedFs>(linker, view).map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}
