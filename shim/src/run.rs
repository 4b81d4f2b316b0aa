//! Inside the container: choose the policy, fit it to the container, and run
//! the guest through the wasmcell library.
//!
//! This code runs as the container's init process, after the container's
//! root filesystem became `/`: the image's `/wasmcell.toml` and every path a
//! policy names are resolved inside the container, and no path can reach the
//! node's files.

use crate::compile;
use crate::node::{self, NodePolicy};
use anyhow::{Context as _, Result, bail};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::signal::unix::{SignalKind, signal};

use wasmcell::{
    CancelHandle, Origin, Outcome, Policy, PolicyBuilder, Program, RequestError, RequestErrorKind, RunOptions, Status,
};

/// Where an image keeps its own policy.
pub const IMAGE_POLICY: &str = "/wasmcell.toml";

/// What `limits.memory` is said to come from when the container's memory
/// limit is the stricter.
const CGROUP_ORIGIN: &str = "the container's memory limit, less the runtime's own use";

/// Memory the runtime keeps for itself, beside what the cgroup already
/// charges when the guest starts: compiled code, WASI buffers, the report.
const RUNTIME_HEADROOM: u64 = 32 << 20;

/// The precompile engine in words, for the message when a policy does not fit it.
const PRECOMPILED_ENGINE: &str = "fuel metering compiled in, a 1 MiB Wasm stack, no opt-in Wasm proposals";

/// Whether the module is a Wasm-typed OCI layer the shim's `Compiler`
/// already compiled.
fn precompiled_layer(ctx: &impl RuntimeContext) -> bool {
    matches!(ctx.entrypoint().source, Source::Oci([layer]) if layer.precompiled)
}

/// A container the shim refuses to run as configured: exit 2, as for a
/// policy error ([`wasmcell::exit_code_for_error`]).
fn refused(message: String) -> anyhow::Error {
    RequestError::new(RequestErrorKind::Container, message).into()
}

/// The shim's `Sandbox`: one per container, created inside it.
#[derive(Default)]
pub struct WasmcellSandbox;

impl Sandbox for WasmcellSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        // Errors are reported here, in the container's log, with the CLI's
        // exit codes: returned as `Err`, the library would log them where
        // the pod's owner cannot see them and exit 137.
        let code = match run(ctx).await {
            Ok(code) => code,
            Err(err) => {
                // The message can quote the module's own names: escaped, so
                // that it stays one line of the log and steers no terminal.
                let message = format!("{err:#}");
                let _ = writeln!(std::io::stderr(), "wasmcell: error: {}", wasmcell::sanitize(&message));
                i32::from(wasmcell::exit_code_for_error(&err))
            }
        };
        Ok(code)
    }
}

async fn run(ctx: &impl RuntimeContext) -> Result<i32> {
    // First, so that a stop request that comes while the guest loads is kept.
    let stop = StopSignals::listen()?;
    let chosen = || choose_policy(node::node_policy(), Path::new(IMAGE_POLICY));
    let mut policy = chosen()?.build()?;
    let budget = cgroup_memory_budget(Path::new("/sys/fs/cgroup"))
        .or_else(|| node::spec_memory_limit().map(|limit| limit.saturating_sub(RUNTIME_HEADROOM)));
    if let Some(budget) = budget
        && budget < policy.limits().memory.value
    {
        // The container's limit is one more layer over the policy, checked
        // like any other value.
        policy = chosen()?
            .with_origin(Origin::Host(CGROUP_ORIGIN), |b| b.memory(budget.max(1)))
            .build()
            .context("the container's memory limit is too small for any guest")?;
    }
    refuse_runtime_dirs(&policy)?;
    policy.inherit_env_from(ctx.envs().iter().filter_map(|entry| entry.split_once('=')));
    let sandbox = build_sandbox(policy, precompiled_layer(ctx))?;
    let program = load_program(&sandbox, ctx)?;
    put_up_wall(&sandbox)?;
    let args = ctx.args().get(1..).unwrap_or_default();
    let options = RunOptions::new().cancel(&stop.cancel);
    let outcome = sandbox.run_with_async(&program, args, options).await?;
    let code = exit_code(&outcome, stop.signal());
    write_report(&outcome, code);
    Ok(i32::from(code))
}

