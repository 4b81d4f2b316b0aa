//! The engine-wide settings ([`EngineConfig`], [`Allocator`], [`PoolingConfig`]),
//! the Wasm proposals a guest may use, and turning them into wasmtime's
//! `Config`: the part of a policy's limits that is fixed when code is compiled.

use crate::limiter::MAX_TABLE_ELEMENTS;
use crate::policy::{ByteSize, Policy, Proposal, Proposals, UnknownImports};
use anyhow::{Context as _, Result};
use wasmtime::{Config, ModuleVersionStrategy, WasmFeatures};

/// The engine-wide settings: the parts of a policy's limits that wasmtime
/// fixes when it compiles code, and how instances are allocated. Every
/// sandbox on one engine shares them.
///
/// # Example
///
/// ```
/// use wasmcell::{Allocator, EngineConfig, PoolingConfig, Policy};
///
/// // What `Sandbox::builder()` picks for a policy on its own:
/// let config = EngineConfig::for_policy(&Policy::deny_all());
/// assert_eq!(config, EngineConfig::default());
/// assert!(!config.fuel);
///
/// // A job runner's engine: fuel metering for policies that set
/// // `limits.fuel`, and a pool of 200 concurrent runs.
/// let config = EngineConfig {
///     fuel: true,
///     allocator: Allocator::Pooling(PoolingConfig::new(200)),
///     ..EngineConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    /// Compile fuel metering in. Required by policies that set `limits.fuel`.
    /// Off by default: on CPU-bound guests it adds 0 to 17 percent on top of
    /// the epoch checks every engine has (those cost about 1.6x unmetered
    /// code; see the README's metering figures), which policies without
    /// `limits.fuel` need not pay.
    pub fuel: bool,
    /// Wasm stack size in bytes (`limits.stack`, 1 MiB by default).
    pub stack: u64,
    /// How instances, memories and fiber stacks are allocated.
    pub allocator: Allocator,
    /// The Wasm proposals turned on beyond [`ENABLED_PROPOSALS`], those they
    /// imply included (`[wasm] proposals`; none by default). Code compiled
    /// with one set is never shared with an engine of another: the caches
    /// key on the whole configuration.
    pub proposals: Proposals,
    /// What becomes of an import no linker provides (`[wasm]
    /// unknown-imports`; refused by default). Compiled code does not depend
    /// on it: the disk cache shares code between engines that differ only
    /// here, and each links it its own way.
    pub unknown_imports: UnknownImports,
}

impl Default for EngineConfig {
    /// No fuel metering, the default `limits.stack`, and on-demand allocation.
    fn default() -> Self {
        EngineConfig::for_policy(&Policy::deny_all())
    }
}

/// How an engine allocates each run's instances, linear memories, tables and
/// the fiber stack the guest runs on.
///
/// - [`Allocator::OnDemand`] (the default) maps memory for each run and
///   unmaps it afterwards. Nothing is reserved up front, an engine costs
///   little, and a run may use up to its policy's `limits.memory`. Best for a
///   CLI run, a few runs, or many mostly idle sandboxes. Each run in flight
///   holds about 7 memory mappings, so Linux's default `vm.max_map_count`
///   (65530) caps a process at roughly 9,000 concurrent runs; raise that
///   sysctl for more.
/// - [`Allocator::Pooling`] reserves slots for `max_runs` concurrent runs
///   when the engine is created and reuses them: instantiation avoids
///   `mmap`/`munmap` and page-table churn, so short runs are markedly faster
///   and scale better across threads (see the README's benchmark figures).
///   The costs: about 8 GiB of *virtual* address space per run slot (each
///   memory slot keeps wasmtime's 4 GiB guard-region layout), a hard cap of
///   `max_runs` runs in flight (one more fails with an error rather than
///   waiting), each linear memory capped at `max_memory`, at most 4 tables
///   of at most 2^20 elements per core module, and resident memory kept
///   warm in recently used slots ([`PoolingConfig::keep_resident`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum Allocator {
    /// Allocate per run.
    #[default]
    OnDemand,
    /// Reuse pre-reserved slots.
    Pooling(PoolingConfig),
}

