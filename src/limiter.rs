//! Enforcing the limits wasmtime leaves to the embedder. (The engine-wide
//! part of the limits, fuel metering and stack size, is set in `engine`.)
//!
//! wasmtime meters fuel and checks epochs itself; this module closes the gaps:
//! - memory refusals are not silent: the limiter stops the guest with a typed
//!   [`LimitExceeded`] error instead of letting `memory.grow` return -1, which
//!   an allocator would turn into an indistinguishable `unreachable` trap;
//! - output is counted across stdout and stderr together, and the guest is
//!   stopped at the byte that crosses the budget;
//! - the wall-clock deadline is checked from the epoch callback, and the
//!   runner also races the whole run against a timer, because a guest blocked
//!   in a host call never reaches an epoch check.

use crate::policy::{ByteSize, Limits};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasmtime::ResourceLimiter;

/// Most instances a guest may create: a component is several core instances.
const MAX_INSTANCES: usize = 100;
/// Most tables and memories, across all instances.
const MAX_TABLES: usize = 100;
const MAX_MEMORIES: usize = 100;
/// Most elements in one table (8 MiB of host memory). Every element is also
/// charged against `limits.memory`; this cap keeps one table within what the
/// pooling allocator reserves for it.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Host bytes one table element takes: wasmtime 48 stores a funcref element
/// as one pointer (`Option<SendSyncPtr<VMFuncRef>>`), and the function it
/// points to lives in the instance, however many elements name it. (An
/// `externref` element, allowed with the `gc` proposal, is a 4-byte GC
/// reference: charging 8 over-counts it, never under.)
pub(crate) const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// Caps the guest's WASI handle table at `limits.handles`. A guest that asks
/// for one more is stopped with a trap (wasmtime-wasi's answer to a full
/// table), before it can exhaust the host's file descriptors.
pub(crate) fn cap_handles(table: &mut wasmtime::component::ResourceTable, limits: &Limits) {
    table.set_max_capacity(usize::try_from(limits.handles.value).unwrap_or(usize::MAX));
}

/// A limit the sandbox enforced by stopping the guest. Carried inside the
/// `wasmtime::Error` that ends the call, so the outcome is classified by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LimitExceeded {
    /// Linear memory plus table elements would have grown past `limits.memory`.
    Memory { requested: u64, limit: u64 },
    /// Stdout plus stderr would have passed `limits.output`.
    Output { limit: u64 },
    /// The wall-clock deadline passed while the guest was computing.
    Timeout,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::Memory { requested, limit } => write!(
                f,
                "memory limit reached: linear memory and tables would grow to {}, over the {} allowed",
                ByteSize(*requested),
                ByteSize(*limit)
            ),
            LimitExceeded::Output { limit } => {
                write!(f, "output limit reached: more than {} written", ByteSize(*limit))
            }
            LimitExceeded::Timeout => f.write_str("wall-clock timeout"),
        }
    }
}

impl std::error::Error for LimitExceeded {}

