//! Growth sequences: modules that only grow memories and tables, run under a
//! small `limits.memory` and checked against a reference of what wasmtime 48
//! and the limiter do with each growth.
//!
//! A case has up to four memories (`multi-memory`) of 64 KiB or 1-byte pages
//! (`custom-page-sizes`), 32- or 64-bit (`memory64`), up to three tables, and
//! a `_start` that grows them by amounts chosen near every edge: zero, the
//! exact room left under the limit and one past it, the declared maximum and
//! one past it, the per-table cap, 4 GiB and the largest delta the index type
//! can hold. The reference decides each growth as wasmtime does (grown,
//! failed with -1, or stopped by the limiter), and the guest checks every
//! result and its final sizes against it, so the property is exact:
//!
//! - the run ends as the reference says: exit 0, or `memory-limit` at the
//!   growth that would pass the limit (or at instantiation);
//! - the report's `peak_memory_bytes` equals the reference's charge, which is
//!   the guest's real sizes (each memory's bytes plus 8 bytes per table
//!   element) and never exceeds the limit.

use super::{HANG_MARGIN, engine_for, examine, serial};
use arbitrary::{Result as AResult, Unstructured};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use wasmcell::policy::{Proposal, Proposals};
use wasmcell::{EngineConfig, Policy, Sandbox, Status};

/// What the reference charges for one table element, as the README states
/// (`limits.memory`: a table element counts as 8 bytes).
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Most elements one table may hold; growth past it returns -1, uncharged.
const MAX_TABLE_ELEMENTS: u64 = 1 << 20;
/// Growths per case, at most.
const MAX_OPS: usize = 24;

/// What one growth case did, for the smoke's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GrowthCase {
    /// How the run ended, when the bytes made a case.
    pub status: Option<Status>,
    /// Growths that returned -1 without being asked of the limiter
    /// (wasmtime's lone `memory_grow_failed`: 1-byte pages asked past 4 GiB).
    pub unasked_failures: usize,
    /// Growths refused by the module's own maximum or the per-table cap.
    pub refused_by_type: usize,
    /// Growths that succeeded.
    pub grown: usize,
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    /// Bytes per page: 1 or 65536.
    page: u64,
    wide: bool,
    min: u64,
    max: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Table {
    wide: bool,
    min: u64,
    max: Option<u64>,
}

/// What wasmtime and the limiter do with one growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Grown; `memory.grow`/`table.grow` returns the old size.
    Grown(u64),
    /// -1, never asked of the limiter (`memory_grow_failed` alone).
    FailedUnasked,
    /// -1: past the declared maximum or the per-table cap, not charged.
    Refused,
    /// The limiter stops the guest.
    Stopped,
}

/// The reference: sizes in bytes (memories) and elements (tables), and the
/// charge, the sum of both in bytes.
#[derive(Debug, Default)]
struct Reference {
    limit: u64,
    charged: u64,
    memories: Vec<u64>,
    tables: Vec<u64>,
}

impl Reference {
    /// Charges `bytes`, or says the limiter stops the guest.
    fn charge(&mut self, bytes: u64) -> bool {
        match self.charged.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.charged = total;
                true
            }
            _ => false,
        }
    }

    /// Instantiation: every memory's minimum, then every table's, in order.
    fn instantiate(&mut self, memories: &[Memory], tables: &[Table]) -> bool {
        for m in memories {
            let bytes = m.min.saturating_mul(m.page);
            if !self.charge(bytes) {
                return false;
            }
            self.memories.push(bytes);
        }
        for t in tables {
            if !self.charge(t.min * TABLE_ELEMENT_BYTES) {
                return false;
            }
            self.tables.push(t.min);
        }
        true
    }

    /// `memory.grow` as wasmtime 48's `LocalMemory::grow` and the limiter
    /// decide it.
    fn grow_memory(&mut self, index: usize, m: &Memory, delta: u64) -> Step {
        let old = self.memories[index];
        if delta == 0 {
            return Step::Grown(old / m.page);
        }
        let absolute_max = 0u64.wrapping_sub(m.page);
        let new = delta.saturating_mul(m.page).saturating_add(old).min(absolute_max);
        // 32-bit memories of 1-byte pages stop short of 4 GiB, before the
        // limiter is asked.
        if m.page == 1 && !m.wide && new >= 0xffff_ffff {
            return Step::FailedUnasked;
        }
        let type_max = if m.wide { absolute_max } else { 1 << 32 };
        let maximum = match m.max {
            Some(max) => max.checked_mul(m.page),
            None => Some(type_max.max(m.min * m.page)),
        };
        if maximum.is_some_and(|max| new > max) {
            return Step::Refused;
        }
        if !self.charge(new - old) {
            return Step::Stopped;
        }
        self.memories[index] = new;
        Step::Grown(old / m.page)
    }

    /// `table.grow` as wasmtime 48's `Table::grow` and the limiter decide it.
    fn grow_table(&mut self, index: usize, t: &Table, delta: u64) -> Step {
        let old = self.tables[index];
        if delta == 0 {
            return Step::Grown(old);
        }
        let Some(new) = old.checked_add(delta) else {
            return Step::FailedUnasked;
        };
        let type_max = if t.wide { u64::MAX } else { u64::from(u32::MAX) };
        if new > t.max.unwrap_or(type_max) || new > MAX_TABLE_ELEMENTS {
            return Step::Refused;
        }
        if !self.charge((new - old) * TABLE_ELEMENT_BYTES) {
            return Step::Stopped;
        }
        self.tables[index] = new;
        Step::Grown(old)
    }
}