/// Sizes of a pooling allocator; see [`Allocator::Pooling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PoolingConfig {
    /// Most runs in flight on the engine at once.
    pub max_runs: u32,
    /// Most bytes of linear memory one memory may grow to. Policies whose
    /// `limits.memory` is larger cannot use the engine.
    pub max_memory: u64,
    /// Bytes at the start of each memory and table slot that are zeroed in
    /// place when a run ends, instead of handed back to the kernel and
    /// faulted in again by the next run. Handing pages back serializes
    /// threads on the kernel's page tables; keeping them resident is what
    /// lets short runs scale across cores (see the README's figures). The
    /// cost is resident memory: up to this much per memory and per table in
    /// each slot that has been used, only for pages a guest touched. 0 hands
    /// everything back.
    pub keep_resident: u64,
}

impl PoolingConfig {
    /// A pool for `max_runs` concurrent runs whose memories may grow to the
    /// default `limits.memory` (256 MiB), keeping 2 MiB of each slot's memory
    /// and table resident (a small Rust guest's whole working set).
    pub fn new(max_runs: u32) -> PoolingConfig {
        PoolingConfig {
            max_runs,
            max_memory: Policy::deny_all().limits().memory.value,
            keep_resident: 2 << 20,
        }
    }
}

impl EngineConfig {
    /// The configuration a policy needs: fuel only when it meters fuel, its
    /// stack size, its Wasm proposals with those they imply, and on-demand
    /// allocation.
    pub fn for_policy(policy: &Policy) -> EngineConfig {
        EngineConfig {
            fuel: policy.limits().fuel.value.is_some(),
            stack: policy.limits().stack.value,
            allocator: Allocator::OnDemand,
            proposals: policy.proposals().with_implied(),
            unknown_imports: policy.unknown_imports().value,
        }
    }

    /// Why `policy` cannot run on an engine with this configuration, if it cannot.
    pub(crate) fn mismatch(&self, policy: &Policy) -> Option<String> {
        if policy.limits().fuel.value.is_some() && !self.fuel {
            return Some("the policy meters fuel but the engine was built without fuel metering; create the engine with `fuel: true`".into());
        }
        if let Allocator::Pooling(pool) = self.allocator
            && policy.limits().memory.value > pool.max_memory
        {
            return Some(format!(
                "the policy's limits.memory is {} but the engine's pool slots hold {}; raise PoolingConfig::max_memory",
                ByteSize(policy.limits().memory.value),
                ByteSize(pool.max_memory)
            ));
        }
        // Exactly the policy's set: an engine with more would let guests
        // reach code the policy did not opt in to.
        let wanted = policy.proposals().with_implied();
        if wanted != self.proposals {
            return Some(format!(
                "the policy's wasm.proposals need the Wasm proposals {wanted} but the engine turns on {}; create the engine with `EngineConfig::for_policy` (or `proposals` set to the policy's)",
                self.proposals
            ));
        }
        let unknown = policy.unknown_imports().value;
        if unknown != self.unknown_imports {
            return Some(format!(
                "the policy's wasm.unknown-imports is `{unknown}` but the engine's is `{}`; create the engine with `EngineConfig::for_policy` (or `unknown_imports` set to the policy's)",
                self.unknown_imports
            ));
        }
        if policy.limits().stack.value != self.stack {
            return Some(format!(
                "the policy's limits.stack is {} but the engine's stack is {}; use an engine per stack size",
                ByteSize(policy.limits().stack.value),
                ByteSize(self.stack)
            ));
        }
        None
    }
}

