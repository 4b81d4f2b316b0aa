//! Raw wasmtime, set up by hand the way a plain embedder would: the baseline of figures 2, 3
//! and 6.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{
    InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often wasmcell's epoch thread ticks; the raw wasmtime engines tick as often.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How a raw wasmtime engine is configured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawConfig {
    pub(crate) fuel: bool,
    pub(crate) epoch: bool,
    /// Pooling allocator with this many slots; on-demand otherwise.
    pub(crate) pool: Option<u32>,
    /// Call through async (on a fiber, as wasmcell does) rather than sync.
    pub(crate) fiber: bool,
    /// Bytes of each pooled memory and table reset in place rather than given back to the
    /// kernel (`linear_memory_keep_resident`, `table_keep_resident`); wasmtime's default is 0.
    pub(crate) keep_resident: usize,
}

/// A wasmtime engine with WASI preview 1 linked and, when epochs are on, a ticker thread.
pub(crate) struct RawWasmtime {
    engine: wasmtime::Engine,
    pub(crate) config: RawConfig,
    linker: Linker<WasiP1Ctx>,
    _ticker: Option<Ticker>,
}

impl RawWasmtime {
    pub(crate) fn new(config: RawConfig) -> Result<RawWasmtime> {
        let mut wasm = wasmtime::Config::new();
        // wasmcell's default stack and fiber sizes.
        wasm.consume_fuel(config.fuel)
            .epoch_interruption(config.epoch)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20);
        if let Some(slots) = config.pool {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                .total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .total_stacks(slots)
                .max_memory_size(256 << 20)
                .linear_memory_keep_resident(config.keep_resident)
                .table_keep_resident(config.keep_resident);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wasmtime::Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        if config.fiber {
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |wasi| wasi)?;
        } else {
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |wasi| wasi)?;
        }
        let ticker = config.epoch.then(|| Ticker::start(&engine)).transpose()?;
        Ok(RawWasmtime {
            engine,
            config,
            linker,
            _ticker: ticker,
        })
    }

    pub(crate) fn load(&self, path: &str) -> Result<InstancePre<WasiP1Ctx>> {
        let module = Module::from_file(&self.engine, path)?;
        Ok(self.linker.instantiate_pre(&module)?)
    }

    /// A store whose guest sees `args` and writes stdout to the returned pipe, with all the
    /// fuel there is and an epoch callback at every tick; `dir` (host, guest) is preopened
    /// read-write.
    fn new_store(&self, args: &[&str], dir: Option<(&Path, &str)>) -> Result<(Store<WasiP1Ctx>, MemoryOutputPipe)> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let mut argv = vec!["guest.wasm"];
        argv.extend_from_slice(args);
        let mut builder = WasiCtxBuilder::new();
        builder.args(&argv).stdout(stdout.clone());
        if let Some((host, guest)) = dir {
            builder.preopened_dir(host, guest, FsPerms::ReadWrite)?;
        }
        let wasi = builder.build_p1();
        let mut store = Store::new(&self.engine, wasi);
        if self.config.fuel {
            store.set_fuel(u64::MAX)?;
        }
        if self.config.epoch {
            store.set_epoch_deadline(1);
            // A sync call cannot yield, so it continues; the trip to the host is the same.
            let fiber = self.config.fiber;
            store.epoch_deadline_callback(move |_| {
                Ok(if fiber {
                    UpdateDeadline::Yield(1)
                } else {
                    UpdateDeadline::Continue(1)
                })
            });
        }
        Ok((store, stdout))
    }

    /// Instantiates, runs `_start` and drops the instance; returns what it printed.
    pub(crate) fn run(&self, pre: &InstancePre<WasiP1Ctx>, args: &[&str]) -> Result<Vec<u8>> {
        let (mut store, stdout) = self.new_store(args, None)?;
        let instance = pre.instantiate(&mut store)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        check_exit(start.call(&mut store, ()))?;
        drop(store);
        Ok(stdout.contents().to_vec())
    }

    pub(crate) async fn run_async(&self, pre: &InstancePre<WasiP1Ctx>, args: &[&str]) -> Result<Vec<u8>> {
        self.run_async_in(pre, args, None).await
    }

    /// As [`run_async`](Self::run_async), with `dir` (host, guest) preopened read-write.
    pub(crate) async fn run_async_in(
        &self,
        pre: &InstancePre<WasiP1Ctx>,
        args: &[&str],
        dir: Option<(&Path, &str)>,
    ) -> Result<Vec<u8>> {
        let (mut store, stdout) = self.new_store(args, dir)?;
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        check_exit(start.call_async(&mut store, ()).await)?;
        drop(store);
        Ok(stdout.contents().to_vec())
    }
}

/// Accepts a return from `_start` or `proc_exit(0)`.
fn check_exit(result: wasmtime::Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => Ok(()),
        Err(err) => Err(anyhow::Error::from(err).context("the guest failed under raw wasmtime")),
    }
}

/// Increments an engine's epoch every [`EPOCH_TICK`], as wasmcell's epoch thread does, until
/// dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("bench-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("failed to start an epoch thread")?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
