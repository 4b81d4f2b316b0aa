//! Figure 6: what the filesystem interposition (rules inside grants, write quotas) costs. A
//! file-heavy guest (`fs_ops` writing, stat-ing, reading, listing and removing [`FILES`] small
//! files) under a plain read-write grant, the same grant with rules that match nothing it
//! touches, and with a quota as well; then `hello`, which touches no files, with no grant, a
//! plain grant and a ruled one (and raw wasmtime without and with a preopen).
//!
//! The plain grant is not "without interposition": the shadowed preview 1 functions and the
//! wrapped preview 2 host are always installed, and only skip the path checks in a grant
//! without rules or quota. Raw wasmtime running the same module with the same preopen is the
//! row without any interposition (preview 1 only: raw.rs links no components).

use crate::raw::{RawConfig, RawWasmtime};
use crate::stats::{Spread, Stats, ms, us};
use crate::support::{ScratchDir, check_outcome};
use crate::{HELLO_OUTPUT, Settings, Target, WARM_UP, WARM_UP_RUNS, WORKSPACE};
use anyhow::{Context as _, Result, ensure};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmcell::policy::{FsRules, PathGlob};
use wasmcell::{Access, Engine, EngineConfig, Policy, Sandbox, Status};

/// Files the workload creates, then stats, reads and removes one by one.
const FILES: usize = 1000;
/// What each file holds (`fs_ops` splits its arguments at `:`).
const CONTENT: &str = "0123456789abcdef";
/// Where the grant appears in the guest.
const GUEST_DIR: &str = "/w";
/// Rules that match nothing the workload touches, but that every path must be decided against.
const DENY: [&str; 2] = ["**/.env", ".git/hooks/**"];
const READ_ONLY: [&str; 1] = ["config/**"];
const QUOTA: u64 = 1 << 30;
const MAX_FILES: u64 = 100_000;
/// Where raw wasmtime's row comes: after three grant kinds for each of the two guests.
const RAW_ROW: usize = 6;
/// The hello figure is measured in this many slices, taken in turn with the other rows.
const HELLO_SLICES: usize = 5;

pub(crate) fn bench_fs(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.fs_runs();
    println!(
        "\n== 6. Filesystem interposition: fs_ops on {FILES} files, {runs} timed runs per row after {WARM_UP} warm-up runs; \
         grants under {}",
        grants_parent().display()
    );
    println!(
        "Each run writes {FILES} files of {} bytes, stats, reads and removes each and lists the folder once \
         ({} guest operations, one fs_ops argument each, output captured) in a grant emptied and recreated \
         before every run (untimed). Rows: a plain read-write grant; + deny = {DENY:?}, read-only = \
         {READ_ONLY:?}, hide = true (matching nothing the guest touches); + quota = \"1 GiB\", max-files = \
         {MAX_FILES}. One engine (EngineConfig::default: on-demand allocator, epoch). Raw wasmtime: WASI p1, \
         async calls, epoch, the same kind of folder preopened read-write; no interposition at all. Rows \
         are taken in turn, each round starting one row further on. CPU: user + system time of the \
         whole process. vs base: median over rounds of the ratio to the base row in the same round; \
         the base is the guest's plain grant, and raw wasmtime for the module's plain grant.",
        CONTENT.len(),
        4 * FILES + 1
    );
    let engine = Engine::new(EngineConfig::default())?;
    let workload = Workload::new();
    let raw = RawFs::new()?;
    let rows = fs_rows(&engine, &raw)?;
    let samples = time_fs_rows(&rows, &workload, runs)?;
    report_fs(&rows, &samples, summary);
    bench_hello(&engine, settings, summary)
}

/// The workload's arguments and the output they must give.
pub(crate) struct Workload {
    pub(crate) args: Vec<String>,
    pub(crate) expected: Vec<u8>,
}

