//! Turning a [`Policy`] into the guest's WASI view: preopened directories,
//! environment, arguments, stdio, clocks, randomness and network grants, and
//! recording every capability use the policy refuses ([`Denial`]).
//!
//! Everything starts from `WasiCtxBuilder::new()`, which grants nothing, and
//! only what the policy names is added. Sockets are switched on for each
//! protocol some `[net]` entry uses, and every use reaches one check here:
//! creating a socket, each socket address (an explicit bind told apart from
//! the implicit one of a connect by [`tcp_start_bind`](net::tcp_start_bind)
//! and its siblings, wired in by the engine's linker), each name lookup
//! ([`resolve_addresses`](net::resolve_addresses), wired in likewise) and each outgoing
//! HTTP request ([`handle_http`](net::handle_http), likewise wired in) is decided against the policy's `[net]` grants, and a refusal
//! is recorded in the run's bounded [`DenialLog`](denial::DenialLog).

mod audit;
mod broker;
mod clocks_random;
mod denial;
mod env;
mod fs;
mod http_bounds;
mod http_meter;
mod http_rules;
mod http_send;
mod net;
mod stdio;

pub(crate) use audit::AuditHook;
pub use audit::{
    AuditFile, AuditSink, CapabilityUse, Decision, HttpOriginCounts, MAX_USES_SEEN, SeenUse, UseCounts, UsesSeen,
};
pub(crate) use broker::Broker;
pub(crate) use denial::Records;
pub use denial::{DENIAL_BYTES, DENIAL_FIELD_BYTES, Denial, MAX_DENIALS, MAX_HTTP_ORIGINS, OTHER_ORIGINS};
pub(crate) use fs::{FsGuard, p1 as fs_p1, p2 as fs_p2};
pub(crate) use http_bounds::{
    append_field, delete_field, fields_from_list, http_ctx, request_body, response_body, set_authority, set_field,
    set_method, set_path_with_query,
};
pub(crate) use net::{
    NetAudit, create_tcp_socket, create_udp_socket, handle_http, resolve_addresses, tcp_start_bind, tcp_start_listen,
    udp_start_bind,
};

use crate::limiter::OutputBudget;
use crate::policy::Policy;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::WasiCtxBuilder;

/// Per-run I/O choices that are not part of the policy: what an embedding
/// host passes for one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunIo {
    /// Bytes to feed as stdin, replacing the policy's stdin.
    pub stdin: Option<bytes::Bytes>,
    /// Capture stdout/stderr that the policy sends to "inherit" into memory.
    pub capture: bool,
    /// Print each refused capability use to stderr as it happens.
    pub log_denials: bool,
    /// Receives every capability use.
    pub audit: Option<AuditHook>,
    /// Keep each run's distinct uses for its outcome.
    pub record_uses: bool,
}

/// What a policy builds for one run: the WASI context's builder and the
/// filesystem guard that goes into the store beside it.
pub(crate) struct WasiSetup {
    pub(crate) builder: WasiCtxBuilder,
    pub(crate) fs: FsGuard,
}

/// The WASI a program speaks, where the two previews tell a guest the same
/// thing in different words: an output stream whose reader has gone is
/// `closed` in preview 2 and `EPIPE` in preview 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preview {
    /// `wasi_snapshot_preview1`: core modules.
    P1,
    /// WASI 0.2: components.
    P2,
}

/// Output captured from one run, shared with the streams that fill it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

impl Policy {
    /// Builds the guest's WASI context for one run.
    ///
    /// `argv` is the guest's full argument vector, `argv[0]` included;
    /// `preview` is the WASI the program speaks.
    ///
    /// # Security
    ///
    /// Grants exactly the policy's directories, environment and stdio. The
    /// host opens the directories and stdio files the policy names itself,
    /// with its own authority, so it opens them without following symbolic
    /// links (see [`crate::hostfs`]): a guest with write access may have
    /// replaced any of them with a link since the policy was resolved.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn wasi_builder(
        &self,
        argv: &[String],
        preview: Preview,
        io: &RunIo,
        budget: &Arc<OutputBudget>,
        captured: &Captured,
        net: &NetAudit,
        denials: &Records,
    ) -> Result<WasiSetup> {
        let mut builder = WasiCtxBuilder::new();
        builder.args(argv);
        env::add_env(&mut builder, self, &net.broker);
        let fs = fs::add_preopens(&mut builder, self, denials)?;
        stdio::add_stdio(&mut builder, self, preview, io, budget, captured)?;
        clocks_random::add_clocks(&mut builder, self.clocks());
        clocks_random::add_random(&mut builder, self.seed());
        net::add_network(&mut builder, net);
        Ok(WasiSetup { builder, fs })
    }
}