/// A growth case: its policy and its module, as WAT, with what must happen.
struct Case {
    proposals: Proposals,
    limit: u64,
    wat: String,
    status: Status,
    peak: u64,
    tally: GrowthCase,
}

/// Generates a growth case from `data`, runs it, and checks it against the
/// reference (see the module docs).
///
/// # Panics
///
/// When the run ends otherwise than the reference says, or reports another peak.
pub fn check_growth(data: &[u8]) -> GrowthCase {
    let mut u = Unstructured::new(data);
    let Ok(case) = generate(&mut u) else {
        return GrowthCase::default();
    };
    let _serial = serial();
    let names: Vec<String> = case.proposals.iter().map(|p| format!("{:?}", p.name())).collect();
    let toml = format!(
        "[wasm]\nproposals = [{}]\n[limits]\nmemory = {}\ntimeout = \"10s\"\n",
        names.join(", "),
        case.limit
    );
    let policy = Policy::from_toml(&toml, ".").unwrap_or_else(|e| panic!("the growth check's policy is invalid: {e}"));
    let sandbox = Sandbox::builder()
        .engine(engine_for(EngineConfig::for_policy(&policy)))
        .policy(policy.clone())
        .build()
        .expect("the growth engine fits its policy");
    let bytes = wat::parse_str(&case.wat).unwrap_or_else(|e| panic!("generated WAT is invalid: {e}\n{}", case.wat));
    let program = sandbox
        .load_bytes("growth.wasm", &bytes)
        .unwrap_or_else(|e| panic!("a growth module was refused: {e:#}\n{toml}{}", case.wat));
    let started = Instant::now();
    let no_args: &[&str] = &[];
    let outcome = sandbox
        .run_program(&program, no_args)
        .unwrap_or_else(|e| panic!("the run failed instead of ending with a status: {e:#}"));
    assert!(started.elapsed() <= Duration::from_secs(10) + HANG_MARGIN);
    let shown = format!("under {toml}{}\ntrap: {:?}", case.wat, outcome.trap);
    assert_eq!(
        outcome.status, case.status,
        "the run ended otherwise than the reference {shown}"
    );
    assert_eq!(
        outcome.peak_memory_bytes, case.peak,
        "the reported peak is not the guest's real size {shown}"
    );
    assert!(outcome.peak_memory_bytes <= case.limit, "{shown}");
    examine(&outcome, &policy);
    GrowthCase {
        status: Some(outcome.status),
        ..case.tally
    }
}