impl Workload {
    pub(crate) fn new() -> Workload {
        let names: Vec<String> = (0..FILES).map(|i| format!("f{i:04}")).collect();
        let mut args = Vec::new();
        let mut expected = String::new();
        let mut op = |arg: String, result: String| {
            let _ = writeln!(expected, "{arg} -> {result}");
            args.push(arg);
        };
        for name in &names {
            op(format!("write:{GUEST_DIR}/{name}:{CONTENT}"), "ok".into());
        }
        for name in &names {
            op(
                format!("stat:{GUEST_DIR}/{name}"),
                format!("ok: {} bytes", CONTENT.len()),
            );
        }
        for name in &names {
            op(format!("read:{GUEST_DIR}/{name}"), format!("ok: {CONTENT}"));
        }
        op(format!("ls:{GUEST_DIR}"), format!("ok: {}", names.join(",")));
        for name in &names {
            op(format!("rm:{GUEST_DIR}/{name}"), "ok".into());
        }
        Workload {
            args,
            expected: expected.into_bytes(),
        }
    }
}

/// The grants of the figure: (label, rules).
fn grant_kinds() -> Result<[(&'static str, FsRules); 3]> {
    let globs = |patterns: &[&str]| patterns.iter().map(|p| PathGlob::new(p)).collect::<Result<Vec<_>, _>>();
    let ruled = FsRules {
        deny: globs(&DENY)?,
        read_only: globs(&READ_ONLY)?,
        hide: true,
        ..FsRules::default()
    };
    let quota = FsRules {
        quota: Some(QUOTA),
        max_files: Some(MAX_FILES),
        ..ruled.clone()
    };
    Ok([
        ("plain grant", FsRules::default()),
        ("+ rules", ruled),
        ("+ rules + quota", quota),
    ])
}

/// Runs the workload once and checks what it printed.
type FsRun<'a> = Box<dyn Fn(&Workload) -> Result<()> + 'a>;

/// One configuration of the figure, with its own grant folder.
struct FsRow<'a> {
    label: String,
    dir: ScratchDir,
    /// The row this one is compared with: its guest's plain grant (raw wasmtime is the base
    /// of the module's plain grant).
    base: usize,
    run: FsRun<'a>,
}

/// Rows for the module and the component under each grant kind, on one engine, then raw
/// wasmtime running the module.
fn fs_rows<'a>(engine: &Engine, raw: &'a RawFs) -> Result<Vec<FsRow<'a>>> {
    let mut rows = Vec::new();
    for (kind, guest) in [
        ("module", wasmcell_artifacts::FS_OPS),
        ("component", wasmcell_artifacts::FS_OPS_COMPONENT),
    ] {
        let plain = rows.len();
        for (i, (grant, rules)) in grant_kinds()?.into_iter().enumerate() {
            let dir = grant_folder(&format!("{kind}-{i}"))?;
            let policy = Policy::builder()
                .grant_dir_with_rules(&dir.path, GUEST_DIR, Access::ReadWrite, rules)
                .build()?;
            let sandbox = Sandbox::builder().engine(engine.clone()).policy(policy).build()?;
            let program = sandbox.load(guest)?;
            let label = format!("wasmcell {kind}, {grant}");
            let what = format!("{label} fs_ops ");
            let run = move |workload: &Workload| {
                let outcome = sandbox.run_program(&program, &workload.args)?;
                check_outcome(&what, &outcome, Status::Exited(0), &workload.expected)?;
                ensure!(outcome.denials.is_empty(), "{what}was refused: {:?}", outcome.denials);
                Ok(())
            };
            let base = if i == 0 && plain == 0 { RAW_ROW } else { plain };
            rows.push(FsRow {
                label,
                dir,
                base,
                run: Box::new(run),
            });
        }
    }
    ensure!(rows.len() == RAW_ROW, "raw wasmtime's row must come at {RAW_ROW}");
    let dir = grant_folder("raw")?;
    let path = dir.path.clone();
    rows.push(FsRow {
        label: "raw wasmtime module, same preopen".into(),
        dir,
        base: rows.len(),
        run: Box::new(move |workload| raw.run(workload, &path)),
    });
    Ok(rows)
}