/// Confines the container's process with the second wall (`wall.mode` of
/// the policy), after everything the run needs is open and before the
/// guest's first instruction. The container's process is the only one that
/// runs the guest, so it confines itself whole; a run the wall kills ends
/// with `SIGSYS`, which containerd reports as exit code 159. What took
/// effect is in the report line; a layer missing under `auto` is named in
/// the log first.
fn put_up_wall(sandbox: &wasmcell::Sandbox) -> Result<()> {
    sandbox.create_output_files()?;
    let plan = wasmcell::wall::WallPlan::for_policy(sandbox.policy());
    let report = wasmcell::wall::confine_current_process(&plan)?;
    if let Some(line) = report.missing_line() {
        let _ = writeln!(std::io::stderr(), "wasmcell: warning: {line}");
    }
    Ok(())
}

/// The sandbox for the container: on the precompile engine when the module
/// is code the shim's `Compiler` made, else on the engine the policy needs.
fn build_sandbox(policy: Policy, precompiled: bool) -> Result<wasmcell::Sandbox> {
    let mut builder = wasmcell::Sandbox::builder();
    if precompiled {
        builder = builder.engine(compile::precompile_engine()?);
    }
    let sandbox = builder.policy(policy).capture_output(false).log_denials(true).build();
    if precompiled {
        return sandbox.map_err(|e| {
            refused(format!(
                "{e:#}: the image's module layer was precompiled for the shim's engine ({PRECOMPILED_ENGINE}), which this policy does not fit; keep `limits.stack` at its default and `wasm.proposals` empty, or import the image again without its precompiled content"
            ))
        });
    }
    sandbox
}

/// The node's policy when the annotation names one, else the image's own
/// `/wasmcell.toml`, else deny-all.
fn choose_policy(node: &NodePolicy, image_policy: &Path) -> Result<PolicyBuilder> {
    match node {
        NodePolicy::Invalid(why) => Err(refused(why.clone())),
        NodePolicy::Named { name, path, text } => Policy::builder().toml(text, "/").with_context(|| {
            format!(
                "node policy `{name}` (`{}`, named by annotation `{}`)",
                path.display(),
                node::POLICY_ANNOTATION
            )
        }),
        NodePolicy::None => match std::fs::symlink_metadata(image_policy) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::builder()),
            Err(e) => {
                Err(e).with_context(|| format!("failed to inspect the image's policy `{}`", image_policy.display()))
            }
            Ok(meta) if !meta.is_file() => Err(refused(format!(
                "the image's policy `{}` must be a regular file, not a link or a special file; copy the policy there",
                image_policy.display()
            ))),
            Ok(_) => Ok(Policy::builder().file(image_policy)?),
        },
    }
}

/// Refuses grants of the container's root or of the kernel's interfaces
/// mounted into it: the guest runs inside this very process, so `/proc` (its
/// `self/mem`), `/sys` or `/dev` would hand it the runtime's own state.
fn refuse_runtime_dirs(policy: &Policy) -> Result<()> {
    for dir in policy.dirs() {
        let host = &dir.host;
        let system = ["/proc", "/sys", "/dev"].iter().any(|p| host.starts_with(p));
        if host == Path::new("/") || system {
            return Err(refused(format!(
                "policy key `fs.dirs` grants `{}` as `{}`; inside a container the shim refuses `/`, `/proc`, `/sys` and `/dev`: grant a directory of the image or a mounted volume instead",
                host.display(),
                dir.guest.escape_debug()
            )));
        }
    }
    Ok(())
}

