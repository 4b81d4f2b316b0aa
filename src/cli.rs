//! The `wasmcell` command line: one struct per subcommand, each with
//! `execute(self)` returning the process exit code.

use crate::cache::DiskCache;
use crate::cancel::CancelHandle;
use crate::engine::{Engine, EngineConfig, Program};
use crate::outcome::EXIT_CODE_TABLE;
use crate::policy::{Access, ByteSize, HumanDuration, Input, NetKind, Output, Policy};
use crate::runner::{RunOptions, Sandbox};
use crate::term::{eprint_line, print_stdout, sanitize};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Run untrusted WebAssembly under a deny-by-default capability policy.
#[derive(Parser, Debug)]
#[command(name = "wasmcell", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one Command is parsed per process; boxing RunCommand would save nothing"
)]
pub enum Command {
    /// Run a WebAssembly module or component under a policy.
    Run(RunCommand),
    /// Validate a policy file and print what it grants.
    Check(CheckCommand),
    /// Run every module under every policy and check each cell against expectations.
    Matrix(MatrixCommand),
    /// Precompile a module or component to native code (a .cwasm file).
    Compile(CompileCommand),
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    ///
    /// # Errors
    ///
    /// Policy, load and sandbox errors; map them to an exit code with
    /// [`exit_code_for_error`].
    pub fn execute(self) -> Result<u8> {
        match self.command {
            Command::Run(c) => c.execute(),
            Command::Check(c) => c.execute(),
            Command::Matrix(c) => c.execute(),
            Command::Compile(c) => c.execute(),
        }
    }
}

const RUN_EXAMPLES: &str = "\
Examples:
  wasmcell run hello.wasm
  wasmcell run --policy policies/read-only.toml fs_read.wasm /data/hello.txt
  wasmcell run --ro-dir ./data::/data --env LANG=C.UTF-8 --fuel 1000000 app.wasm --verbose
  wasmcell run --timeout 2s --memory 64MiB --report-fd 3 untrusted.wasm 3>report.json";

fn run_long_help() -> String {
    format!("{RUN_EXAMPLES}\n\nExit codes:\n{EXIT_CODE_TABLE}")
}

/// Run a WebAssembly module or component under a policy.
///
/// MODULE is a core module built for wasm32-wasip1 or a component built for
/// wasm32-wasip2 (command world); which one is detected from its header.
/// Everything after MODULE is passed to the guest as its arguments (a `--`
/// before them is allowed). The guest's `argv[0]` is the module's file name.
///
/// Without --policy the guest gets nothing: no files, an empty environment,
/// stdin closed, no network, and the default limits.
#[derive(Parser, Debug)]
#[command(after_help = RUN_EXAMPLES, after_long_help = run_long_help())]
pub struct RunCommand {
    /// Policy file to enforce.
    ///
    /// Flags given on the command line are applied on top of this file: they
    /// add grants and override its limits.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Grant a host directory read-write (as `wasmtime run --dir`).
    ///
    /// GUEST defaults to HOST. Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub dirs: Vec<(PathBuf, String)>,

    /// Grant a host directory read-only: the guest can list and read, and change nothing.
    #[arg(long = "ro-dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub ro_dirs: Vec<(PathBuf, String)>,

    /// Set NAME=VALUE in the guest's environment, or copy NAME from the host when it is set.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub envs: Vec<(String, Option<String>)>,

    /// Where the guest's stdin comes from: `null`, `inherit` or a FILE (overrides stdio.stdin).
    #[arg(long, value_name = "null|inherit|FILE", value_parser = parse_stdin)]
    pub stdin: Option<Input>,

    /// Allow TCP connections to ENTRY (adds to net.tcp-connect); components only.
    ///
    /// ENTRY is an IP, `[IPv6]`, CIDR block or host name, then `:PORT`, `:LO-HI` or `:*`,
    /// such as `127.0.0.1:8080` or `10.0.0.0/8:443`. Host names are resolved now.
    #[arg(long = "allow-connect", value_name = "ENTRY")]
    pub allow_connect: Vec<String>,

