//! The WASI linkers every program is linked with: wasi_snapshot_preview1 for
//! modules; WASI 0.2 and outgoing wasi:http for components. Two functions are
//! shadowed: `proc_exit`, so every exit status is reported as what it is,
//! and `resolve-addresses`, whose decision and record belong to the network
//! capability ([`capabilities::resolve_addresses`]).

use crate::capabilities;
use crate::store::{P2Ctx, State};
use anyhow::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::Resource;
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
    linker.allow_shadowing(false);
    Ok(linker)
}

pub(super) fn new_p2_linker(engine: &wasmtime::Engine) -> Result<wasmtime::component::Linker<State<P2Ctx>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    audit_name_lookups(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    Ok(linker)
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
