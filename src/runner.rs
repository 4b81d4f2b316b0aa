//! Running a program under a policy: `new_store` → `instantiate_and_run`
//! (raced against the deadline) → `finish` into an [`Outcome`].

use crate::capabilities::{Captured, NetAudit, RunIo};
use crate::engine::{Engine, LoadError, LoadErrorKind, P2Ctx, Program, ProgramKind, State};
use crate::limits::{self, LimitExceeded, MemoryLimiter, OutputBudget};
use crate::outcome::{self, Ending, Outcome};
use crate::policy::Policy;
use anyhow::{Context as _, Result, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{InstancePre, Store, UpdateDeadline};
use wasmtime_wasi::WasiView as _;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::WasiHttpCtx;

/// Runs WebAssembly guests under one [`Policy`].
///
/// A `Sandbox` pairs a policy with an [`Engine`]. It is cheap to share
/// (`Clone` is a reference count) and safe to use from many threads at once:
/// each run gets its own store, WASI context and limits.
///
/// # Example
///
/// ```no_run
/// use wasmcell::{Policy, Sandbox, Status};
///
/// let sandbox = Sandbox::builder()
///     .policy(Policy::from_file("policies/deny-all.toml")?)
///     .stdin(b"hello".to_vec())
///     .build()?;
/// let outcome = sandbox.run("hello.wasm", &["--greet"])?;
/// assert_eq!(outcome.status, Status::Exited(0));
/// println!("{}", String::from_utf8_lossy(&outcome.stdout));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    policy: Policy,
    io: RunIo,
}

/// Builds a [`Sandbox`].
///
/// Defaults:
/// - the policy is [`Policy::deny_all`]: no files, empty environment, stdin
///   closed, no network, default limits;
/// - a new [`Engine`] configured for the policy;
/// - stdin comes from the policy (closed unless it says otherwise);
/// - output the policy sends to `inherit` is captured into
///   [`Outcome::stdout`] and [`Outcome::stderr`] instead, bounded by
///   `limits.output`.
pub struct SandboxBuilder {
    policy: Policy,
    engine: Option<Engine>,
    io: RunIo,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            policy: Policy::deny_all(),
            engine: None,
            io: RunIo {
                stdin: None,
                capture: true,
                log_denials: false,
            },
        }
    }
}

impl SandboxBuilder {
    /// Uses `policy` for every run.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs on a shared `engine` instead of creating one, so that programs
    /// compiled once run under many policies.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Feeds `bytes` to every run's stdin, replacing the policy's stdin.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.io.stdin = Some(bytes);
        self
    }

    /// Whether output the policy sends to `inherit` is captured into the
    /// [`Outcome`] (`true`, the default) or written to this process's own
    /// stdout and stderr (`false`, as the CLI does).
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.io.capture = capture;
        self
    }

    /// Whether each refused capability use is also printed to this process's
    /// stderr as it happens (`false` by default; the CLI turns it on for
    /// `--verbose` and `--report`). Refusals are always in [`Outcome::denials`].
    pub fn log_denials(mut self, log: bool) -> Self {
        self.io.log_denials = log;
        self
    }

    /// Creates the sandbox (and its engine, unless one was given).
    ///
    /// # Errors
    ///
    /// When a new engine cannot be configured, or when the given engine does
    /// not fit the policy (it lacks fuel metering the policy needs, or has a
    /// different stack size).
    pub fn build(self) -> Result<Sandbox> {
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::for_policy(&self.policy)?,
        };
        if let Some(why) = engine.config().mismatch(&self.policy) {
            bail!("the engine cannot enforce this policy: {why}");
        }
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                policy: self.policy,
                io: self.io,
            }),
        })
    }
}