/// Raw wasmtime running the module with a folder preopened read-write.
struct RawFs {
    raw: RawWasmtime,
    pre: wasmtime::InstancePre<wasmtime_wasi::p1::WasiP1Ctx>,
    rt: tokio::runtime::Runtime,
}

impl RawFs {
    fn new() -> Result<RawFs> {
        let raw = RawWasmtime::new(RawConfig {
            epoch: true,
            fiber: true,
            ..RawConfig::default()
        })?;
        let pre = raw.load(wasmcell_artifacts::FS_OPS)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(RawFs { raw, pre, rt })
    }

    fn run(&self, workload: &Workload, dir: &Path) -> Result<()> {
        let args: Vec<&str> = workload.args.iter().map(String::as_str).collect();
        let stdout = self
            .rt
            .block_on(self.raw.run_async_in(&self.pre, &args, Some((dir, GUEST_DIR))))?;
        ensure!(
            stdout == workload.expected,
            "raw wasmtime fs_ops printed {} bytes that differ from the {} expected",
            stdout.len(),
            workload.expected.len()
        );
        Ok(())
    }
}

/// Where the grants are: a RAM file system when there is one, so that what the figure
/// measures is the interposition and not this machine's disk (creating files on a busy disk
/// takes milliseconds at random); `target/` otherwise.
fn grants_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        Path::new(WORKSPACE).join("target")
    }
}

/// A new empty folder for a grant, removed again on drop.
fn grant_folder(name: &str) -> Result<ScratchDir> {
    let dir = ScratchDir::new_in(&grants_parent(), &format!("wasmcell-bench-fs-{name}"))?;
    std::fs::create_dir(&dir.path).with_context(|| format!("failed to create `{}`", dir.path.display()))?;
    Ok(dir)
}

/// Replaces `dir` by a new empty folder, failing if the last run left anything in it.
fn fresh(dir: &Path) -> Result<()> {
    std::fs::remove_dir(dir).with_context(|| format!("the workload left `{}` not empty", dir.display()))?;
    std::fs::create_dir(dir).with_context(|| format!("failed to create `{}`", dir.display()))
}

/// CPU time (user + system) of this whole process so far: every thread the run uses, the
/// blocking pool's included.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Wall-clock and CPU time of one run.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// Timed runs of every row, taken in turn so that load from other processes falls on every
/// row alike, each round starting one row further on so that no row always follows another.
fn time_fs_rows(rows: &[FsRow], workload: &Workload, runs: usize) -> Result<Vec<Vec<Sample>>> {
    let mut samples = vec![Vec::with_capacity(runs); rows.len()];
    for round in 0..WARM_UP + runs {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            fresh(&rows[i].dir.path)?;
            let (cpu, start) = (cpu_time(), Instant::now());
            (rows[i].run)(workload)?;
            let sample = Sample {
                wall: start.elapsed(),
                cpu: cpu_time() - cpu,
            };
            if round >= WARM_UP {
                samples[i].push(sample);
            }
        }
    }
    Ok(samples)
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// How much longer a row took than its base, in percent: the median over rounds of the two
/// rows' ratio in the same round, so that load that changes between rounds cancels out.
fn paired_overhead(ours: &[Sample], base: &[Sample], pick: fn(&Sample) -> Duration) -> f64 {
    let ratios = ours
        .iter()
        .zip(base)
        .map(|(o, b)| pick(o).as_secs_f64() / pick(b).as_secs_f64())
        .collect();
    (median(ratios) - 1.0) * 100.0
}

