//! Calling a guest's exports many times: [`Sandbox::instantiate`] makes an
//! [`Instance`] under the sandbox's policy, and each call of an export gets
//! its own fuel, deadline and [`Outcome`]. Values cross as wasmtime's own
//! (`wasmtime::Val`, `wasmtime::component::Val`), or as text: numbers for a
//! core module's exports, a WAVE function call for a component's.

use crate::engine::{LoadError, Program, ProgramKind, check_initialize};
use crate::outcome::{Outcome, RequestError, RequestErrorKind};
use crate::sandbox::{Ended, RunOptions, RunState, Sandbox};
use crate::store::{P2Ctx, State};
use crate::term::{sanitize, truncate};
use anyhow::{Context as _, Result};
use std::time::Instant;
use wasmtime::component::{self, Type};
use wasmtime::{Store, Val, ValType};
use wasmtime_wasi::p1::WasiP1Ctx;

/// A program instantiated once under a sandbox's policy, whose exports are
/// called any number of times. Linear memory, globals and component
/// resources persist between calls, as the guest expects of its host.
///
/// Each call runs with a fresh `limits.fuel` and `limits.timeout` and ends
/// with its own [`Outcome`], classified like a run: a call that returns is
/// `Status::Exited(0)`, with its results. A call that ends any other way (a
/// trap, a limit, `proc_exit`, the [`CancelHandle`](crate::CancelHandle)
/// given to [`Sandbox::instantiate_with`]) leaves the guest mid-way, so the
/// instance is poisoned: later calls are refused without running, saying
/// why. `limits.memory` and `limits.output` hold for the instance's whole life.
///
/// Instantiating runs the guest's start function and, for a core module
/// that exports it, `_initialize` (a reactor's constructor); how that ended
/// is [`Instance::started`].
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, Sandbox, Status};
///
/// let counter = r#"(module
///     (global $n (mut i32) (i32.const 0))
///     (func (export "bump") (param i32) (result i32)
///         (global.set $n (i32.add (global.get $n) (local.get 0)))
///         (global.get $n)))"#;
/// let policy = Policy::builder().fuel(10_000).build()?;
/// let sandbox = Sandbox::builder().policy(policy).build()?;
/// let program = sandbox.load_library_bytes("counter.wasm", counter.as_bytes())?;
/// let mut instance = sandbox.instantiate(&program)?;
///
/// let first = instance.call("bump", &[wasmtime::Val::I32(5)])?;
/// assert_eq!(first.outcome.status, Status::Exited(0));
/// assert_eq!(first.results.unwrap()[0].unwrap_i32(), 5);
/// // The same instance: the global kept its value.
/// let second = instance.invoke("bump", &["2"])?;
/// assert_eq!(second.results, Some(vec!["7".to_string()]));
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Instance {
    sandbox: Sandbox,
    name: String,
    run: RunState,
    guest: Guest,
    started: Outcome,
    poisoned: Option<String>,
}

enum Guest {
    Core(Store<State<WasiP1Ctx>>, Option<wasmtime::Instance>),
    Component(Store<State<P2Ctx>>, Option<component::Instance>, Vec<String>),
}

/// How one call of an export ended: its [`Outcome`], and the values it
/// returned when it returned.
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, Sandbox, Status};
/// use wasmtime::component::Val;
///
/// let calc = r#"(component
///     (core module $m (func (export "add") (param i32 i32) (result i32)
///         (i32.add (local.get 0) (local.get 1))))
///     (core instance $i (instantiate $m))
///     (func (export "add") (param "a" u32) (param "b" u32) (result u32)
///         (canon lift (core func $i "add"))))"#;
/// let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
/// let program = sandbox.load_library_bytes("calc.wasm", calc.as_bytes())?;
/// let mut instance = sandbox.instantiate(&program)?;
/// let call = instance.call_component("add", &[Val::U32(40), Val::U32(2)])?;
/// assert_eq!(call.outcome.status, Status::Exited(0));
/// assert_eq!(call.results, Some(vec![Val::U32(42)]));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CallOutcome<V> {
    /// How the call ended: `Status::Exited(0)` when it returned, otherwise
    /// as a run would have ended (a trap, a limit, cancelled).
    pub outcome: Outcome,
    /// The results, when the call returned (`None` otherwise).
    pub results: Option<Vec<V>>,
}

