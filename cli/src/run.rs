//! `wasmcell run`: flags become a policy, the guest runs, the ending is
//! explained with the flag that changes it, and the report is written.

use crate::app::{
    Advised, WasmFlag, add_wasm_flags, advise_proposals, ending_advice, eprint_line, parse_wasm_flag, print_stdout,
    usage_error, with_compile_notice,
};
use crate::settings::SettingFlags;
use anyhow::{Context as _, Result};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use wasmcell::policy::{Access, ByteSize, Input, NetKind, Origin, Output, WallMode};
use wasmcell::{
    AuditFile, CacheInGrant, CacheKeyError, CancelHandle, DiskCache, EXIT_CODE_TABLE, Engine, EngineConfig, HostFile,
    LoadError, LoadErrorKind, Outcome, Policy, Program, RunOptions, Sandbox, Status, sanitize,
    wall::{self, WallError, WallPlan, WallReport},
};

const RUN_EXAMPLES: &str = "\
Examples:
  wasmcell run hello.wasm
  wasmcell run --policy policies/read-only.toml fs_read.wasm /data/hello.txt
  wasmcell run --ro-dir ./data::/data --env LANG=C.UTF-8 --fuel 1000000 app.wasm --verbose
  wasmcell run --dir ./project::/work --cwd /work/src build-tool.wasm
  wasmcell run --timeout 2s --memory 64MiB --report-fd 3 untrusted.wasm 3>report.json
  wasmcell run --invoke add --fuel 100000 plugin.wasm 1 2
  wasmcell run --invoke 'greet(\"world\")' plugin-component.wasm
  wasmcell run --wasm exceptions --wasm tail-call cxx-tool.wasm";

fn run_long_help() -> String {
    format!("{RUN_EXAMPLES}\n\nExit codes:\n{EXIT_CODE_TABLE}")
}