fn report_fs(rows: &[FsRow], samples: &[Vec<Sample>], summary: &mut Vec<Target>) {
    println!(
        "{:<38} {:>26} {:>12} {:>9} {:>11} {:>10}",
        "configuration", "wall ms: median (min-max)", "CPU ms", "µs/op", "vs base", "CPU vs base"
    );
    let wall = |s: &Sample| s.wall;
    let cpu = |s: &Sample| s.cpu;
    for (row, ours) in rows.iter().zip(samples) {
        let stats = Stats::from(ours.iter().map(wall).collect::<Vec<_>>());
        let max = ours.iter().map(wall).max().expect("at least one run");
        let cpu_median = Stats::from(ours.iter().map(cpu).collect::<Vec<_>>()).median;
        let base = &samples[row.base];
        println!(
            "{:<38} {:>26} {:>12.1} {:>9.1} {:>10.1}% {:>10.1}%",
            row.label,
            format!("{:.1} ({:.1}-{:.1})", ms(stats.median), ms(stats.min), ms(max)),
            ms(cpu_median),
            us(stats.median) / (4 * FILES + 1) as f64,
            paired_overhead(ours, base, wall),
            paired_overhead(ours, base, cpu),
        );
    }
    for (row, ours) in rows.iter().zip(samples).filter(|(row, _)| row.label.contains("rules")) {
        let base = &samples[row.base];
        let cost = paired_overhead(ours, base, wall);
        summary.push(Target::new(
            format!("6 fs_ops {}", row.label.trim_start_matches("wasmcell ")),
            "<= 10% over the plain grant",
            format!("{cost:+.1}% (CPU {:+.1}%)", paired_overhead(ours, base, cpu)),
            Some(cost <= 10.0),
        ));
    }
    let (plain, raw) = (&samples[0], &samples[rows[0].base]);
    summary.push(Target::new(
        "6 fs_ops module, plain grant vs raw wasmtime",
        "-",
        format!(
            "{:+.1}% (CPU {:+.1}%)",
            paired_overhead(plain, raw, wall),
            paired_overhead(plain, raw, cpu)
        ),
        None,
    ));
}
/// Runs `hello` once and checks its output.
type HelloRun<'a> = Box<dyn Fn() -> Result<()> + 'a>;

/// `hello` (module and component) with no grant, a plain grant and a ruled grant with a quota,
/// then raw wasmtime without and with a preopen: mean time per run over slices of many runs,
/// median (min-max) of the slices.
fn bench_hello(engine: &Engine, settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let per_slice = settings.fs_hello_runs();
    println!(
        "\nhello, which touches no files: {HELLO_SLICES} slices of {per_slice} runs per row, taken in turn as \
         above; mean µs per run (instantiate + run + drop: run_program; raw wasmtime as above), median \
         (min-max) of the slices. The ruled grant is the `+ rules + quota` grant above. A difference is \
         within noise when it does not have the same sign in every slice."
    );
    let dir = grant_folder("hello")?;
    let [(_, plain_rules), _, (_, ruled_rules)] = grant_kinds()?;
    let grant = |rules: FsRules| {
        Policy::builder()
            .grant_dir_with_rules(&dir.path, GUEST_DIR, Access::ReadWrite, rules)
            .build()
    };
    let policies = [
        ("no grant", Policy::deny_all()),
        ("plain grant", grant(plain_rules)?),
        ("ruled grant", grant(ruled_rules)?),
    ];
    let raw = RawHello::new()?;
    let mut rows: Vec<(String, HelloRun)> = Vec::new();
    for (kind, guest) in [
        ("module", wasmcell_artifacts::HELLO),
        ("component", wasmcell_artifacts::HELLO_COMPONENT),
    ] {
        for (label, policy) in &policies {
            let sandbox = Sandbox::builder()
                .engine(engine.clone())
                .policy(policy.clone())
                .build()?;
            let program = sandbox.load(guest)?;
            let label = format!("hello {kind}, {label}");
            let what = format!("{label} ");
            let run = move || {
                let outcome = sandbox.run_program(&program, &[] as &[&str])?;
                check_outcome(&what, &outcome, Status::Exited(0), HELLO_OUTPUT)
            };
            rows.push((label, Box::new(run)));
        }
    }
    for (label, preopen) in [("no preopen", None), ("same preopen", Some((&*dir.path, GUEST_DIR)))] {
        let raw = &raw;
        rows.push((
            format!("raw wasmtime module, {label}"),
            Box::new(move || raw.run(preopen)),
        ));
    }
    for (_, run) in &rows {
        for _ in 0..WARM_UP_RUNS {
            run()?;
        }
    }
    let mut samples = vec![Vec::with_capacity(HELLO_SLICES); rows.len()];
    for slice in 0..HELLO_SLICES {
        for k in 0..rows.len() {
            let i = (slice + k) % rows.len();
            let start = Instant::now();
            for _ in 0..per_slice {
                (rows[i].1)()?;
            }
            samples[i].push(us(start.elapsed()) / per_slice as f64);
        }
    }
    let labels: Vec<&str> = rows.iter().map(|(label, _)| label.as_str()).collect();
    report_hello(&labels, &mut samples, summary);
    Ok(())
}