/// One call made through [`Instance::invoke`], with its results as text:
/// what `wasmcell run --invoke` prints and reports.
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, Sandbox};
///
/// let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
/// let program = sandbox.load_library_bytes("half.wasm", br#"(module
///     (func (export "half") (param f64) (result f64) (f64.div (local.get 0) (f64.const 2))))"#)?;
/// let call = sandbox.instantiate(&program)?.invoke("half", &["5"])?;
/// assert_eq!(call.results, Some(vec!["2.5".to_string()]));
/// let report = call.to_json();
/// assert_eq!(report["invoked"], "half");
/// assert_eq!(report["status"], "exited");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The export called.
    pub function: String,
    /// How the call ended.
    pub outcome: Outcome,
    /// The results, one string each (numbers for a core module, WAVE for a
    /// component), when the call returned. A component's result is cut at
    /// the policy's `limits.output` bytes, marked `…[+N bytes]`.
    pub results: Option<Vec<String>>,
}

impl Invocation {
    /// The outcome's report ([`Outcome::to_json`]) with the function
    /// invoked (`invoked`) and its results (`results`, `null` when the call
    /// did not return).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.outcome.to_json();
        if let Some(map) = json.as_object_mut() {
            map.insert("invoked".into(), self.function.clone().into());
            map.insert("results".into(), serde_json::json!(self.results));
        }
        json
    }
}

/// A call refused before anything ran, as a [`RequestError`] of kind
/// [`RequestErrorKind::Invocation`].
fn refuse<T>(message: String) -> Result<T> {
    Err(refusal(message))
}

fn refusal(message: String) -> anyhow::Error {
    RequestError::new(RequestErrorKind::Invocation, message).into()
}

impl Sandbox {
    /// Instantiates `program` under this sandbox's policy, to call its
    /// exports with [`Instance::call`], [`Instance::call_component`] or
    /// [`Instance::invoke`]. Blocks until instantiation ends.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`]. A guest that traps or hits a limit while
    /// starting is not an error: see [`Instance::started`].
    pub fn instantiate(&self, program: &Program) -> Result<Instance> {
        self.instantiate_with(program, RunOptions::default())
    }

    /// Like [`Sandbox::instantiate`], with stdin from `options` and its
    /// cancel handle cancelling the instance: the call under way ends
    /// [`Cancelled`](crate::Status::Cancelled), and no later call runs.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::instantiate`].
    pub fn instantiate_with(&self, program: &Program, options: RunOptions) -> Result<Instance> {
        self.engine()
            .runtime()?
            .block_on(self.instantiate_async(program, options))
    }

    /// Like [`Sandbox::instantiate_with`], for hosts that run on tokio.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::instantiate`].
    pub async fn instantiate_async(&self, program: &Program, options: RunOptions) -> Result<Instance> {
        // A module loaded as a command was not checked for the `_initialize`
        // instantiation calls: check it before anything runs.
        if let ProgramKind::Module(pre) = &program.kind {
            check_initialize(pre.module()).map_err(|kind| LoadError {
                module: program.name().into(),
                kind,
            })?;
        }
        let (run, mut wasi) = self.begin(program, &[] as &[&str], options)?;
        let (guest, ended) = match &program.kind {
            ProgramKind::Module(pre) => {
                let mut store = self.p1_store(&mut wasi, &run)?;
                let mut instance = None;
                let ended = run
                    .race(async {
                        let new = pre.instantiate_async(&mut store).await?;
                        instance = Some(new);
                        if let Some(init) = new.get_func(&mut store, "_initialize") {
                            init.typed::<(), ()>(&store)?.call_async(&mut store, ()).await?;
                        }
                        Ok(0)
                    })
                    .await;
                (Guest::Core(store, instance), ended)
            }
            ProgramKind::Component(pre) => self.start_component(pre.instance_pre(), &mut wasi, &run).await?,
            ProgramKind::Library(pre) => self.start_component(pre, &mut wasi, &run).await?,
        };
        let mut guest = guest;
        let (started, poisoned) = settle(self, &mut guest, &run, "instantiation", ended)?;
        Ok(Instance {
            sandbox: self.clone(),
            name: program.name().to_string(),
            run,
            guest,
            started,
            poisoned,
        })
    }