/// Draws the case's proposals, limit, memories, tables and growths, and
/// writes the module, stepping the reference as it goes.
fn generate(u: &mut Unstructured) -> AResult<Case> {
    let small_pages = u.ratio(3, 4)?;
    let multi = u.arbitrary()?;
    let wide = u.ratio(1, 3)?;
    let proposals = [
        (small_pages, Proposal::CustomPageSizes),
        (multi, Proposal::MultiMemory),
        (wide, Proposal::Memory64),
    ]
    .into_iter()
    .filter_map(|(on, p)| on.then_some(p))
    .collect();
    let limit = *u.choose(&[1, 4096, 65536, 1 << 20, 3 << 20, 8 << 20, 16 << 20])?;
    let limit = if u.ratio(1, 4)? {
        u.int_in_range(1..=16 << 20)?
    } else {
        limit
    };
    let memories = (0..u.int_in_range(0..=if multi { 4 } else { 1 })?)
        .map(|_| arbitrary_memory(u, limit, small_pages, wide))
        .collect::<AResult<Vec<_>>>()?;
    let tables = (0..u.int_in_range(0..=3)?)
        .map(|_| arbitrary_table(u, limit, wide))
        .collect::<AResult<Vec<_>>>()?;
    let mut reference = Reference {
        limit,
        ..Reference::default()
    };
    let mut wat = declarations(&memories, &tables);
    let mut tally = GrowthCase::default();
    let mut status = Status::Exited(0);
    if !reference.instantiate(&memories, &tables) {
        status = Status::MemoryLimit;
    } else {
        for _ in 0..u.int_in_range(1..=MAX_OPS)? {
            if memories.is_empty() && tables.is_empty() {
                break;
            }
            let step = grow_one(u, &mut reference, &memories, &tables, &mut wat)?;
            match step {
                Step::Grown(_) => tally.grown += 1,
                Step::FailedUnasked => tally.unasked_failures += 1,
                Step::Refused => tally.refused_by_type += 1,
                Step::Stopped => {
                    status = Status::MemoryLimit;
                    break;
                }
            }
        }
        if status == Status::Exited(0) {
            check_sizes(&reference, &memories, &tables, &mut wat);
        }
    }
    wat.push_str("))\n");
    Ok(Case {
        proposals,
        limit,
        wat,
        status,
        peak: reference.charged,
        tally,
    })
}

/// A memory of the kinds the proposals allow, with a minimum from none to
/// twice the limit and a maximum that is absent, near the minimum, or the
/// largest its type allows.
fn arbitrary_memory(u: &mut Unstructured, limit: u64, small_pages: bool, wide: bool) -> AResult<Memory> {
    let page = if small_pages && u.arbitrary()? { 1 } else { 65536 };
    let wide = wide && u.arbitrary()?;
    let type_max = match (wide, page) {
        (false, 1) => u64::from(u32::MAX),
        (false, _) => 65536,
        (true, _) => 1 << 48,
    };
    let min = match u.int_in_range(0u8..=3)? {
        0 => 0,
        1 => 1,
        2 => u.int_in_range(0..=limit / page + 1)?,
        _ => u.int_in_range(0..=2 * limit / page + 1)?,
    }
    .min(type_max);
    let max = match u.int_in_range(0u8..=3)? {
        0 | 1 => None,
        2 => Some(u.int_in_range(min..=(min + 2 * limit / page + 1).min(type_max))?),
        _ => Some(type_max),
    };
    Ok(Memory { page, wide, min, max })
}

/// A funcref table with a small minimum and a maximum that is absent, near
/// the minimum, or past the per-table cap.
fn arbitrary_table(u: &mut Unstructured, limit: u64, wide: bool) -> AResult<Table> {
    let wide = wide && u.arbitrary()?;
    let min = u.int_in_range(0..=(limit / TABLE_ELEMENT_BYTES + 1).min(1 << 17))?;
    let max = match u.int_in_range(0u8..=2)? {
        0 => None,
        1 => Some(u.int_in_range(min..=min + 4096)?),
        _ => Some(MAX_TABLE_ELEMENTS + 1),
    };
    Ok(Table { wide, min, max })
}

/// The module's memories and tables and the start of `_start`.
fn declarations(memories: &[Memory], tables: &[Table]) -> String {
    let mut wat = String::from("(module\n");
    for (i, m) in memories.iter().enumerate() {
        let index = if m.wide { " i64" } else { "" };
        let max = m.max.map(|max| format!(" {max}")).unwrap_or_default();
        // Only 1-byte pages are written out: a page size, even 64 KiB, needs
        // `custom-page-sizes`.
        let page = if m.page == 1 { " (pagesize 1)" } else { "" };
        let _ = writeln!(wat, "  (memory $m{i}{index} {}{max}{page})", m.min);
    }
    for (i, t) in tables.iter().enumerate() {
        let index = if t.wide { " i64" } else { "" };
        let max = t.max.map(|max| format!(" {max}")).unwrap_or_default();
        let _ = writeln!(wat, "  (table $t{i}{index} {}{max} funcref)", t.min);
    }
    wat.push_str("  (func (export \"_start\")\n");
    wat
}