/// Store limiter: caps linear memory and table elements together, across
/// all of the guest's memories and tables, at `limits.memory`; records the
/// peak; and stops the guest on the first refused growth.
///
/// Tables count because they are host memory the guest chooses the size of:
/// without the charge, 100 tables of 2^20 elements held 800 MiB of host
/// memory under a 16 MiB limit. Each element costs [`TABLE_ELEMENT_BYTES`].
///
/// # Accounting: charges are never given back
///
/// The charge is the sum of every growth this limiter approved, and nothing
/// ever lowers it. That is the only rule wasmtime 48's calls allow to be
/// right for every sequence (`vm/memory.rs`, `vm/table.rs`):
///
/// - a call does not say which memory or table it is about, so a growth can
///   only be charged as a difference, never checked against a size we hold;
/// - `memory_grow_failed` comes both after a growth we approved that the host
///   then could not provide, and with no `memory_growing` before it at all (a
///   memory of 1-byte pages asked to reach 4 GiB): the two are told apart by
///   nothing but the error's text. Giving back "the last growth" on it gave
///   back a growth that had happened, once per failing `memory.grow`: a loop
///   of 1 MiB growths each followed by one that fails grew 48 MiB under an
///   8 MiB limit (see #20);
/// - `table_grow_failed` likewise comes without a `table_growing` (a size
///   that overflows) or for a growth past the table's maximum, which
///   [`MemoryLimiter::table_growing`] already refuses without charging.
///
/// Memories and tables only grow while a store lives, so the charge equals
/// the guest's real sizes (its memories' bytes plus 8 bytes per table
/// element) except in two cases, both over the real size, never under: a
/// growth we approved that the operating system then failed (the guest sees
/// -1 and the rest of its budget is smaller by that much), and an
/// instantiation that failed after its memories were charged (the run ends).
pub(crate) struct MemoryLimiter {
    limit: u64,
    total: u64,
    peak: u64,
    refused: Option<LimitExceeded>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit,
            total: 0,
            peak: 0,
            refused: None,
        }
    }

    /// The most linear memory plus table storage the guest held at once, in
    /// bytes: the most of `limits.memory` it used.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// Charges `bytes` more against the limit, or records the refusal and
    /// returns the error that stops the guest.
    fn charge(&mut self, bytes: u64) -> wasmtime::Result<()> {
        let requested = self.total.saturating_add(bytes);
        if requested > self.limit {
            let err = LimitExceeded::Memory {
                requested,
                limit: self.limit,
            };
            self.refused = Some(err.clone());
            // An error (rather than `Ok(false)`) traps at once: the guest never
            // sees the growth fail, so it cannot disguise the cause.
            return Err(wasmtime::Error::new(err));
        }
        self.total = requested;
        self.peak = self.peak.max(self.total);
        Ok(())
    }

    /// The refusal that stopped the guest, if one did.
    pub(crate) fn refused(&self) -> Option<&LimitExceeded> {
        self.refused.as_ref()
    }

    /// Forgets a refusal the guest carried on past (a GC heap that was
    /// collected instead of grown), so that the next call of an instance
    /// is classified by its own ending. The memory stays charged.
    pub(crate) fn forget_refusal(&mut self) {
        self.refused = None;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Growth past the memory's own declared maximum is the module's rule,
        // not ours: wasmtime refuses it after asking us, and `memory.grow`
        // returns -1 to the guest as the spec says. Nothing to charge.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.charge(desired.saturating_sub(current) as u64)?;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The guest sees -1. Nothing is given back: this call may follow a
        // growth that happened (see "Accounting" on the type), and a growth
        // we approved that the host failed stays charged, an over-count.
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Past the table's declared maximum or our per-table cap, the growth
        // fails the way the spec says (`table.grow` returns -1, or a declared
        // minimum cannot be met) and nothing is allocated, so nothing is
        // charged. wasmtime calls this for a table's initial size at
        // instantiation too, with `current` 0.
        if maximum.is_some_and(|max| desired > max) || desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        self.charge(growth)?;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // As for memories: the guest sees -1 and nothing is given back.
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Which output stream a write went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// The shared byte budget for stdout and stderr of one run.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: u64,
    used: AtomicU64,
    stdout: AtomicU64,
    stderr: AtomicU64,
    exceeded: AtomicBool,
}

impl OutputBudget {
    pub(crate) fn new(limit: u64) -> Self {
        OutputBudget {
            limit,
            used: AtomicU64::new(0),
            stdout: AtomicU64::new(0),
            stderr: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Reserves up to `len` bytes on `stream`; returns how many may be
    /// written. Fewer than `len` means the budget is now spent and the guest
    /// must be stopped.
    pub(crate) fn reserve(&self, stream: Stream, len: usize) -> usize {
        let len = len as u64;
        let mut granted = 0;
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            granted = len.min(self.limit.saturating_sub(used));
            Some(used + granted)
        });
        let counter = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        counter.fetch_add(granted, Ordering::SeqCst);
        if granted < len {
            self.exceeded.store(true, Ordering::SeqCst);
        }
        granted as usize
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }

    pub(crate) fn stdout_bytes(&self) -> u64 {
        self.stdout.load(Ordering::SeqCst)
    }