    async fn start_component(
        &self,
        pre: &component::InstancePre<State<P2Ctx>>,
        wasi: &mut crate::capabilities::WasiSetup,
        run: &RunState,
    ) -> Result<(Guest, Ended)> {
        let mut store = self.p2_store(wasi, run)?;
        let engine = self.engine().wasmtime();
        let exports = pre
            .component()
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let mut instance = None;
        let ended = run
            .race(async {
                instance = Some(pre.instantiate_async(&mut store).await?);
                Ok(0)
            })
            .await;
        Ok((Guest::Component(store, instance, exports), ended))
    }
}

impl Instance {
    /// How instantiation ended (the start function and `_initialize`):
    /// `Status::Exited(0)` when the instance is ready for calls.
    pub fn started(&self) -> &Outcome {
        &self.started
    }

    /// Why no more calls can run, when an earlier call (or instantiation)
    /// did not return.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Whether the instance is of a component (its exports take
    /// `wasmtime::component::Val`s) rather than a core module.
    pub fn is_component(&self) -> bool {
        matches!(self.guest, Guest::Component(..))
    }

    /// Calls the core module's export `name` with `args`. Blocks until the
    /// call ends.
    ///
    /// Do not call this from inside a tokio runtime; use
    /// [`Instance::call_async`] there.
    ///
    /// # Errors
    ///
    /// A [`RequestError`] ([`RequestErrorKind::Invocation`]) when the call was refused before running (no such
    /// function, `args` of the wrong number or types, a component, a
    /// poisoned instance); other errors are the sandbox's own failures. How
    /// the call ended is never an error: see [`CallOutcome::outcome`].
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<CallOutcome<Val>> {
        let sandbox = self.sandbox.clone();
        sandbox.engine().runtime()?.block_on(self.call_async(name, args))
    }

    /// Like [`Instance::call`], for hosts that run on tokio.
    ///
    /// # Errors
    ///
    /// As [`Instance::call`].
    pub async fn call_async(&mut self, name: &str, args: &[Val]) -> Result<CallOutcome<Val>> {
        self.check_poisoned()?;
        let Guest::Core(store, Some(instance)) = &mut self.guest else {
            return refuse(format!(
                "`{}` is a component: call its exports with `Instance::call_component` or `Instance::invoke`",
                self.name
            ));
        };
        let Some(func) = instance.get_func(&mut *store, name) else {
            let exports: Vec<String> = instance.exports(&mut *store).map(|e| e.name().to_string()).collect();
            return refuse(no_export(&self.name, name, &exports));
        };
        let ty = func.ty(&*store);
        check_core_args(name, &ty, args, store)?;
        let mut results = vec![Val::I32(0); ty.results().len()];
        arm(&self.sandbox, &mut self.run, store)?;
        let ended = self
            .run
            .race(async { func.call_async(&mut *store, args, &mut results).await.map(|()| 0) })
            .await;
        self.finish_call(name, ended, results)
    }

    /// Calls the component's export `name` with `args`: a function exported
    /// at the top level, or by an exported interface (`add`, or
    /// `example:calc/ops#add` when more than one interface has an `add`).
    /// Blocks until the call ends.
    ///
    /// # Errors
    ///
    /// As [`Instance::call`]; the types of `args` are checked by wasmtime.
    pub fn call_component(&mut self, name: &str, args: &[component::Val]) -> Result<CallOutcome<component::Val>> {
        let sandbox = self.sandbox.clone();
        sandbox
            .engine()
            .runtime()?
            .block_on(self.call_component_async(name, args))
    }