/// A growth amount near one of the edges: zero, one, a little, the room left
/// under the limit (in units of `unit` bytes) and one past it, up to `max`
/// from `current` and one past, 4 GiB's worth, and the largest `wide` allows.
fn arbitrary_delta(u: &mut Unstructured, room: u64, unit: u64, current: u64, max: u64, wide: bool) -> AResult<u64> {
    let delta = match u.int_in_range(0u8..=10)? {
        0 => 0,
        1 => 1,
        2 => u.int_in_range(1..=64)?,
        3 => room / unit,
        4 => room / unit + 1,
        5 => max.saturating_sub(current),
        6 => max.saturating_sub(current) + 1,
        7 => 0xffff_ffff,
        8 => (1 << 32) / unit,
        9 if wide => *u.choose(&[u64::MAX, u64::MAX / unit, 1 << 48, 1 << 63])?,
        _ => u.arbitrary()?,
    };
    Ok(if wide { delta } else { delta & 0xffff_ffff })
}

/// One `memory.grow` or `table.grow`, checked against the reference's answer
/// (or, where the reference says the limiter stops the guest, followed by an
/// `unreachable` that would end the run as a trap instead).
fn grow_one(
    u: &mut Unstructured,
    reference: &mut Reference,
    memories: &[Memory],
    tables: &[Table],
    wat: &mut String,
) -> AResult<Step> {
    let room = reference.limit - reference.charged;
    let pick_memory = tables.is_empty() || (!memories.is_empty() && u.ratio(2, 3)?);
    let (instruction, wide, step) = if pick_memory {
        let i = u.choose_index(memories.len())?;
        let m = &memories[i];
        let current = reference.memories[i] / m.page;
        let max = m.max.unwrap_or(if m.wide { 1 << 48 } else { (1 << 32) / m.page });
        let delta = arbitrary_delta(u, room, m.page, current, max, m.wide)?;
        let int = if m.wide { "i64" } else { "i32" };
        let step = reference.grow_memory(i, m, delta);
        (format!("(memory.grow $m{i} ({int}.const {delta}))"), m.wide, step)
    } else {
        let i = u.choose_index(tables.len())?;
        let t = &tables[i];
        let current = reference.tables[i];
        let max = t.max.unwrap_or(MAX_TABLE_ELEMENTS).min(MAX_TABLE_ELEMENTS);
        let delta = arbitrary_delta(u, room, TABLE_ELEMENT_BYTES, current, max, t.wide)?;
        let int = if t.wide { "i64" } else { "i32" };
        let step = reference.grow_table(i, t, delta);
        (
            format!("(table.grow $t{i} (ref.null func) ({int}.const {delta}))"),
            t.wide,
            step,
        )
    };
    let expected = match step {
        Step::Grown(old) => old as i64,
        Step::FailedUnasked | Step::Refused => -1,
        Step::Stopped => {
            let _ = writeln!(wat, "    (drop {instruction})\n    (unreachable)");
            return Ok(step);
        }
    };
    let int = if wide { "i64" } else { "i32" };
    let expected = if wide { expected } else { i64::from(expected as i32) };
    let _ = writeln!(
        wat,
        "    (if ({int}.ne {instruction} ({int}.const {expected})) (then (unreachable)))"
    );
    Ok(step)
}

/// Checks every memory's and table's final size against the reference.
fn check_sizes(reference: &Reference, memories: &[Memory], tables: &[Table], wat: &mut String) {
    for (i, m) in memories.iter().enumerate() {
        let int = if m.wide { "i64" } else { "i32" };
        let pages = reference.memories[i] / m.page;
        let _ = writeln!(
            wat,
            "    (if ({int}.ne (memory.size $m{i}) ({int}.const {pages})) (then (unreachable)))"
        );
    }
    for (i, t) in tables.iter().enumerate() {
        let int = if t.wide { "i64" } else { "i32" };
        let len = reference.tables[i];
        let _ = writeln!(
            wat,
            "    (if ({int}.ne (table.size $t{i}) ({int}.const {len})) (then (unreachable)))"
        );
    }
}