/// The Wasm proposals every engine has: those guests built for wasm32-wasip1
/// and wasm32-wasip2 use, and `extended-const`, which adds no runtime power
/// (constant arithmetic evaluated while instantiating) and which toolchains
/// emit (Python components linked from wasi-sdk's shared libraries).
/// Everything else is off unless a policy turns it on (`[wasm] proposals`,
/// [`EngineConfig::proposals`]), so a guest cannot reach less-tested compiler
/// and runtime paths (GC, exceptions, tail calls, ...); threads, shared
/// memory and stack switching are always off. `reference-types` means
/// `funcref` only: `externref` is a GC type and needs the `gc` proposal.
pub const ENABLED_PROPOSALS: &[&str] = &[
    "mutable-globals",
    "sign-extension",
    "nontrapping-float-to-int",
    "multi-value",
    "bulk-memory",
    "reference-types",
    "simd",
    "extended-const",
    "component-model",
];

/// The features every engine has (what [`ENABLED_PROPOSALS`] lists): the
/// Wasm 2.0 set, extended constant expressions and the component model,
/// without GC types (`externref`), which need a collector and come with
/// `gc`. Deliberately not wasmtime's defaults, which grow with each release.
const BASE_FEATURES: WasmFeatures = WasmFeatures::WASM2
    .difference(WasmFeatures::GC_TYPES)
    .union(WasmFeatures::EXTENDED_CONST)
    .union(WasmFeatures::COMPONENT_MODEL);

/// What one proposal adds to the validator's and compiler's features.
pub(super) fn proposal_features(p: Proposal) -> WasmFeatures {
    match p {
        // wasmtime keeps exception objects on the GC heap, so exceptions
        // need GC types (a collector) even without the `gc` proposal.
        Proposal::Exceptions => WasmFeatures::EXCEPTIONS | WasmFeatures::GC_TYPES,
        Proposal::TailCall => WasmFeatures::TAIL_CALL,
        Proposal::ExtendedConst => WasmFeatures::EXTENDED_CONST,
        Proposal::FunctionReferences => WasmFeatures::FUNCTION_REFERENCES,
        Proposal::Gc => WasmFeatures::GC | WasmFeatures::GC_TYPES,
        Proposal::MultiMemory => WasmFeatures::MULTI_MEMORY,
        Proposal::Memory64 => WasmFeatures::MEMORY64,
        Proposal::RelaxedSimd => WasmFeatures::RELAXED_SIMD,
        Proposal::CustomPageSizes => WasmFeatures::CUSTOM_PAGE_SIZES,
        Proposal::WideArithmetic => WasmFeatures::WIDE_ARITHMETIC,
    }
}

/// Exactly the features an engine with `proposals` validates and compiles
/// with; the validator (`validate.rs`) uses the same set, so it refuses what
/// wasmtime would.
pub(super) fn wasm_features(proposals: Proposals) -> WasmFeatures {
    proposals
        .with_implied()
        .iter()
        .fold(BASE_FEATURES, |f, p| f | proposal_features(p))
}

pub(super) fn new_wasmtime_engine(config: &EngineConfig) -> Result<wasmtime::Engine> {
    let mut wasm = Config::new();
    // Everything off, then exactly our set on: nothing is left to
    // wasmtime's defaults.
    let features = wasm_features(config.proposals);
    wasm.wasm_features(WasmFeatures::all(), false)
        .wasm_features(features, true);
    configure_engine(&mut wasm, config);
    wasm.module_version(ModuleVersionStrategy::Custom(code_version(config.proposals)))?;
    wasmtime::Engine::new(&wasm)
        .map_err(anyhow::Error::from)
        .context("failed to configure the WebAssembly engine")
}

/// The version written into compiled code, which wasmtime refuses to load
/// into an engine whose version differs: wasmtime's own (its default) and
/// the Wasm proposals. wasmtime on its own accepts code compiled with fewer
/// features than the engine has; naming the set here makes code compiled for
/// one set of proposals refused by an engine with any other, so precompiled
/// code runs only under the proposals it was compiled for.
pub(super) fn code_version(proposals: Proposals) -> String {
    format!(
        "{} (wasmcell; Wasm proposals: {})",
        ModuleVersionStrategy::WasmtimeVersion.as_str(),
        proposals.with_implied()
    )
}