    /// Allow binding and listening for TCP on ENTRY (adds to net.tcp-bind); port 0 means an ephemeral port.
    #[arg(long = "allow-bind", value_name = "ENTRY")]
    pub allow_bind: Vec<String>,

    /// Allow outgoing HTTP requests to ENTRY, such as `https://api.example.com` or
    /// `http://127.0.0.1:*` (adds to net.http); components only.
    #[arg(long = "allow-http", value_name = "URL")]
    pub allow_http: Vec<String>,

    /// Print each refused capability use to stderr as it happens (also on with --report or --report-fd).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Fuel units the guest may burn, about one per Wasm instruction (overrides limits.fuel).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,

    /// Most linear memory and tables, such as `64MiB` (overrides limits.memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,

    /// Wall-clock limit, such as `5s` or `250ms` (overrides limits.timeout).
    ///
    /// It ends the guest even while it blocks in a host call.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Largest module file accepted for compilation (overrides limits.module-size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_module_size: Option<u64>,

    /// Write a JSON report of the outcome to FILE (`-`: stderr, only when the policy sends the guest's stderr elsewhere).
    ///
    /// With `-` the report would follow whatever the guest printed on the
    /// same stream, where a guest could print a report of its own, so `-` is
    /// refused while the guest's stderr is inherited: use FILE or --report-fd.
    #[arg(long, value_name = "FILE|-", conflicts_with = "report_fd")]
    pub report: Option<PathBuf>,

    /// Write the JSON report to file descriptor N, which the caller opened for writing, such as `3>report.json`.
    ///
    /// The guest never sees this descriptor, so what arrives there is
    /// wasmcell's report alone. N must be open for writing and not 0, 1 or 2.
    #[arg(long, value_name = "N")]
    pub report_fd: Option<i32>,

    /// Accept a precompiled MODULE (a .cwasm from `wasmcell compile`).
    ///
    /// Precompiled code is native code that runs without being validated:
    /// use this only for files you compiled yourself and kept where nobody
    /// else can write them. Without this flag a .cwasm is refused.
    #[arg(long)]
    pub allow_precompiled: bool,

    /// Keep compiled code in DIR (created owner-only) instead of the default
    /// cache: $WASMCELL_CACHE_DIR, else $XDG_CACHE_HOME/wasmcell, else ~/.cache/wasmcell.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the module without reading or writing the compile cache.
    #[arg(long)]
    pub no_cache: bool,

    /// The module to run, followed by the guest's arguments.
    #[arg(
        value_name = "MODULE [ARGS]",
        trailing_var_arg = true,
        required = true,
        allow_hyphen_values = true
    )]
    pub module_and_args: Vec<OsString>,
}

