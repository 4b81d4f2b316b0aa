//! The per-run store data ([`State`]) and the WASI and HTTP views wasmtime's
//! bindings reach the guest's context through.

use crate::cancel::CancelHandle;
use crate::capabilities::{FsGuard, NetAudit};
use crate::limiter::MemoryLimiter;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Per-run store data: the guest's WASI context and its limiter.
pub(crate) struct State<W> {
    pub(crate) wasi: W,
    /// The filesystem guard every file operation of the guest asks first.
    pub(crate) fs: FsGuard,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: Instant,
    pub(crate) cancel: Option<CancelHandle>,
}

/// WASI 0.2 context for components.
pub(crate) struct P2Ctx {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The run's network grants and refusal record, also the HTTP hook.
    pub(crate) net: NetAudit,
    pub(crate) http: WasiHttpCtx,
}

impl WasiHttpView for State<P2Ctx> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let p2 = &mut self.wasi;
        WasiHttpCtxView {
            hooks: &mut p2.net,
            table: &mut p2.table,
            ctx: &mut p2.http,
        }
    }
}

impl WasiView for State<P2Ctx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}