impl Sandbox {
    /// A builder with the defaults listed on [`SandboxBuilder`].
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The policy every run follows.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The engine runs happen on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Reads, compiles and links a module (`wasm32-wasip1`) or component
    /// (`wasm32-wasip2`, command world), refusing files over the policy's
    /// `limits.module-size`. Like [`Engine::load`] with the policy's limit.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, too large, not
    /// WebAssembly, invalid, imports anything but WASI, or is not a command.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        let limit = &self.inner.policy.limits.module_size;
        self.inner
            .engine
            .load_file(path.as_ref(), limit.value, &limit.origin.describe("limits.module-size"))
    }

    /// Like [`Sandbox::load`], for bytes already in memory (binary or WAT);
    /// `name` is what the guest sees as `argv[0]`.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        let fail = |kind| LoadError {
            module: name.into(),
            kind,
        };
        self.check_size(name, bytes.len() as u64)?;
        self.inner.engine.compile(name, bytes).map_err(fail)
    }

    fn check_size(&self, name: &str, size: u64) -> Result<(), LoadError> {
        let limit = &self.inner.policy.limits.module_size;
        if size > limit.value {
            return Err(LoadError {
                module: name.into(),
                kind: LoadErrorKind::TooLarge {
                    size,
                    limit: limit.value,
                    origin: limit.origin.describe("limits.module-size"),
                },
            });
        }
        Ok(())
    }

    /// Loads `module` and runs it once with `args` (not including `argv[0]`,
    /// which is the module's file name). Blocks until the guest ends.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the module cannot be loaded; any other error means
    /// the sandbox itself failed. How the guest ended is never an error: see
    /// [`Outcome::status`].
    pub fn run(&self, module: impl AsRef<Path>, args: &[impl AsRef<str>]) -> Result<Outcome> {
        let program = self.load(module)?;
        self.run_program(&program, args)
    }

    /// Runs an already loaded program once. Blocks until the guest ends.
    ///
    /// Do not call this from inside a tokio runtime; use
    /// [`Sandbox::run_program_async`] there.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the program is larger than this policy's
    /// `limits.module-size`; otherwise only when the sandbox itself fails,
    /// for example when a granted host directory can no longer be opened, or
    /// when `program` was compiled by another engine.
    pub fn run_program(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        self.inner
            .engine
            .runtime()?
            .block_on(self.run_program_async(program, args))
    }

    /// Like [`Sandbox::run_program`], for hosts that run on tokio. The caller's
    /// runtime must have the time driver enabled.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`].
    pub async fn run_program_async(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        let inner = &*self.inner;
        if !wasmtime::Engine::same(program.engine(), inner.engine.wasmtime()) {
            bail!(
                "`{}` was compiled by another engine; load it with this sandbox's engine",
                program.name()
            );
        }
        self.check_size(program.name(), program.size())?;
        let policy = &inner.policy;
        let mut argv = vec![program.name().to_string()];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        let budget = Arc::new(OutputBudget::new(policy.limits.output.value));
        let captured = Captured::default();
        let net = NetAudit::new(policy.net(), inner.io.log_denials);
        let mut wasi = policy.wasi_builder(&argv, &inner.io, &budget, &captured, &net)?;

        // Limits are armed before instantiation: a start function can loop,
        // and the declared minimum memory already goes through the limiter.
        let start = Instant::now();
        let deadline = start + policy.limits.timeout.value;
        let run = RunState {
            start,
            deadline,
            budget,
            captured,
            net,
        };
        match &program.kind {
            ProgramKind::Module(pre) => {
                let mut ctx = wasi.build_p1();
                limits::cap_handles(ctx.ctx().table, &policy.limits);
                let mut store = self.new_store(ctx, deadline)?;
                let result = run.race(run_module(pre, &mut store)).await;
                Ok(self.finish(&mut store, result, &run))
            }
            ProgramKind::Component(pre) => {
                let mut table = ResourceTable::new();
                limits::cap_handles(&mut table, &policy.limits);
                let ctx = P2Ctx {
                    ctx: wasi.build(),
                    table,
                    net: run.net.clone(),
                    http: WasiHttpCtx::new(),
                };
                let mut store = self.new_store(ctx, deadline)?;
                let result = run.race(run_component(pre, &mut store)).await;
                Ok(self.finish(&mut store, result, &run))
            }
        }
    }

    fn new_store<W: Send + 'static>(&self, wasi: W, deadline: Instant) -> Result<Store<State<W>>> {
        let limits = &self.inner.policy.limits;
        let state = State {
            wasi,
            limiter: MemoryLimiter::new(limits.memory.value),
            deadline,
        };
        let mut store = Store::new(self.inner.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        if self.inner.engine.config().fuel {
            // An engine with metering compiled in needs fuel in every store;
            // an unmetered policy gets all there is.
            let fuel = limits.fuel.value.unwrap_or(u64::MAX);
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("failed to set fuel")?;
        }
        // Checked at every epoch tick while the guest computes. Yielding lets
        // the runner's timer (and other runs on the same executor) make
        // progress; the deadline check stops a guest that never calls out.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(LimitExceeded::Timeout))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    fn finish<W>(&self, store: &mut Store<State<W>>, result: Option<wasmtime::Result<i32>>, run: &RunState) -> Outcome {
        let wall = run.start.elapsed();
        let limiter = &store.data().limiter;
        let (status, trap) = outcome::classify(Ending {
            result: result.as_ref(),
            memory_refused: limiter.refused().is_some(),
            output_exceeded: run.budget.exceeded(),
        });
        let peak_memory_bytes = limiter.peak();
        let fuel_used = self
            .inner
            .policy
            .limits
            .fuel
            .value
            .map(|total| total.saturating_sub(store.get_fuel().unwrap_or(0)));
        let take = |b: &std::sync::Mutex<Vec<u8>>| std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()));
        Outcome {
            status,
            trap,
            fuel_used,
            wall,
            peak_memory_bytes,
            stdout_bytes: run.budget.stdout_bytes(),
            stderr_bytes: run.budget.stderr_bytes(),
            stdout: take(&run.captured.stdout),
            stderr: take(&run.captured.stderr),
            denials: run.net.take(),
        }
    }
}

/// What one run tracks outside its store.
struct RunState {
    start: Instant,
    deadline: Instant,
    budget: Arc<OutputBudget>,
    captured: Captured,
    net: NetAudit,
}

impl RunState {
    /// Runs `guest` until it ends or the deadline passes. The epoch callback
    /// catches a guest that computes past the deadline; this timer catches one
    /// blocked in a host call (sleeping, reading stdin), which never reaches
    /// an epoch check. Dropping the guest's future unwinds it cleanly.
    async fn race(
        &self,
        guest: impl std::future::Future<Output = wasmtime::Result<i32>>,
    ) -> Option<wasmtime::Result<i32>> {
        tokio::time::timeout_at(self.deadline.into(), guest).await.ok()
    }
}

async fn run_module(pre: &InstancePre<State<WasiP1Ctx>>, store: &mut Store<State<WasiP1Ctx>>) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    start.call_async(&mut *store, ()).await?;
    Ok(0)
}

async fn run_component(pre: &CommandPre<State<P2Ctx>>, store: &mut Store<State<P2Ctx>>) -> wasmtime::Result<i32> {
    let command = pre.instantiate_async(&mut *store).await?;
    match command.wasi_cli_run().call_run(&mut *store).await? {
        Ok(()) => Ok(0),
        Err(()) => Ok(1),
    }
}
