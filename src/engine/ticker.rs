//! The engine's threads: the epoch ticker that lets the deadline and cancel
//! checks run while a guest computes, and the I/O runtime blocking runs are
//! driven on.

use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How often the epoch ticker advances the engine's epoch. The deadline is
/// checked at this granularity while the guest computes.
pub(crate) const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(5);

/// Advances the engine's epoch every [`EPOCH_TICK`] so that running
/// guests reach their deadline check. Stops when the returned flag is set or
/// the engine is gone.
pub(super) fn start_epoch_ticker(engine: &wasmtime::Engine) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let engine = engine.weak();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("wasmcell-epoch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .context("failed to start the epoch thread")?;
    Ok(stop)
}

/// The runtime blocking runs are driven on: one worker thread, with I/O and
/// timers, for the host calls of every run on the engine.
pub(super) fn new_io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wasmcell-io")
        .enable_all()
        .build()
        .context("failed to start the sandbox's I/O runtime")
}
