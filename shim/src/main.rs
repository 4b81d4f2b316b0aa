//! `containerd-shim-wasmcell-v1`: a containerd shim that runs WebAssembly
//! workloads under wasmcell policies.
//!
//! containerd starts this binary for every container whose runtime is
//! `io.containerd.wasmcell.v1` (or this binary's absolute path). runwasi's
//! `containerd-shim-wasm` library does the containerd side (the task API,
//! the container's namespaces and cgroup, its stdio); inside the container
//! this shim decides the policy and hands the run to the wasmcell library,
//! which makes every other decision: what the guest may touch, its limits,
//! how the run ended and the exit code.
//!
//! See the README's "Kubernetes" section for installation.

mod compile;
mod node;
mod run;

use containerd_shim_wasm::shim::{Cli as _, Compiler, Config, Shim, Version, version};

/// The shim: its name gives containerd's runtime type `io.containerd.wasmcell.v1`.
struct WasmcellShim;

impl Shim for WasmcellShim {
    type Sandbox = run::WasmcellSandbox;

    fn name() -> &'static str {
        "wasmcell"
    }

    fn version() -> Version {
        version!()
    }

    /// Images whose module is a Wasm-typed OCI layer are compiled once, by
    /// the first container, and containerd keeps the code for the next.
    async fn compiler() -> Option<impl Compiler> {
        Some(compile::WasmcellCompiler)
    }
}

fn main() {
    // Before anything forks: the processes that become containers are forked
    // from a helper the library starts next, so what is read here is what
    // they see. Inside a container neither the runtime spec nor the node's
    // files are reachable any more.
    node::capture();
    WasmcellShim::run(Config {
        default_log_level: "info".to_string(),
        ..Config::default()
    });
}