/// Run a WebAssembly module or component under a policy.
///
/// MODULE is a core module built for wasm32-wasip1 or a component built for
/// wasm32-wasip2 (command world); which one is detected from its header.
/// Everything after MODULE is passed to the guest as its arguments (a `--`
/// before them is allowed). The guest's `argv[0]` is the module's file name.
/// With --invoke, MODULE may also be a reactor or a component of any world,
/// and one of its exports is called instead.
///
/// Without --policy the guest gets nothing: no files, an empty environment,
/// stdin closed, no network, and the default limits.
#[derive(Parser, Debug, Clone)]
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

    /// Grant one host file read-write at GUEST, alone in its guest folder. Repeatable.
    ///
    /// GUEST is an absolute path and may name the file otherwise than the host does
    /// (`conf/one.conf::/etc/app.conf`): the guest sees, lists and opens only GUEST's name.
    #[arg(long = "file", value_name = "HOST::GUEST", value_parser = parse_dir)]
    pub files: Vec<(PathBuf, String)>,

    /// Grant one host file read-only at GUEST, alone in its guest folder. Repeatable.
    ///
    /// GUEST may name the file otherwise than the host does, as for --file.
    #[arg(long = "ro-file", value_name = "HOST::GUEST", value_parser = parse_dir)]
    pub ro_files: Vec<(PathBuf, String)>,

    /// The guest's initial working directory: a guest path inside a granted directory (overrides fs.cwd).
    ///
    /// Components are told it as `initial-cwd`; every guest also sees it as
    /// PWD, which preview 1 programs read it from. wasi-libc starts at `/`
    /// whatever it is, so a C or Rust program changes there itself.
    #[arg(long, value_name = "GUEST_PATH")]
    pub cwd: Option<String>,

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

    /// Trust the CA certificates in this PEM file for https requests, beside the public CAs
    /// (adds to net.ca-certificates).
    #[arg(long = "ca-certificate", value_name = "FILE")]
    pub ca_certificates: Vec<PathBuf>,

    /// Print each refused capability use to stderr as it happens (also on with --report or --report-fd).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// The `[limits]` flags: `--fuel`, `--memory`, `--timeout`, `--max-module-size`.
    #[command(flatten)]
    pub settings: SettingFlags,

    /// Turn on Wasm proposal NAME, such as `exceptions` or `tail-call` (adds to wasm.proposals); `unknown-imports-trap` sets wasm.unknown-imports = "trap". Repeatable.
    ///
    /// Names are spelled as `wasmtime run -W` spells them: exceptions,
    /// tail-call, function-references, gc, multi-memory, memory64,
    /// relaxed-simd, custom-page-sizes, wide-arithmetic are off by default;
    /// extended-const is on in every engine; threads and shared memory
    /// cannot be turned on. With `unknown-imports-trap`, a guest importing a
    /// function wasmcell does not provide runs, and ends as a trap naming
    /// the import if it calls it (as `wasmtime run -W unknown-imports-trap`).
    #[arg(long = "wasm", value_name = "NAME", value_parser = parse_wasm_flag)]
    pub wasm: Vec<WasmFlag>,

    /// The second wall: `require`, `auto` (the default) or `off` (overrides wall.mode).
    ///
    /// After loading the module and before the guest's first instruction,
    /// the run's process confines itself with no_new_privs, Landlock (only the
    /// policy's grants and ports) and a seccomp filter, so that a bug in the
    /// runtime a guest reaches still meets the kernel. `auto` applies every
    /// layer the kernel supports and names any missing one on stderr;
    /// `require` refuses to run (exit 2) unless all are in effect; `off` is for
    /// debugging. A run the wall stops ends with exit code 159.
    #[arg(long, value_name = "MODE", value_parser = parse_wall)]
    pub wall: Option<WallMode>,

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

    /// Write every capability use (file operations and network uses, allowed or denied) to FILE, one JSON object per line.
    ///
    /// Each line has `time`, `kind`, `target`, `decision` (`allowed` or
    /// `denied`) and `rule`. The file holds at most --audit-limit bytes and
    /// then ends with a `{"truncated": true, ...}` line; the report's `uses`
    /// counts every use either way. Created without following links.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,

    /// Most bytes --audit writes (default 64 MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "audit", default_value = "64MiB")]
    pub audit_limit: u64,

    /// Accept a precompiled MODULE (a .cwasm from `wasmcell compile`).
    ///
    /// Precompiled code is native code that runs without being validated:
    /// use this only for files you compiled yourself and kept where nobody
    /// else can write them. Without this flag a .cwasm is refused.
    #[arg(long)]
    pub allow_precompiled: bool,

    /// A detached signature of MODULE (from `wasmcell sign --detached`), for
    /// a policy whose module.signed-by asks for one. An embedded signature
    /// needs no flag.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,

    /// Keep compiled code in DIR (created owner-only) instead of the default
    /// cache: $WASMCELL_CACHE_DIR, else $XDG_CACHE_HOME/wasmcell, else ~/.cache/wasmcell.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the module without reading or writing the compile cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Call one export instead of running MODULE as a command, and print its results.
    ///
    /// For a core module, NAME is the export and the arguments after MODULE
    /// are its parameters, one number each (i32, i64, f32, f64); results are
    /// printed one per line, and a reactor's `_initialize` runs first. For a
    /// component, give the call in WAVE syntax, such as `--invoke 'add(1, 2)'`
    /// (quoted for the shell); the result is printed in WAVE. Policy and
    /// limits apply as to a run, and the report names the call and results.
    #[arg(long, value_name = "NAME|CALL")]
    pub invoke: Option<String>,

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
    /// Loads the policy, applies the flags, loads the guest, puts up the
    /// second wall, runs the guest and reports.
    ///
    /// # Errors
    ///
    /// Policy errors, load errors, a wall `require` cannot have, and sandbox
    /// failures.
    pub fn execute(self) -> Result<u8> {
        // Claimed before anything else opens a file, so that the number
        // cannot name one of wasmcell's own descriptors.
        let report_fd = match self.report_fd {
            Some(n) => Some((n, claim_report_fd(n)?)),
            None => None,
        };
        let policy = self.resolve_policy()?;
        Ok(self.run_under(policy, report_fd, RunMode::default())?.code())
    }

    /// Runs the guest under `policy` as `run` does (the watcher and the
    /// second wall, the report and audit its flags ask for), as `mode` says.
    /// In the watched child, returns [`Ran::Child`] once the run is over:
    /// the caller ends the process with its code and does nothing more.
    pub(crate) fn run_under(
        &self,
        policy: Policy,
        report_fd: Option<(i32, std::fs::File)>,
        mode: RunMode,
    ) -> Result<Ran> {
        self.check_report_dash(&policy)?;
        // The report's folder is resolved now, before the guest can plant a
        // link on the way; the file is created without following links.
        let report_file = match &self.report {
            Some(path) if path.as_os_str() != "-" => Some(HostFile::resolve(&policy, path, "--report")?),
            _ => None,
        };
        let audit = match &self.audit {
            Some(path) => {
                let file = HostFile::resolve(&policy, path, "--audit")?;
                check_outside_grants(&policy, file.path(), "--audit", "write the audit elsewhere")?;
                Some(AuditFile::create(&file, self.audit_limit)?)
            }
            None => None,
        };
        let log_denials = self.verbose || self.report.is_some() || report_fd.is_some();
        // The watcher splits off now, while the process is small (a fork
        // copies its page tables) and has one thread: it stays outside the
        // wall and writes the report; the child loads, confines, runs.
        let mut report = ReportOut::new(report_fd, report_file, self.report.is_some());
        let started = std::time::Instant::now();
        let channel = match start_watcher(&policy, &mut report)? {
            #[cfg(target_os = "linux")]
            Wall::Watcher(end) => {
                let code = report_child_end(&end, &mut report, &policy, started);
                return Ok(Ran::Ended {
                    code,
                    report: end.exited.and(end.report),
                });
            }
            Wall::Run(channel) => channel,
        };
        self.run_here(policy, channel, audit.as_ref(), report, log_denials, mode)
    }

    /// The run's own process: loads the guest, puts up the second wall,
    /// runs, and reports (to the watcher through `channel`, when it has one).
    fn run_here(
        &self,
        policy: Policy,
        mut channel: Option<WallChannelOf>,
        audit: Option<&std::sync::Arc<AuditFile>>,
        mut report: ReportOut,
        log_denials: bool,
        mode: RunMode,
    ) -> Result<Ran> {
        let engine = self.engine(&policy)?;
        let mut builder = Sandbox::builder()
            .engine(engine)
            .policy(policy)
            .capture_output(mode.quiet)
            .record_uses(mode.record_uses)
            .log_denials(log_denials);
        if let Some(audit) = audit {
            builder = builder.audit(audit.clone());
        }
        let sandbox = builder.build()?;
        let (module, args) = self.module_and_args()?;
        let program = self.load_for_run(&sandbox, &module)?;
        if let Some(audit) = audit {
            audit.header(program.name(), program.sha256().as_deref(), sandbox.policy_sha256());
        }
        // The stdio files are created before the wall goes up: the wall lets
        // the run write them, not create them.
        sandbox.create_output_files()?;
        put_up_wall(sandbox.policy(), channel.as_mut())?;
        let cancel = cancel_on_signals()?;
        let (outcome, json) = match &self.invoke {
            Some(call) => invoke(&sandbox, &program, call, &args, &cancel, mode.quiet)?,
            None => {
                let outcome = sandbox.run_with(&program, &args, RunOptions::new().cancel(&cancel))?;
                let json = outcome.to_json();
                (outcome, json)
            }
        };
        if !mode.quiet {
            print_ending(&outcome, sandbox.policy(), log_denials);
        }
        if let Some(audit) = audit {
            audit.finish()?;
        }
        // Behind the wall, the watcher writes the report: the wall would not
        // let this process reach the report's file.
        match channel {
            #[cfg(target_os = "linux")]
            Some(channel) => {
                channel.send_report(&json);
                Ok(Ran::Child(outcome.exit_code()))
            }
            _ => {
                report.write(&json)?;
                Ok(Ran::Ended {
                    code: outcome.exit_code(),
                    report: Some(json),
                })
            }
        }
    }

    /// Loads MODULE as a command, or as a library for --invoke.
    fn load_for_run(&self, sandbox: &Sandbox, module: &std::path::Path) -> Result<Program> {
        let signature = match &self.signature {
            Some(path) => Some(crate::sign::read_small(path, "--signature")?),
            None => None,
        };
        match (&self.invoke, &signature) {
            (Some(_), Some(sig)) => with_compile_notice(module, || sandbox.load_library_signed(module, sig))
                .map_err(|err| advise_load(err, "--invoke takes WebAssembly, not precompiled code")),
            (Some(_), None) => with_compile_notice(module, || sandbox.load_library(module))
                .map_err(|err| advise_load(err, "--invoke takes WebAssembly, not precompiled code")),
            (None, Some(sig)) => with_compile_notice(module, || sandbox.load_signed(module, sig))
                .map_err(|err| advise_load(err, "a detached signature signs WebAssembly, not precompiled code")),
            (None, None) => with_compile_notice(module, || self.load(sandbox, module)),
        }
    }

    /// Refuses `--report -` while the guest's stderr is this process's
    /// stderr: the guest could print a report of its own there, and nothing
    /// would tell the two apart.
    fn check_report_dash(&self, policy: &Policy) -> Result<()> {
        let dash = self.report.as_ref().is_some_and(|r| r.as_os_str() == "-");
        if dash && matches!(policy.stderr(), Output::Inherit) {
            return Err(usage_error(
                "`--report -` would write the report on the guest's own stderr, where the guest can print a fake one; \
                 use `--report FILE` or `--report-fd N` (such as `--report-fd 3 3>report.json`), \
                 or send the guest's stderr elsewhere with `stdio.stderr` in the policy",
            ));
        }
        Ok(())
    }

    /// An engine for the policy, with the compile cache unless --no-cache.
    /// A cache the run cannot use (one of its read-write grants reaches it,
    /// the keyring holds no key for it, or the default folder is unusable)
    /// only costs speed, so it is a warning; an unusable --cache-dir the user
    /// named is an error.
    fn engine(&self, policy: &Policy) -> Result<Engine> {
        let config = EngineConfig::for_policy(policy);
        let dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => DiskCache::default_dir(),
        };
        let Some(dir) = dir else {
            return Engine::new(config);
        };
        // Decided before the folder is opened or created: a run never uses
        // a cache its guest could write.
        if let Some(why) = CacheInGrant::find(policy, &dir) {
            eprint_line(format_args!(
                "wasmcell: warning: {why}; running without it (choose another folder with --cache-dir)"
            ));
            return Engine::new(config);
        }
        match DiskCache::open(&dir) {
            Ok(cache) => Engine::with_disk_cache(config, cache),
            Err(err) if self.cache_dir.is_none() || err.downcast_ref::<CacheKeyError>().is_some() => {
                eprint_line(format_args!(
                    "wasmcell: warning: {err:#}; running without the compile cache"
                ));
                Engine::new(config)
            }
            Err(err) => Err(Advised::wrap(err, "or choose another directory with --cache-dir")),
        }
    }

    /// Loads MODULE: WebAssembly through the caches, or precompiled code when
    /// --allow-precompiled is given and the file is precompiled (the library
    /// refuses it as WebAssembly with [`LoadErrorKind::Precompiled`]).
    fn load(&self, sandbox: &Sandbox, module: &std::path::Path) -> Result<Program> {
        match sandbox.load(module) {
            Err(err) if self.allow_precompiled && matches!(err.kind(), LoadErrorKind::Precompiled(_)) => {
                // SAFETY: the user vouched for this file with --allow-precompiled,
                // whose help says what that means.
                unsafe { sandbox.load_precompiled(module) }.map_err(|err| {
                    advise_load(
                        err,
                        "compile it again with `wasmcell compile`, the policy you run it with and the same --fuel and --wasm flags",
                    )
                })
            }
            other => other
                .map_err(|err| advise_load(err, "run it only if you compiled it yourself, with --allow-precompiled")),
        }
    }

    /// Splits MODULE from the guest's arguments, which must be UTF-8 (WASI
    /// passes strings). A `--` right after MODULE is dropped.
    pub(crate) fn module_and_args(&self) -> Result<(PathBuf, Vec<String>)> {
        let (module, rest) = self.module_and_args.split_first().expect("clap requires MODULE");
        let rest = match rest.first() {
            Some(first) if first == "--" => &rest[1..],
            _ => rest,
        };
        let args = rest
            .iter()
            .map(|a| {
                a.to_str().map(str::to_string).ok_or_else(|| {
                    usage_error(format!(
                        "guest argument {a:?} is not valid UTF-8; WASI passes arguments as UTF-8 strings"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((PathBuf::from(module), args))
    }

    /// The policy file, with the flags as one more layer over it, resolved
    /// once. Each value a flag sets is marked with that flag, so that
    /// messages name what the user typed.
    pub(crate) fn resolve_policy(&self) -> Result<Policy> {
        let mut policy = Policy::builder();
        if let Some(path) = &self.policy {
            policy = policy.file(path)?;
        }
        for (host, guest) in &self.dirs {
            policy = policy.with_origin(Origin::Flag("--dir"), |b| b.grant_dir(host, guest, Access::ReadWrite));
        }
        for (host, guest) in &self.ro_dirs {
            policy = policy.with_origin(Origin::Flag("--ro-dir"), |b| b.grant_dir(host, guest, Access::ReadOnly));
        }
        for (host, guest) in &self.files {
            policy = policy.with_origin(Origin::Flag("--file"), |b| b.grant_file(host, guest, Access::ReadWrite));
        }
        for (host, guest) in &self.ro_files {
            policy = policy.with_origin(Origin::Flag("--ro-file"), |b| {
                b.grant_file(host, guest, Access::ReadOnly)
            });
        }
        for (name, value) in &self.envs {
            policy = policy.with_origin(Origin::Flag("--env"), |b| match value {
                Some(value) => b.env(name, value),
                None => b.inherit_env(name),
            });
        }
        for entry in &self.allow_connect {
            policy = policy.with_origin(Origin::Flag("--allow-connect"), |b| {
                b.allow_net(NetKind::TcpConnect, entry)
            });
        }
        for entry in &self.allow_bind {
            policy = policy.with_origin(Origin::Flag("--allow-bind"), |b| b.allow_net(NetKind::TcpBind, entry));
        }
        for entry in &self.allow_http {
            policy = policy.with_origin(Origin::Flag("--allow-http"), |b| b.allow_http(entry));
        }
        for path in &self.ca_certificates {
            policy = policy.with_origin(Origin::Flag("--ca-certificate"), |b| b.ca_certificate(path));
        }
        if let Some(cwd) = &self.cwd {
            policy = policy.with_origin(Origin::Flag("--cwd"), |b| b.cwd(cwd));
        }
        if let Some(stdin) = &self.stdin {
            policy = policy.with_origin(Origin::Flag("--stdin"), |b| b.stdin(stdin.clone()));
        }
        policy = self.settings.apply(policy)?;
        if let Some(mode) = self.wall {
            policy = policy.with_origin(Origin::Flag("--wall"), |b| b.wall_mode(mode));
        }
        Ok(add_wasm_flags(policy, &self.wasm).build()?)
    }
}

/// How [`RunCommand::run_under`] runs the guest.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunMode {
    /// Keep the run's distinct capability uses (`uses_seen` in the report).
    pub record_uses: bool,
    /// Print nothing of the guest's: its output is captured and dropped,
    /// and no ending line is printed.
    pub quiet: bool,
}

/// Which process [`RunCommand::run_under`] returns in.
#[derive(Debug)]
pub(crate) enum Ran {
    /// The watched child, its run over: end the process with this code.
    Child(u8),
    /// The process that started the run, once it ended: its exit code, and
    /// the run's report when it made one.
    Ended {
        code: u8,
        report: Option<serde_json::Value>,
    },
}

impl Ran {
    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Ran::Child(code) | Ran::Ended { code, .. } => *code,
        }
    }
}

/// Takes ownership of the descriptor `--report-fd` names, after checking
/// that it is open for writing and is not stdin, stdout or stderr (which the
/// guest shares).
#[cfg(unix)]
fn claim_report_fd(fd: i32) -> Result<std::fs::File> {
    use std::os::fd::FromRawFd as _;
    let usage = |why: &str| -> anyhow::Error {
        usage_error(format!(
            "`--report-fd {fd}`: {why}; open one for the report, such as `--report-fd 3 3>report.json`"
        ))
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
    Err(usage_error("`--report-fd` needs a unix system; use `--report FILE`"))
}

/// `--invoke`: instantiates the library, calls the export and prints its
/// results on stdout. Returns the call's outcome (or instantiation's, when
/// that did not finish) and the report.
fn invoke(
    sandbox: &Sandbox,
    program: &Program,
    call: &str,
    args: &[String],
    cancel: &CancelHandle,
    quiet: bool,
) -> Result<(Outcome, serde_json::Value)> {
    let mut instance = sandbox.instantiate_with(program, RunOptions::new().cancel(cancel))?;
    if instance.poisoned().is_some() {
        let outcome = instance.started().clone();
        let mut json = outcome.to_json();
        if let Some(map) = json.as_object_mut() {
            map.insert("invoked".into(), call.into());
            map.insert("results".into(), serde_json::Value::Null);
        }
        return Ok((outcome, json));
    }
    let invocation = instance.invoke(call, args)?;
    for result in invocation.results.iter().flatten().filter(|_| !quiet) {
        print_stdout(&format!("{}\n", sanitize(result))).context("failed to print the results")?;
    }
    let json = invocation.to_json();
    Ok((invocation.outcome, json))
}

/// The line that explains how the run ended, with the flag that changes it,
/// and the count of refusals not recorded.
fn print_ending(outcome: &Outcome, policy: &Policy, log_denials: bool) {
    if let Some(line) = outcome.ending_line(policy) {
        match ending_advice(outcome.status) {
            Some(advice) => eprint_line(format_args!("wasmcell: {line}; {advice}")),
            None => eprint_line(format_args!("wasmcell: {line}")),
        }
    }
    if log_denials && outcome.denials_dropped > 0 {
        eprint_line(format_args!(
            "wasmcell: {} more refusals were counted but not recorded",
            outcome.denials_dropped
        ));
    }
}

/// Where the JSON report goes: written by the process outside the second
/// wall (the watcher, or the run itself when the wall is off).
enum ReportOut {
    None,
    Fd(i32, std::fs::File),
    File(HostFile),
    Stderr,
}

impl ReportOut {
    fn new(fd: Option<(i32, std::fs::File)>, file: Option<HostFile>, asked: bool) -> ReportOut {
        match (fd, file) {
            (Some((n, file)), _) => ReportOut::Fd(n, file),
            (None, Some(host)) => ReportOut::File(host),
            (None, None) if asked => ReportOut::Stderr,
            (None, None) => ReportOut::None,
        }
    }

    fn write(&mut self, json: &serde_json::Value) -> Result<()> {
        use std::io::Write as _;
        let text = serde_json::to_string_pretty(json).expect("a JSON value serializes") + "\n";
        match self {
            ReportOut::None => Ok(()),
            ReportOut::Stderr => {
                eprint_line(format_args!("{}", text.trim_end()));
                Ok(())
            }
            ReportOut::Fd(n, file) => file
                .write_all(text.as_bytes())
                .with_context(|| format!("failed to write the report to file descriptor {n}")),
            ReportOut::File(host) => host.write(text.as_bytes()),
        }
    }
}

/// Which side of the second wall this process is on after [`put_up_wall`].
enum Wall {
    /// This process runs the guest, confined unless the wall is off; the
    /// channel to its watcher, when it has one.
    #[cfg(target_os = "linux")]
    Run(Option<wall::WallChannel>),
    #[cfg(not(target_os = "linux"))]
    Run(Option<std::convert::Infallible>),
    /// This process watched the confined run, which has ended.
    #[cfg(target_os = "linux")]
    Watcher(wasmcell::wall::ChildEnd),
}

/// Splits off the watcher unless the wall is off: the parent returns
/// [`Wall::Watcher`] once the run has ended; the child (the run) drops its
/// copy of the report's descriptor and every descriptor it inherited, so that
/// nothing but the policy's grants is within its reach, and returns
/// [`Wall::Run`] with its channel to the watcher. `require` is checked
/// before the split, so that a refusal comes from this process with nothing
/// run.
fn start_watcher(policy: &Policy, report: &mut ReportOut) -> Result<Wall> {
    match policy.wall().mode.value {
        WallMode::Off => return Ok(Wall::Run(None)),
        WallMode::Auto => {}
        WallMode::Require => {
            let probe = wall::probe(&WallPlan::for_policy(policy));
            if !probe.complete() {
                return Err(Advised::wrap(WallError::required(probe), "or run with --wall auto"));
            }
        }
    }
    #[cfg(target_os = "linux")]
    {
        // The guest's whole life (an --invoke run has an instantiation and a
        // call, each with its own limit), and a grace.
        let limit = policy.limits().timeout.value * 2 + std::time::Duration::from_secs(2);
        match wall::fork_watched(Some(limit)).context("failed to start the run's watcher")? {
            wall::Watched::Parent(end) => Ok(Wall::Watcher(end)),
            wall::Watched::Child(channel) => {
                *report = ReportOut::None;
                wall::close_inherited_descriptors();
                Ok(Wall::Run(Some(channel)))
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    Ok(Wall::Run(None))
}

/// Puts up the second wall for `policy` once the guest is loaded, says on
/// stderr which layer is missing, if any (or that the wall is off), and
/// sends the watcher the wall that took effect.
#[cfg_attr(not(target_os = "linux"), expect(unused_variables, reason = "no watcher off Linux"))]
fn put_up_wall(policy: &Policy, channel: Option<&mut WallChannelOf>) -> Result<()> {
    let plan = WallPlan::for_policy(policy);
    let report = wall::confine_current_process(&plan).map_err(|e| Advised::wrap(e, "or run with --wall auto"))?;
    if plan.mode == WallMode::Off {
        eprint_line(format_args!(
            "wasmcell: warning: the second wall is off ({}); the run relies on the first wall alone",
            policy.wall().mode.origin.cite("wall.mode")
        ));
    } else if let Some(line) = report.missing_line() {
        eprint_line(format_args!("wasmcell: warning: {line}"));
    }
    #[cfg(target_os = "linux")]
    if let Some(channel) = channel {
        channel.send_wall(&report);
    }
    Ok(())
}

#[cfg(target_os = "linux")]
type WallChannelOf = wall::WallChannel;
#[cfg(not(target_os = "linux"))]
type WallChannelOf = std::convert::Infallible;

/// The watcher's side once the run has ended: its exit code passes through;
/// a run the wall killed gets its report and exit code 159 here; a run
/// killed by another signal is the sandbox failing (125).
#[cfg(target_os = "linux")]
fn report_child_end(
    end: &wasmcell::wall::ChildEnd,
    report: &mut ReportOut,
    policy: &Policy,
    started: std::time::Instant,
) -> u8 {
    if let Some(code) = end.exited {
        // The wall the report names is the one the run sent before its guest
        // started, which the guest could not have shaped.
        let json = end.report.clone().map(|mut json| {
            json["wall"] = end.wall.as_ref().map(WallReport::to_json).unwrap_or_default();
            json
        });
        // A report that cannot be written ends the command as it would
        // without the wall: a link planted on its path is a refusal (2).
        if let Some(json) = &json
            && let Err(err) = report.write(json)
        {
            crate::app::print_error(&err);
            return crate::app::exit_code_for_error(&err);
        }
        return u8::try_from(code).unwrap_or(wasmcell::EXIT_SANDBOX);
    }
    if end.overran {
        let mut outcome = Outcome::watched(Status::Timeout, end.wall.clone());
        outcome.elapsed = started.elapsed();
        eprint_line(format_args!(
            "wasmcell: the run outlived twice its limit ({}) and was killed by its watcher: its own deadline no longer stopped it",
            policy.limits().timeout.origin.cite("limits.timeout")
        ));
        if let Err(err) = report.write(&outcome.to_json()) {
            crate::app::print_error(&err);
        }
        return outcome.exit_code();
    }
    if !end.wall_stopped() {
        eprint_line(format_args!(
            "error: the run's process was killed by signal {}; nothing is known of how its guest ended",
            end.signal.unwrap_or_default()
        ));
        return wasmcell::EXIT_SANDBOX;
    }
    let mut outcome = Outcome::wall_stopped(end.wall.clone());
    outcome.elapsed = started.elapsed();
    print_ending(&outcome, policy, false);
    if let Err(err) = report.write(&outcome.to_json()) {
        crate::app::print_error(&err);
        return crate::app::exit_code_for_error(&err);
    }
    outcome.exit_code()
}

/// The flag that fixes a load error, after the library's message:
/// `precompiled` for precompiled code refused or not fitting the engine.
fn advise_load(err: LoadError, precompiled: &'static str) -> anyhow::Error {
    match err.kind() {
        LoadErrorKind::TooLarge { .. } => Advised::wrap(err, "raise it with --max-module-size"),
        LoadErrorKind::Precompiled(_) => Advised::wrap(err, precompiled),
        LoadErrorKind::NotCommand(_) => Advised::wrap(
            err,
            "to call one of its exports, add --invoke NAME (for a component, a call such as --invoke 'add(1, 2)')",
        ),
        _ => advise_proposals(err),
    }
}

/// A handle cancelled when this process gets SIGINT (Ctrl-C) or SIGTERM, so
/// the run ends with its outcome and report (exit 130) instead of dying
/// mid-write. The signals are watched by a thread of the CLI's own, on a
/// small single-threaded runtime, so the command line needs nothing of the
/// library's internals; the thread ends with the process.
fn cancel_on_signals() -> Result<CancelHandle> {
    let cancel = CancelHandle::new();
    let handle = cancel.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("failed to start the signal listener")?;
    // Registered here, before the guest starts, not when the thread first runs.
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = rt.enter();
        (
            signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?,
            signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?,
        )
    };
    std::thread::Builder::new()
        .name("wasmcell-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                #[cfg(unix)]
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                #[cfg(not(unix))]
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                handle.cancel();
            });
        })
        .context("failed to start the signal thread")?;
    Ok(cancel)
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

fn parse_wall(s: &str) -> Result<WallMode, String> {
    WallMode::parse(s)
}

fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0)
}

/// Refuses a file wasmcell writes or reads back (`flag`'s) that the guest
/// could write while it runs: one inside a read-write grant, or a file
/// granted read-write. `elsewhere` says what to do instead.
pub(crate) fn check_outside_grants(policy: &Policy, path: &std::path::Path, flag: &str, elsewhere: &str) -> Result<()> {
    for grant in policy.dirs() {
        let file_rw = grant
            .rules
            .files
            .iter()
            .any(|f| f.access == Access::ReadWrite && path == grant.host.join(&f.host));
        if grant.access == Access::ReadWrite && grant.rules.files.is_empty() && path.starts_with(&grant.host) || file_rw
        {
            return Err(usage_error(format!(
                "{flag} `{}` is inside the read-write grant at `{}` (host `{}`), where the guest could change it; {elsewhere}",
                path.display(),
                grant.guest,
                grant.host.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Cli, Command};

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
        let fuel = run.resolve_policy().unwrap().limits().fuel.clone();
        assert_eq!((fuel.value, &fuel.origin), (Some(5), &Origin::Flag("--fuel")));
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