impl RunCommand {
    /// Loads the policy, applies the flags, runs the guest and reports.
    ///
    /// # Errors
    ///
    /// Policy errors, load errors and sandbox failures.
    pub fn execute(self) -> Result<u8> {
        // Claimed before anything else opens a file, so that the number
        // cannot name one of wasmcell's own descriptors.
        let mut report_fd = match self.report_fd {
            Some(n) => Some((n, claim_report_fd(n)?)),
            None => None,
        };
        let policy = self.resolve_policy()?;
        self.check_report_dash(&policy)?;
        // The report's folder is resolved now, before the guest can plant a
        // link on the way; the file is opened without following links later.
        let report_file = match &self.report {
            Some(path) if path.as_os_str() != "-" => {
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                policy.check_host_path(&absolute, "--report")?;
                Some(crate::hostfs::resolve_parent(path)?)
            }
            _ => None,
        };
        let engine = self.engine(&policy)?;
        let log_denials = self.verbose || self.report.is_some() || report_fd.is_some();
        let sandbox = Sandbox::builder()
            .engine(engine)
            .policy(policy)
            .capture_output(false)
            .log_denials(log_denials)
            .build()?;
        let (module, args) = self.module_and_args()?;
        let program = self.load(&sandbox, &module)?;
        let cancel = cancel_on_signals(sandbox.engine())?;
        let outcome = sandbox.run_with(&program, &args, RunOptions::new().cancel(&cancel))?;
        if let Some(line) = outcome.describe(sandbox.policy()) {
            eprint_line(format_args!("wasmcell: {line}"));
        }
        if log_denials && outcome.denials_dropped > 0 {
            eprint_line(format_args!(
                "wasmcell: {} more refusals were counted but not recorded",
                outcome.denials_dropped
            ));
        }
        let json = serde_json::to_string_pretty(&outcome.to_json()).expect("a JSON value serializes");
        if let Some((n, file)) = &mut report_fd {
            use std::io::Write as _;
            file.write_all(format!("{json}\n").as_bytes())
                .with_context(|| format!("failed to write the report to file descriptor {n}"))?;
        }
        if let Some(report) = &self.report {
            if report.as_os_str() == "-" {
                eprint_line(format_args!("{json}"));
            } else if let Some(file) = &report_file {
                crate::hostfs::write_file(file, (json + "\n").as_bytes(), "report")
                    .map_err(|e| e.context("--report"))?;
            }
        }
        Ok(outcome.exit_code())
    }