    /// Like [`Instance::call_component`], for hosts that run on tokio.
    ///
    /// # Errors
    ///
    /// As [`Instance::call_component`].
    pub async fn call_component_async(
        &mut self,
        name: &str,
        args: &[component::Val],
    ) -> Result<CallOutcome<component::Val>> {
        let func = self.component_func(name)?;
        let Guest::Component(store, ..) = &mut self.guest else {
            unreachable!("component_func found a component's function")
        };
        let ty = func.ty(&*store);
        if ty.params().len() != args.len() {
            return refuse(format!(
                "`{}` takes {} arguments, not {}",
                sanitize(name),
                ty.params().len(),
                args.len()
            ));
        }
        let mut results = vec![component::Val::Bool(false); ty.results().len()];
        arm(&self.sandbox, &mut self.run, store)?;
        let ended = self
            .run
            .race(async { func.call_async(&mut *store, args, &mut results).await.map(|()| 0) })
            .await;
        self.finish_call(name, ended, results)
    }

    /// Calls an export given as text, as `wasmcell run --invoke` does. For
    /// a core module, `call` is the export's name and `args` its arguments,
    /// one number each (`i32`, `i64`, `f32`, `f64`). For a component, `call`
    /// is a function call in WAVE syntax, such as `add(1, 2)` or
    /// `greet("world")`, and `args` must be empty. Results come back as text
    /// the same way. Blocks until the call ends.
    ///
    /// # Errors
    ///
    /// As [`Instance::call`], and a [`RequestError`] ([`RequestErrorKind::Invocation`]) when the text does not
    /// parse or fit the function's type.
    pub fn invoke(&mut self, call: &str, args: &[impl AsRef<str>]) -> Result<Invocation> {
        let sandbox = self.sandbox.clone();
        sandbox.engine().runtime()?.block_on(self.invoke_async(call, args))
    }

    /// Like [`Instance::invoke`], for hosts that run on tokio.
    ///
    /// # Errors
    ///
    /// As [`Instance::invoke`].
    pub async fn invoke_async(&mut self, call: &str, args: &[impl AsRef<str>]) -> Result<Invocation> {
        if self.is_component() {
            return self.invoke_wave(call, args.len()).await;
        }
        self.check_poisoned()?;
        let Guest::Core(store, Some(instance)) = &mut self.guest else {
            unreachable!("a core instance that is not poisoned exists")
        };
        let Some(func) = instance.get_func(&mut *store, call) else {
            let exports: Vec<String> = instance.exports(&mut *store).map(|e| e.name().to_string()).collect();
            return refuse(no_export(&self.name, call, &exports));
        };
        let ty = func.ty(&*store);
        let values = parse_core_args(call, ty.params(), args)?;
        let called = self.call_async(call, &values).await?;
        Ok(Invocation {
            function: call.to_string(),
            outcome: called.outcome,
            results: called.results.map(|r| r.iter().map(core_text).collect()),
        })
    }