    pub(crate) fn stderr_bytes(&self) -> u64 {
        self.stderr.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_across_memories_and_records_peak() {
        let mut l = MemoryLimiter::new(3 << 16);
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(
            l.memory_growing(0, 2 << 16, None).unwrap(),
            "a second memory counts too"
        );
        assert_eq!(l.peak(), 3 << 16);
        let err = l.memory_growing(2 << 16, 3 << 16, None).unwrap_err();
        assert!(err.downcast_ref::<LimitExceeded>().is_some());
        assert!(matches!(l.refused(), Some(LimitExceeded::Memory { requested, .. }) if *requested == 4 << 16));
        assert_eq!(l.peak(), 3 << 16, "a refused growth does not count towards the peak");
    }

    // See: the `wat_grow_past_declared_maximum_is_not_charged` integration test.
    #[test]
    fn growth_past_the_declared_maximum_is_not_charged() {
        let mut l = MemoryLimiter::new(4 << 16);
        assert!(l.memory_growing(0, 1 << 16, Some(2 << 16)).unwrap());
        for _ in 0..3 {
            assert!(!l.memory_growing(1 << 16, 101 << 16, Some(2 << 16)).unwrap());
        }
        assert!(l.memory_growing(1 << 16, 2 << 16, Some(2 << 16)).unwrap());
        assert_eq!(l.peak(), 2 << 16);
        assert!(l.refused().is_none());
    }

    // See: #20
    #[test]
    fn a_failed_growth_never_gives_back_a_growth_that_happened() {
        // wasmtime's sequence for the attack: a 1 MiB growth approved (and
        // done), then `memory_grow_failed` alone for a growth to 4 GiB of a
        // memory of 1-byte pages, which never reached `memory_growing`.
        let mut l = MemoryLimiter::new(8 << 20);
        let mut size = 0;
        let ended = (0..16).find_map(|_| {
            let grown = l.memory_growing(size, size + (1 << 20), None);
            l.memory_grow_failed(wasmtime::Error::msg("memory growth exceeds memory type's limits"))
                .unwrap();
            size += 1 << 20;
            grown.err()
        });
        let err = ended.expect("the ninth growth is refused");
        assert!(matches!(
            err.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::Memory { requested, .. }) if *requested == 9 << 20
        ));
        assert_eq!(l.peak(), 8 << 20);
        // The same for tables: a lone `table_grow_failed` gives nothing back.
        let mut l = MemoryLimiter::new(1 << 16);
        assert!(l.table_growing(0, 8192, None).unwrap());
        l.table_grow_failed(wasmtime::Error::msg("overflow calculating new table size"))
            .unwrap();
        assert!(l.table_growing(8192, 8193, None).is_err());
    }

    #[test]
    fn a_growth_the_host_failed_stays_charged() {
        // An over-count, never an under-count: the charge may only exceed
        // what the guest holds.
        let mut l = MemoryLimiter::new(2 << 16);
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("mmap failed")).unwrap();
        assert!(l.memory_growing(0, 1, None).is_err());
        assert_eq!(l.peak(), 2 << 16);
    }

    // See: #9
    #[test]
    fn tables_are_charged_against_the_memory_limit() {
        let mut l = MemoryLimiter::new(1 << 16);
        // A table's initial size at instantiation: 4096 elements, 32 KiB.
        assert!(l.table_growing(0, 4096, None).unwrap());
        assert_eq!(l.peak(), 4096 * TABLE_ELEMENT_BYTES);
        // Linear memory and tables share one budget: one page no longer fits.
        let err = l.memory_growing(0, 1 << 16, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::Memory { .. })
        ));
        let mut l = MemoryLimiter::new(1 << 16);
        assert!(l.table_growing(0, 4096, None).unwrap());
        assert!(l.table_growing(4096, 8192, None).unwrap(), "exactly the limit");
        assert!(l.table_growing(8192, 8193, None).is_err(), "one element past it");
        assert!(l.refused().is_some());
    }

    #[test]
    fn table_growth_past_its_maximum_or_the_cap_is_not_charged() {
        let mut l = MemoryLimiter::new(1 << 30);
        assert!(!l.table_growing(0, 11, Some(10)).unwrap());
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert_eq!(l.peak(), 0);
        assert!(l.refused().is_none());
    }

    #[test]
    fn budget_is_shared_between_streams() {
        let b = OutputBudget::new(10);
        assert_eq!(b.reserve(Stream::Stdout, 6), 6);
        assert!(!b.exceeded());
        assert_eq!(b.reserve(Stream::Stderr, 6), 4);
        assert!(b.exceeded());
        assert_eq!((b.stdout_bytes(), b.stderr_bytes()), (6, 4));
        assert_eq!(b.reserve(Stream::Stdout, 1), 0);
    }

    #[test]
    fn writing_exactly_the_budget_is_not_exceeding_it() {
        let b = OutputBudget::new(4);
        assert_eq!(b.reserve(Stream::Stdout, 4), 4);
        assert!(!b.exceeded());
        assert_eq!(b.reserve(Stream::Stdout, 0), 0);
        assert!(!b.exceeded());
    }
}