    /// Refuses `--report -` while the guest's stderr is this process's
    /// stderr: the guest could print a report of its own there, and nothing
    /// would tell the two apart.
    fn check_report_dash(&self, policy: &Policy) -> Result<()> {
        let dash = self.report.as_ref().is_some_and(|r| r.as_os_str() == "-");
        if dash && matches!(policy.stderr(), Output::Inherit) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "`--report -` would write the report on the guest's own stderr, where the guest can print a fake one; \
                 use `--report FILE` or `--report-fd N` (such as `--report-fd 3 3>report.json`), \
                 or send the guest's stderr elsewhere with `stdio.stderr` in the policy\n",
            )
            .into());
        }
        Ok(())
    }

    /// An engine for the policy, with the compile cache unless --no-cache.
    /// An unusable default cache only costs speed, so it is a warning; a
    /// --cache-dir the user named is an error.
    fn engine(&self, policy: &Policy) -> Result<Engine> {
        let config = EngineConfig::for_policy(policy);
        if self.no_cache {
            return Engine::new(config);
        }
        let cache = match &self.cache_dir {
            Some(dir) => Some(DiskCache::open(dir)?),
            None => DiskCache::default_dir().and_then(|dir| match DiskCache::open(dir) {
                Ok(cache) => Some(cache),
                Err(err) => {
                    eprint_line(format_args!(
                        "wasmcell: warning: {err:#}; running without the compile cache"
                    ));
                    None
                }
            }),
        };
        match cache {
            Some(cache) => Engine::with_disk_cache(config, cache),
            None => Engine::new(config),
        }
    }

    /// Loads MODULE: WebAssembly through the caches, or precompiled code when
    /// --allow-precompiled is given and the file is precompiled.
    fn load(&self, sandbox: &Sandbox, module: &std::path::Path) -> Result<Program> {
        if self.allow_precompiled && is_precompiled(module) {
            // SAFETY: the user vouched for this file with --allow-precompiled,
            // whose help says what that means.
            return Ok(unsafe { sandbox.load_precompiled(module) }?);
        }
        Ok(sandbox.load(module)?)
    }

    /// Splits MODULE from the guest's arguments, which must be UTF-8 (WASI
    /// passes strings). A `--` right after MODULE is dropped.
    fn module_and_args(&self) -> Result<(PathBuf, Vec<String>)> {
        let (module, rest) = self.module_and_args.split_first().expect("clap requires MODULE");
        let rest = match rest.first() {
            Some(first) if first == "--" => &rest[1..],
            _ => rest,
        };
        let args = rest
            .iter()
            .map(|a| {
                a.to_str().map(str::to_string).ok_or_else(|| {
                    clap::Error::raw(
                        clap::error::ErrorKind::InvalidUtf8,
                        format!("guest argument {a:?} is not valid UTF-8; WASI passes arguments as UTF-8 strings\n"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((PathBuf::from(module), args))
    }

    fn resolve_policy(&self) -> Result<Policy> {
        let mut policy = match &self.policy {
            Some(path) => Policy::from_file(path)?,
            None => Policy::deny_all(),
        };
        for (host, guest) in &self.dirs {
            policy.grant_dir(host, guest, Access::ReadWrite)?;
        }
        for (host, guest) in &self.ro_dirs {
            policy.grant_dir(host, guest, Access::ReadOnly)?;
        }
        for (name, value) in &self.envs {
            match value {
                Some(value) => policy.set_env(name, value)?,
                None => policy.inherit_env(name)?,
            }
        }
        for entry in &self.allow_connect {
            policy.allow_net(NetKind::TcpConnect, entry, "--allow-connect")?;
        }
        for entry in &self.allow_bind {
            policy.allow_net(NetKind::TcpBind, entry, "--allow-bind")?;
        }
        for entry in &self.allow_http {
            policy.allow_http(entry, "--allow-http")?;
        }
        if let Some(stdin) = &self.stdin {
            policy.set_stdin(stdin.clone())?;
        }
        if let Some(fuel) = self.fuel {
            policy.set_fuel(fuel, "--fuel")?;
        }
        if let Some(memory) = self.memory {
            policy.set_memory(memory, "--memory")?;
        }
        if let Some(timeout) = self.timeout {
            policy.set_timeout(timeout, "--timeout")?;
        }
        if let Some(size) = self.max_module_size {
            policy.set_module_size(size, "--max-module-size")?;
        }
        Ok(policy)
    }
}

/// Takes ownership of the descriptor `--report-fd` names, after checking
/// that it is open for writing and is not stdin, stdout or stderr (which the
/// guest shares).
#[cfg(unix)]
fn claim_report_fd(fd: i32) -> Result<std::fs::File> {
    use std::os::fd::FromRawFd as _;
    let usage = |why: &str| -> anyhow::Error {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!("`--report-fd {fd}`: {why}; open one for the report, such as `--report-fd 3 3>report.json`\n"),
        )
        .into()
    };
    if (0..=2).contains(&fd) {
        return Err(usage("0, 1 and 2 are the guest's stdin, stdout and stderr"));
    }
    if fd < 0 {
        return Err(usage("a file descriptor is not negative"));
    }
    // SAFETY: F_GETFL only reads the descriptor's flags; a closed number
    // gives -1 (EBADF) rather than touching anything.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(usage("no such open file descriptor"));
    }
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        return Err(usage("the file descriptor is open for reading only"));
    }
    // SAFETY: the descriptor is open (checked above) and, claimed before
    // wasmcell opens any file of its own, it is the caller's: nothing else in
    // this process uses or closes it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(not(unix))]
fn claim_report_fd(_fd: i32) -> Result<std::fs::File> {
    Err(clap::Error::raw(
        clap::error::ErrorKind::InvalidValue,
        "`--report-fd` needs a unix system; use `--report FILE`\n",
    )
    .into())
}

/// Prints an error that stopped `wasmcell` as one `error: ...` line on
/// stderr. The message may quote guest-chosen names (a module's imports,
/// say), so its control characters, newlines included, are escaped: no part
/// of it can colour the terminal or pass for a line of wasmcell's own.
pub fn print_error(err: &anyhow::Error) {
    let text = format!("{err:#}");
    eprint_line(format_args!("error: {}", sanitize(text.trim_end())));
}

fn is_precompiled(path: &std::path::Path) -> bool {
    matches!(wasmtime::Engine::detect_precompiled_file(path), Ok(Some(_)))
}

/// A handle cancelled when this process gets SIGINT (Ctrl-C) or SIGTERM, so
/// the run ends with its outcome and report (exit 130) instead of dying
/// mid-write.
fn cancel_on_signals(engine: &Engine) -> Result<CancelHandle> {
    let cancel = CancelHandle::new();
    let handle = cancel.clone();
    let rt = engine.runtime()?;
    let _guard = rt.enter();
    // Registered here, before the guest starts, not when the task first runs.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
        rt.spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            handle.cancel();
        });
    }
    #[cfg(not(unix))]
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            handle.cancel();
        }
    });
    Ok(cancel)
}