/// The engine-wide part of the limits: whether fuel is metered and how deep
/// the Wasm stack may grow. Epoch interruption is always on.
pub(crate) fn configure_engine(config: &mut Config, engine: &EngineConfig) {
    config.consume_fuel(engine.fuel);
    config.epoch_interruption(true);
    let stack = usize::try_from(engine.stack).unwrap_or(usize::MAX);
    config.max_wasm_stack(stack);
    // Guests run on a fiber (async); its stack must hold the Wasm stack plus
    // room for host frames under it.
    config.async_stack_size(stack.saturating_add(1 << 20));
    if let Allocator::Pooling(pool) = engine.allocator {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling_config(pool)));
    }
}

/// Most core instances one run may hold in a pool: a component made by
/// wasm32-wasip2 instantiates a handful (its code plus small shim modules).
const POOL_CORE_INSTANCES_PER_RUN: u32 = 8;
/// Most tables one core module may define in a pool.
const POOL_TABLES_PER_MODULE: u32 = 4;

/// Pool sizes for `max_runs` concurrent runs. Each run gets one fiber stack,
/// one component instance, and room for the core instances, memories and
/// tables a wasm32-wasip1 or wasm32-wasip2 guest makes.
fn pooling_config(pool: PoolingConfig) -> wasmtime::PoolingAllocationConfig {
    let runs = pool.max_runs.max(1);
    let mut config = wasmtime::PoolingAllocationConfig::new();
    config
        .total_component_instances(runs)
        .total_core_instances(runs.saturating_mul(POOL_CORE_INSTANCES_PER_RUN))
        .total_memories(runs.saturating_mul(2))
        .total_tables(runs.saturating_mul(POOL_TABLES_PER_MODULE))
        .total_stacks(runs)
        .max_tables_per_module(POOL_TABLES_PER_MODULE)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(usize::try_from(pool.max_memory).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(usize::try_from(pool.keep_resident).unwrap_or(usize::MAX))
        .table_keep_resident(usize::try_from(pool.keep_resident).unwrap_or(usize::MAX));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_config_must_fit_the_policy() {
        let mut policy = Policy::deny_all();
        let config = EngineConfig::for_policy(&policy);
        assert_eq!(config.mismatch(&policy), None);
        policy = Policy::builder().fuel(10).build().unwrap();
        assert!(config.mismatch(&policy).unwrap().contains("fuel"));
        let metered = EngineConfig { fuel: true, ..config };
        let pooled = EngineConfig {
            allocator: Allocator::Pooling(PoolingConfig {
                max_memory: 1 << 20,
                ..PoolingConfig::new(4)
            }),
            ..config
        };
        assert!(pooled.mismatch(&Policy::deny_all()).unwrap().contains("max_memory"));
        assert_eq!(
            metered.mismatch(&Policy::deny_all()),
            None,
            "a fuel engine also runs unmetered policies"
        );
        let deep = EngineConfig {
            stack: 8 << 20,
            ..config
        };
        assert!(deep.mismatch(&Policy::deny_all()).unwrap().contains("limits.stack"));
        let trapping = EngineConfig {
            unknown_imports: UnknownImports::Trap,
            ..config
        };
        assert!(
            trapping
                .mismatch(&Policy::deny_all())
                .unwrap()
                .contains("wasm.unknown-imports")
        );
    }

    // See: #20
    #[test]
    fn code_versions_name_every_proposal_set_apart_and_fit_wasmtime() {
        let all = Proposal::ALL.iter().fold(Proposals::EMPTY, |set, p| set.with(*p));
        let version = code_version(all);
        // wasmtime stores the version's length in one byte.
        assert!(version.len() < 256, "{} bytes: {version}", version.len());
        assert_ne!(code_version(Proposals::EMPTY), version);
        let one = code_version(Proposals::EMPTY.with(Proposal::TailCall));
        assert!(one.contains("tail-call"), "{one}");
        assert_ne!(one, code_version(Proposals::EMPTY.with(Proposal::Exceptions)));
    }
}