fn load_program(sandbox: &wasmcell::Sandbox, ctx: &impl RuntimeContext) -> Result<Program> {
    let entrypoint = ctx.entrypoint();
    if entrypoint.func != "_start" {
        bail!(
            "entrypoint `{}` names export `{}`; wasmcell runs commands only, so drop the `#{}` suffix",
            entrypoint.arg0.unwrap_or(Path::new("")).display(),
            entrypoint.func.escape_debug(),
            entrypoint.func.escape_debug()
        );
    }
    Ok(match entrypoint.source {
        Source::File(path) => sandbox.load(&path)?,
        Source::Oci([layer]) if layer.precompiled => {
            let name = entrypoint.name.unwrap_or_else(|| "module.wasm".to_string());
            // SAFETY: precompiled layers come only from this shim's own
            // `Compiler` (`compile.rs`), which containerd stored in its
            // content store, writable by root alone and addressed by the
            // digest of the code. No guest's grant reaches it (the rule the
            // CLI's compile cache keeps with `CacheInGrant`): the store lies
            // outside every container's filesystem, and a pod that mounts
            // containerd's state from the node has the node anyway. The
            // bytes are in memory before the guest starts. wasmtime refuses
            // code for another engine or version before mapping it.
            unsafe { sandbox.load_precompiled_bytes(&name, &layer.layer)? }
        }
        Source::Oci([layer]) => {
            let name = entrypoint.name.unwrap_or_else(|| "module.wasm".to_string());
            sandbox.load_bytes(&name, &layer.layer)?
        }
        Source::Oci(layers) => bail!(
            "the image has {} Wasm layers; wasmcell runs exactly one module or component",
            layers.len()
        ),
    })
}

/// What the container's memory cgroup leaves for the guest: its limit, less
/// what is charged already and [`RUNTIME_HEADROOM`]. `None` when there is
/// no limit or it cannot be read (the kernel still enforces it).
fn cgroup_memory_budget(root: &Path) -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).ok();
    let (limit, usage) = match read("memory.max") {
        // cgroup v2 (unified): `max` means no limit.
        Some(limit) => (limit, read("memory.current")?),
        None => (
            read("memory/memory.limit_in_bytes")?,
            read("memory/memory.usage_in_bytes")?,
        ),
    };
    let limit: u64 = limit.trim().parse().ok()?;
    let usage: u64 = usage.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a page-rounded i64::MAX.
    if limit >= wasmcell::Limits::MAX_MEMORY * 2 {
        return None;
    }
    Some(limit.saturating_sub(usage).saturating_sub(RUNTIME_HEADROOM))
}

/// SIGTERM and SIGINT cancel the run. The container's init process is PID 1
/// of its namespace, so a signal it has no handler for would be ignored.
struct StopSignals {
    cancel: CancelHandle,
    signal: Arc<AtomicI32>,
}

impl StopSignals {
    fn listen() -> Result<StopSignals> {
        let cancel = CancelHandle::new();
        let signal_no = Arc::new(AtomicI32::new(0));
        let mut term = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
        let (canceller, seen) = (cancel.clone(), signal_no.clone());
        tokio::spawn(async move {
            let number = tokio::select! {
                _ = term.recv() => SignalKind::terminate().as_raw_value(),
                _ = int.recv() => SignalKind::interrupt().as_raw_value(),
            };
            seen.store(number, Ordering::SeqCst);
            canceller.cancel();
        });
        Ok(StopSignals {
            cancel,
            signal: signal_no,
        })
    }

    fn signal(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::SeqCst)).filter(|&n| n != 0)
    }
}

/// The CLI's exit code, except that a run cancelled by a signal ends as a
/// process killed by it would (128 + the signal: 143 for SIGTERM), which is
/// what containerd and Kubernetes expect of a stopped container.
fn exit_code(outcome: &Outcome, signal: Option<i32>) -> u8 {
    match (outcome.status, signal) {
        (Status::Cancelled, Some(n)) => u8::try_from(128 + n).unwrap_or(wasmcell::EXIT_CANCELLED),
        _ => outcome.exit_code(),
    }
}