/// Precompile a module or component to native code for `wasmcell run --allow-precompiled`.
///
/// The code is compiled for the engine configuration the policy needs (fuel
/// metering, stack size) and this wasmcell's wasmtime version; running it
/// under a policy that needs another configuration fails with a message
/// saying so. `wasmcell run` caches compiled code on its own, so this is for
/// shipping code compiled ahead of time to machines you control.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  wasmcell compile hello.wasm -o hello.cwasm
  wasmcell compile --policy policies/tight.toml app.wasm -o app.cwasm
  wasmcell run --policy policies/tight.toml --allow-precompiled app.cwasm")]
pub struct CompileCommand {
    /// Policy the code will run under (its limits.fuel and limits.stack decide the configuration).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Compile fuel metering in, for running with --fuel (implied by a policy that sets limits.fuel).
    #[arg(long)]
    pub fuel: bool,

    /// Where to write the code [default: MODULE with the extension .cwasm].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The module (wasm32-wasip1) or component (wasm32-wasip2) to compile.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
}

impl CompileCommand {
    /// Compiles, links (so that a module WASI cannot run is refused now) and
    /// writes the code.
    ///
    /// # Errors
    ///
    /// Policy and load errors, and failing to write the output.
    pub fn execute(self) -> Result<u8> {
        let mut policy = match &self.policy {
            Some(path) => Policy::from_file(path)?,
            None => Policy::deny_all(),
        };
        if self.fuel && policy.limits.fuel.value.is_none() {
            policy.set_fuel(u64::MAX, "--fuel")?;
        }
        let engine = Engine::new(EngineConfig::for_policy(&policy))?;
        let sandbox = Sandbox::builder().engine(engine).policy(policy).build()?;
        let program = sandbox.load(&self.module)?;
        let code = program.precompile()?;
        let output = self.output.unwrap_or_else(|| self.module.with_extension("cwasm"));
        std::fs::write(&output, &code).with_context(|| format!("failed to write `{}`", output.display()))?;
        let config = sandbox.engine().config();
        eprint_line(format_args!(
            "wasmcell: compiled `{}` to `{}` ({}, fuel metering {}, stack {}); run it with --allow-precompiled",
            self.module.display(),
            output.display(),
            ByteSize(code.len() as u64),
            if config.fuel { "on" } else { "off" },
            ByteSize(config.stack)
        ));
        Ok(0)
    }
}

/// Validate a policy file and print what it grants, defaults included.
#[derive(Parser, Debug)]
#[command(after_help = "Example:\n  wasmcell check policies/read-only.toml")]
pub struct CheckCommand {
    /// The policy file.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
}

impl CheckCommand {
    /// Loads the policy and prints its description.
    ///
    /// # Errors
    ///
    /// The [`crate::PolicyError`] when the policy is invalid.
    pub fn execute(self) -> Result<u8> {
        let policy = Policy::from_file(&self.policy)?;
        print_stdout(&policy.describe()).context("failed to write to stdout")?;
        Ok(0)
    }
}

/// Output formats of `wasmcell matrix`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixFormat {
    /// The grid, colored on a terminal, then the mismatches.
    Table,
    /// Every cell with its outcome report.
    Json,
    /// JUnit XML, one test case per cell, for CI systems.
    Junit,
}

