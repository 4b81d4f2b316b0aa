//! Example of embedding wasmcell: load a policy, compile a guest once, run it
//! a few times concurrently, and print each outcome.
//!
//! Run with
//! `cargo run --example embed -- policies/read-only.toml target/wasm32-wasip1/release/fs_read.wasm /data/hello.txt`
//! (build the guests first with `cargo build --release -p wasmcell-modules --target wasm32-wasip1`).

use anyhow::{Context as _, Result};
use wasmcell::{Policy, Sandbox};

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let usage = "usage: embed POLICY MODULE [ARGS]...";
    let policy = argv.next().context(usage)?;
    let module = argv.next().context(usage)?;
    let guest_args: Vec<String> = argv.collect();

    let sandbox = Sandbox::builder().policy(Policy::from_file(&policy)?).build()?;
    let program = sandbox.load(&module)?;

    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| sandbox.run_program(&program, &guest_args)))
            .collect();
        for (i, run) in runs.into_iter().enumerate() {
            let outcome = run.join().expect("run thread panicked")?;
            println!(
                "run {i}: {} (exit {}), {:.2} ms, {} bytes peak memory, stdout {:?}",
                outcome.status.name(),
                outcome.exit_code(),
                outcome.elapsed.as_secs_f64() * 1000.0,
                outcome.peak_memory_bytes,
                String::from_utf8_lossy(&outcome.stdout),
            );
        }
        Ok(())
    })
}