/// Raw wasmtime running the `hello` module.
struct RawHello {
    raw: RawWasmtime,
    pre: wasmtime::InstancePre<wasmtime_wasi::p1::WasiP1Ctx>,
    rt: tokio::runtime::Runtime,
}

impl RawHello {
    fn new() -> Result<RawHello> {
        let raw = RawWasmtime::new(RawConfig {
            epoch: true,
            fiber: true,
            ..RawConfig::default()
        })?;
        let pre = raw.load(wasmcell_artifacts::HELLO)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(RawHello { raw, pre, rt })
    }

    fn run(&self, preopen: Option<(&Path, &str)>) -> Result<()> {
        let stdout = self.rt.block_on(self.raw.run_async_in(&self.pre, &[], preopen))?;
        ensure!(
            stdout == HELLO_OUTPUT,
            "raw wasmtime hello printed {:?}",
            String::from_utf8_lossy(&stdout)
        );
        Ok(())
    }
}

/// Prints the hello rows (wasmcell module and component with no, a plain and a ruled grant,
/// then raw wasmtime without and with a preopen) and compares the ruled grant with the others.
fn report_hello(labels: &[&str], samples: &mut [Vec<f64>], summary: &mut Vec<Target>) {
    println!("{:<40} {:>24}", "configuration", "µs per run");
    for (label, samples) in labels.iter().zip(samples.iter()) {
        println!("{label:<40} {:>24}", Spread::of(&mut samples.clone()).fine());
    }
    // Slice by slice: the difference of the two rows' means in the same slice. Within noise
    // when the differences do not all have one sign.
    let compare = |ours: &[f64], base: &[f64]| {
        let mut diffs: Vec<f64> = ours.iter().zip(base).map(|(o, b)| o - b).collect();
        let diff = Spread::of(&mut diffs);
        let percent = diff.median / Spread::of(&mut base.to_vec()).median * 100.0;
        let within = diff.min <= 0.0 && diff.max >= 0.0;
        let text = format!(
            "{:+.1} µs ({percent:+.1}%; slices {:+.1} to {:+.1})",
            diff.median, diff.min, diff.max
        );
        (text, within)
    };
    for (kind, first) in [("module", 0), ("component", 3)] {
        let ruled = &samples[first + 2];
        for (against, base) in [("no grant", first), ("plain grant", first + 1)] {
            let (text, within) = compare(ruled, &samples[base]);
            let verdict = if within { "within noise" } else { "measurable" };
            println!("hello {kind}, ruled grant vs {against}: {text}: {verdict}");
            // The interposition is what the rules add to a grant; what a grant itself
            // costs (opening its folder without following links) is reported beside it.
            let interposition = base == first + 1;
            summary.push(Target::new(
                format!("6 hello {kind}, ruled grant vs {against}"),
                if interposition { "nothing measurable" } else { "-" },
                text,
                interposition.then_some(within),
            ));
        }
    }
    let (text, within) = compare(&samples[7], &samples[6]);
    let verdict = if within { "within noise" } else { "measurable" };
    println!("raw wasmtime hello module, preopen vs none: {text}: {verdict}");
    summary.push(Target::new(
        "6 hello module, raw wasmtime preopen vs none",
        "-",
        text,
        None,
    ));
}