const MATRIX_EXAMPLES: &str = "\
Examples:
  wasmcell matrix --modules target/wasm32-wasip1/release --policies policies
  wasmcell matrix --modules a.wasm --modules b.wasm --policies policies/tight.toml --expect e.toml
  wasmcell matrix --modules guests/ --policies policies --filter 'fs_*' --format junit

Exit codes: 0 every checked cell matched; 1 a cell did not match; 2 bad input (nothing ran).";

/// Run every module under every policy and check each cell against expectations.
///
/// Each cell runs through the library (modules are compiled once), in
/// parallel. Expectations are TOML: `[[module]]` entries give a module's
/// arguments and stdin, `[[cell]]` entries name a module and a policy (glob
/// patterns allowed; the most specific entry wins, the later one on a tie) and
/// expect any of status, exit-code, stdout-contains, stdout-matches,
/// stderr-contains, stderr-matches, fuel-used-at-most and denial. A cell no
/// entry names is reported as unchecked, never as passed.
#[derive(Parser, Debug)]
#[command(after_help = MATRIX_EXAMPLES)]
pub struct MatrixCommand {
    /// Modules: `.wasm`/`.wat` files, or directories holding them. Repeatable.
    #[arg(long, value_name = "DIR|FILE", required = true, num_args = 1..)]
    pub modules: Vec<PathBuf>,

    /// Policies: `.toml` files, or directories holding them (their
    /// `expectations.toml` is not a policy). Repeatable.
    #[arg(long, value_name = "DIR|FILE", required = true, num_args = 1..)]
    pub policies: Vec<PathBuf>,

    /// Expectations file. Default: `expectations.toml` in the first policy directory, if present.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,

    /// Cells to run at once. Default: one per CPU.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub jobs: usize,

    /// Only cells whose `module/policy`, module or policy name matches this glob.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,

    /// Report format.
    #[arg(long, value_enum, default_value_t = MatrixFormat::Table)]
    pub format: MatrixFormat,

    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl MatrixCommand {
    /// Runs the matrix, writes the report, and returns 0 or 1.
    ///
    /// # Errors
    ///
    /// [`crate::matrix::MatrixError`] and [`crate::PolicyError`] for bad input.
    pub fn execute(self) -> Result<u8> {
        let progress = MatrixProgress::new();
        let options = crate::matrix::MatrixOptions {
            modules: self.modules,
            policies: self.policies,
            expect: self.expect,
            jobs: self.jobs,
            filter: self.filter,
            progress: Some(progress.callback()),
        };
        let matrix = crate::matrix::Matrix::run(&options);
        progress.finish();
        let matrix = matrix?;
        let colour =
            self.output.is_none() && anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
        let report = match self.format {
            MatrixFormat::Table => crate::matrix::render_table(&matrix, colour),
            MatrixFormat::Json => crate::matrix::render_json(&matrix),
            MatrixFormat::Junit => crate::matrix::render_junit(&matrix),
        };
        match &self.output {
            Some(path) => {
                std::fs::write(path, report).with_context(|| format!("failed to write `{}`", path.display()))?;
                let (ok, bad, unchecked) = matrix.counts();
                eprint_line(format_args!(
                    "wasmcell matrix: {ok} matched, {bad} mismatched, {unchecked} unchecked; report in {}",
                    path.display()
                ));
            }
            None => print_stdout(&report).context("failed to write the matrix report to stdout")?,
        }
        Ok(matrix.exit_code())
    }
}

/// The `wasmcell matrix: 12/203 cells` line on stderr: drawn only on a
/// terminal, and only once the cells have run for more than a moment, so that
/// quick runs and CI logs stay quiet. indicatif rate-limits the redraws from
/// the worker threads, fits the line to the terminal, ignores a closed stderr
/// and clears the line at the end.
struct MatrixProgress {
    bar: indicatif::ProgressBar,
    /// When the first cell started.
    start: std::sync::OnceLock<std::time::Instant>,
    shown: std::sync::atomic::AtomicBool,
}

impl MatrixProgress {
    const QUIET_FOR: std::time::Duration = std::time::Duration::from_millis(500);