/// One JSON line at the end of the container's log: `wasmcell run --report`'s
/// fields, with the exit code the container really ended with.
fn write_report(outcome: &Outcome, code: u8) {
    let mut report = outcome.to_json();
    report["exit_code"] = code.into();
    let line = serde_json::to_string(&report).unwrap_or_default();
    // A closed log ends the report, not the run's exit code.
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_and_v2_budgets() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("memory")).unwrap();
        std::fs::write(tmp.path().join("memory/memory.limit_in_bytes"), "67108864\n").unwrap();
        std::fs::write(tmp.path().join("memory/memory.usage_in_bytes"), "8388608\n").unwrap();
        assert_eq!(
            cgroup_memory_budget(tmp.path()),
            Some((64 << 20) - (8 << 20) - RUNTIME_HEADROOM)
        );
        std::fs::write(tmp.path().join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_memory_budget(tmp.path()), None);

        std::fs::write(tmp.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(tmp.path().join("memory.current"), "1\n").unwrap();
        assert_eq!(cgroup_memory_budget(tmp.path()), None);
        std::fs::write(tmp.path().join("memory.max"), "1048576\n").unwrap();
        assert_eq!(cgroup_memory_budget(tmp.path()), Some(0));
    }

    #[test]
    fn no_policy_anywhere_is_deny_all() {
        let tmp = tempfile::tempdir().unwrap();
        let policy = choose_policy(&NodePolicy::None, &tmp.path().join("wasmcell.toml"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(policy, Policy::deny_all());
    }

    #[test]
    fn node_policy_wins_over_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("wasmcell.toml");
        std::fs::write(&image, "[limits]\nfuel = 1\n").unwrap();
        let node = NodePolicy::Named {
            name: "n".into(),
            path: "/etc/wasmcell/policies/n.toml".into(),
            text: "[limits]\nfuel = 2\n".into(),
        };
        assert_eq!(
            choose_policy(&node, &image)
                .unwrap()
                .build()
                .unwrap()
                .limits()
                .fuel
                .value,
            Some(2)
        );
        assert_eq!(
            choose_policy(&NodePolicy::None, &image)
                .unwrap()
                .build()
                .unwrap()
                .limits()
                .fuel
                .value,
            Some(1)
        );
        let invalid = NodePolicy::Invalid("bad annotation".into());
        assert!(choose_policy(&invalid, &image).is_err());
    }

    #[test]
    fn an_image_policy_that_is_a_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("real.toml"), "").unwrap();
        let image = tmp.path().join("wasmcell.toml");
        std::os::unix::fs::symlink("real.toml", &image).unwrap();
        let err = choose_policy(&NodePolicy::None, &image).unwrap_err();
        assert!(format!("{err:#}").contains("must be a regular file"), "{err:#}");
    }

    #[test]
    fn grants_of_runtime_state_are_refused() {
        for dir in ["/", "/proc", "/sys", "/dev"] {
            let policy = Policy::builder()
                .grant_dir(dir, "/x", wasmcell::Access::ReadOnly)
                .build()
                .unwrap();
            let err = refuse_runtime_dirs(&policy).unwrap_err();
            assert!(err.to_string().contains("fs.dirs"), "{err}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let policy = Policy::builder()
            .grant_dir(tmp.path(), "/data", wasmcell::Access::ReadOnly)
            .build()
            .unwrap();
        refuse_runtime_dirs(&policy).unwrap();
    }

    #[test]
    fn precompiled_code_needs_a_policy_that_fits_its_engine() {
        assert!(build_sandbox(Policy::builder().fuel(10).build().unwrap(), true).is_ok());
        let deep = Policy::builder()
            .toml("[limits]\nstack = \"4 MiB\"", "/")
            .unwrap()
            .build()
            .unwrap();
        assert!(
            build_sandbox(deep.clone(), false).is_ok(),
            "compiled in the container, any engine fits"
        );
        let err = build_sandbox(deep, true)
            .err()
            .expect("the precompile engine has a 1 MiB stack");
        assert_eq!(
            wasmcell::exit_code_for_error(&err),
            wasmcell::EXIT_USAGE,
            "refused, exit 2: {err:#}"
        );
        let message = format!("{err:#}");
        assert!(
            message.contains("limits.stack") && message.contains("precompiled"),
            "{message}"
        );
    }

    #[test]
    fn a_stop_signal_exits_as_containerd_expects() {
        let mut outcome = Outcome::watched(Status::Cancelled, None);
        assert_eq!(exit_code(&outcome, Some(15)), 143);
        assert_eq!(exit_code(&outcome, Some(2)), 130);
        assert_eq!(exit_code(&outcome, None), wasmcell::EXIT_CANCELLED);
        outcome.status = Status::Exited(7);
        assert_eq!(exit_code(&outcome, Some(15)), 7);
    }
}