    async fn invoke_wave(&mut self, call: &str, extra: usize) -> Result<Invocation> {
        if extra > 0 {
            return refuse(format!(
                "a component's function is called with its arguments in WAVE syntax, as one value such as `add(1, 2)`; {extra} more arguments were given"
            ));
        }
        let parsed = wasm_wave::untyped::UntypedFuncCall::parse(call).map_err(|e| {
            refusal(format!(
                "`{}` is not a function call in WAVE syntax ({e}); write it as `name(arg, ...)`, such as `add(1, 2)`",
                sanitize(call)
            ))
        })?;
        let func = self.component_func(parsed.name())?;
        let Guest::Component(store, ..) = &self.guest else {
            unreachable!("component_func found a component's function")
        };
        let types: Vec<Type> = func.ty(store).params().map(|(_, ty)| ty).collect();
        let params: Vec<component::Val> = parsed.to_wasm_params(types.iter()).map_err(|e| {
            refusal(format!(
                "the arguments of `{}` do not fit its type: {e}",
                sanitize(parsed.name())
            ))
        })?;
        let called = self.call_component_async(parsed.name(), &params).await?;
        // A result is guest-made text the host prints and reports: no more
        // of it than the guest could have printed (`limits.output`).
        let budget = usize::try_from(self.sandbox.policy().limits().output.value).unwrap_or(usize::MAX);
        let results = match called.results {
            Some(values) => Some(
                values
                    .iter()
                    .map(|v| {
                        let text = wasm_wave::to_string(v).context("failed to write a result in WAVE")?;
                        Ok(truncate(&text, budget).into_owned())
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(Invocation {
            function: parsed.name().to_string(),
            outcome: called.outcome,
            results,
        })
    }

    /// The component function `name` names: a top-level export, an
    /// `interface#function`, or the one exported interface's function of
    /// that name.
    fn component_func(&mut self, name: &str) -> Result<component::Func> {
        self.check_poisoned()?;
        let Guest::Component(store, Some(instance), exports) = &mut self.guest else {
            return refuse(format!(
                "`{}` is a core module: call its exports with `Instance::call` or `Instance::invoke`",
                self.name
            ));
        };
        if let Some(func) = instance.get_func(&mut *store, name) {
            return Ok(func);
        }
        let in_interface = |store: &mut Store<State<P2Ctx>>, interface: &str, func: &str| {
            let parent = instance.get_export_index(&mut *store, None, interface)?;
            let index = instance.get_export_index(&mut *store, Some(&parent), func)?;
            instance.get_func(&mut *store, index)
        };
        if let Some((interface, func)) = name.rsplit_once('#') {
            if let Some(found) = in_interface(store, interface, func) {
                return Ok(found);
            }
        } else {
            let found: Vec<(String, component::Func)> = exports
                .iter()
                .filter_map(|e| in_interface(store, e, name).map(|f| (e.clone(), f)))
                .collect();
            match &found[..] {
                [(_, func)] => return Ok(*func),
                [] => {}
                [(first, _), (second, _), ..] => {
                    return refuse(format!(
                        "`{}` is exported by more than one interface (`{}`, `{}`); name one, such as `{}#{}`",
                        sanitize(name),
                        guest_name(first),
                        guest_name(second),
                        guest_name(first),
                        sanitize(name)
                    ));
                }
            }
        }
        refuse(no_export(&self.name, name, exports))
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => refuse(format!(
                "`{}` cannot be called again: {why}; instantiate the program again",
                self.name
            )),
            None => Ok(()),
        }
    }

    /// The outcome of what just ended, poisoning the instance unless it
    /// returned.
    /// A call's outcome, with its results when it returned.
    fn finish_call<V>(&mut self, name: &str, ended: Ended, results: Vec<V>) -> Result<CallOutcome<V>> {
        let returned = matches!(ended, Ended::Finished(Ok(_)));
        let outcome = self.settle(name, ended)?;
        Ok(CallOutcome {
            outcome,
            results: returned.then_some(results),
        })
    }

    fn settle(&mut self, what: &str, ended: Ended) -> Result<Outcome> {
        let (outcome, poisoned) = settle(&self.sandbox, &mut self.guest, &self.run, what, ended)?;
        if self.poisoned.is_none() {
            self.poisoned = poisoned;
        }
        Ok(outcome)
    }
}

/// The outcome of what just ended, and why the instance is poisoned when it
/// did not return.
fn settle(
    sandbox: &Sandbox,
    guest: &mut Guest,
    run: &RunState,
    what: &str,
    ended: Ended,
) -> Result<(Outcome, Option<String>)> {
    let returned = matches!(ended, Ended::Finished(Ok(_)));
    let outcome = match guest {
        Guest::Core(store, _) => sandbox.finish(store, ended, run)?,
        Guest::Component(store, ..) => sandbox.finish(store, ended, run)?,
    };
    let poisoned = (!returned).then(|| {
        let how = outcome
            .ending_line(sandbox.policy())
            .unwrap_or_else(|| format!("it exited with status {}", outcome.guest_exit_status().unwrap_or(0)));
        format!("{} did not return ({how})", quote_what(what))
    });
    Ok((outcome, poisoned))
}

fn quote_what(what: &str) -> String {
    if what == "instantiation" {
        "instantiation".into()
    } else {
        format!("an earlier call of `{}`", sanitize(what))
    }
}

/// Gives the guest a fresh `limits.fuel` and `limits.timeout` for one call,
/// and classifies it by its own ending: `limits.memory` stays charged for
/// what the instance holds.
fn arm<W>(sandbox: &Sandbox, run: &mut RunState, store: &mut Store<State<W>>) -> Result<()> {
    let limits = sandbox.policy().limits();
    run.start = Instant::now();
    run.deadline = run.start + limits.timeout.value;
    store.data_mut().deadline = run.deadline;
    store.data_mut().limiter.forget_refusal();
    if sandbox.engine().config().fuel {
        store
            .set_fuel(limits.fuel.value.unwrap_or(u64::MAX))
            .map_err(anyhow::Error::from)
            .context("failed to set fuel")?;
    }
    store.set_epoch_deadline(1);
    Ok(())
}

/// Longest export name a message shows whole.
const NAME_SHOWN: usize = 64;

/// An export name the guest chose, fit for a message: shortened (saying by
/// how much) and escaped.
fn guest_name(name: &str) -> String {
    sanitize(&truncate(name, NAME_SHOWN)).into_owned()
}

fn no_export(program: &str, name: &str, exports: &[String]) -> String {
    let listed: Vec<String> = exports.iter().take(8).map(|e| format!("`{}`", guest_name(e))).collect();
    let more = exports.len().saturating_sub(listed.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "`{program}` exports no function `{}`; it exports {}{more}",
        sanitize(name),
        if listed.is_empty() {
            "nothing".into()
        } else {
            listed.join(", ")
        }
    )
}

fn check_core_args(name: &str, ty: &wasmtime::FuncType, args: &[Val], store: &Store<State<WasiP1Ctx>>) -> Result<()> {
    if ty.params().len() != args.len() {
        return refuse(format!(
            "`{}` takes {} arguments, not {}",
            sanitize(name),
            ty.params().len(),
            args.len()
        ));
    }
    for (i, (param, arg)) in ty.params().zip(args).enumerate() {
        if !arg.matches_ty(store, &param).unwrap_or(false) {
            return refuse(format!("argument {} of `{}` must be {param}", i + 1, sanitize(name)));
        }
    }
    Ok(())
}

/// Numbers from text for a core function's parameters, as `wasmtime run
/// --invoke` takes them.
fn parse_core_args(
    name: &str,
    params: impl ExactSizeIterator<Item = ValType>,
    args: &[impl AsRef<str>],
) -> Result<Vec<Val>> {
    if params.len() != args.len() {
        return refuse(format!(
            "`{}` takes {} arguments, not {}",
            sanitize(name),
            params.len(),
            args.len()
        ));
    }
    params
        .zip(args)
        .enumerate()
        .map(|(i, (ty, arg))| {
            let arg = arg.as_ref();
            let bad = || {
                refusal(format!(
                    "argument {} of `{}` must be {ty}, not `{}`",
                    i + 1,
                    sanitize(name),
                    sanitize(arg)
                ))
            };
            Ok(match ty {
                ValType::I32 => Val::I32(
                    arg.parse::<i32>()
                        .or_else(|_| arg.parse::<u32>().map(|u| u as i32))
                        .map_err(|_| bad())?,
                ),
                ValType::I64 => Val::I64(
                    arg.parse::<i64>()
                        .or_else(|_| arg.parse::<u64>().map(|u| u as i64))
                        .map_err(|_| bad())?,
                ),
                ValType::F32 => Val::F32(arg.parse::<f32>().map_err(|_| bad())?.to_bits()),
                ValType::F64 => Val::F64(arg.parse::<f64>().map_err(|_| bad())?.to_bits()),
                ValType::V128 | ValType::Ref(_) => {
                    return refuse(format!(
                        "argument {} of `{}` is a {ty}, which cannot be given on the command line; only i32, i64, f32 and f64 can (call it through the library's `Instance::call`)",
                        i + 1,
                        sanitize(name)
                    ));
                }
            })
        })
        .collect()
}

/// A core result as text: numbers as Rust prints them, v128 in hex.
fn core_text(val: &Val) -> String {
    match val {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        Val::V128(v) => format!("{:#034x}", v.as_u128()),
        Val::FuncRef(None) | Val::ExternRef(None) | Val::AnyRef(None) | Val::ExnRef(None) | Val::ContRef(None) => {
            "null".into()
        }
        _ => "<reference>".into(),
    }
}