    fn new() -> std::sync::Arc<MatrixProgress> {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template("wasmcell matrix: {pos}/{len} cells")
                .expect("the progress template is valid"),
        );
        std::sync::Arc::new(MatrixProgress {
            bar,
            start: std::sync::OnceLock::new(),
            shown: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The matrix's progress hook. The bar stays hidden until
    /// [`Self::QUIET_FOR`] after the first cell started; then it draws to
    /// stderr, which indicatif does only when stderr is a terminal.
    fn callback(self: &std::sync::Arc<Self>) -> crate::matrix::ProgressFn {
        let this = self.clone();
        std::sync::Arc::new(move |done, total| {
            let start = *this.start.get_or_init(|| {
                this.bar.set_length(total as u64);
                std::time::Instant::now()
            });
            this.bar.set_position(done as u64);
            if start.elapsed() >= Self::QUIET_FOR && !this.shown.swap(true, std::sync::atomic::Ordering::Relaxed) {
                this.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                this.bar.tick();
            }
        })
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn parse_dir(s: &str) -> Result<(PathBuf, String), String> {
    let (host, guest) = match s.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (s, s),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("expected HOST or HOST::GUEST, got `{s}`"));
    }
    Ok((PathBuf::from(host), guest.to_string()))
}

fn parse_env(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!("expected NAME or NAME=VALUE, got `{s}`"));
    }
    Ok((name.to_string(), value))
}

fn parse_stdin(s: &str) -> Result<Input, String> {
    Ok(match s {
        "null" => Input::Null,
        "inherit" => Input::Inherit,
        "" => return Err("expected `null`, `inherit` or a file".into()),
        path => Input::File(std::path::absolute(path).map_err(|e| e.to_string())?),
    })
}

fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    HumanDuration::parse(s).map(|d| d.0)
}

/// The exit code for an error that stopped `wasmcell` before or instead of a
/// guest run: 2 for policy, usage and matrix-input errors, 126 for load errors, 125 otherwise.
pub fn exit_code_for_error(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.is::<crate::PolicyError>() || e.is::<clap::Error>() || e.is::<crate::matrix::MatrixError>())
    {
        crate::EXIT_USAGE
    } else if err.chain().any(|e| e.is::<crate::LoadError>()) {
        crate::EXIT_LOAD
    } else {
        crate::EXIT_SANDBOX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dir_syntax() {
        assert_eq!(parse_dir("a::/b").unwrap(), (PathBuf::from("a"), "/b".to_string()));
        assert_eq!(parse_dir("/x").unwrap(), (PathBuf::from("/x"), "/x".to_string()));
        assert!(parse_dir("::/b").is_err());
    }

    #[test]
    fn env_syntax() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".to_string(), Some("b=c".to_string())));
        assert_eq!(parse_env("TERM").unwrap(), ("TERM".to_string(), None));
        assert!(parse_env("=x").is_err());
    }

    #[test]
    fn guest_args_follow_the_module() {
        let cli = Cli::try_parse_from(["wasmcell", "run", "--fuel", "5", "m.wasm", "--fuel", "x", "-v"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(run.fuel, Some(5));
        let (module, args) = run.module_and_args().unwrap();
        assert_eq!(module, PathBuf::from("m.wasm"));
        assert_eq!(args, ["--fuel", "x", "-v"]);

        let cli = Cli::try_parse_from(["wasmcell", "run", "m.wasm", "--", "--", "-x"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(
            run.module_and_args().unwrap().1,
            ["--", "-x"],
            "only the first `--` is wasmcell's"
        );
    }
}
