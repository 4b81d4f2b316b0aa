//! Figure 7: host memory a `wasi:http` guest can make wasmcell hold beyond its own
//! `limits.memory`, each kind of buffer driven to its bound, as the growth of `wasmcell run`'s
//! peak RSS over the same guest's baseline.

use crate::{Target, WASMCELL};
use anyhow::{Context as _, Result, bail};
use std::net::TcpListener;
use std::process::{Command, Stdio};

/// The documented allowance (README, "Security model").
const ALLOWANCE_MIB: f64 = 64.0;

pub(crate) fn bench_host_memory(summary: &mut Vec<Target>) -> Result<()> {
    println!(
        "\n== 7. Host memory a wasi:http guest drives (limits_host_hoard, --memory 64MiB, 1,024 handles), \
         peak RSS of `wasmcell run` over the baseline"
    );
    let port = stalling_server()?;
    let url = format!("http://127.0.0.1:{port}/upload");
    // The first run compiles the guest (into the compile cache); the baseline is a warm run.
    peak_rss_kib(port, &["baseline", &url])?;
    let baseline = peak_rss_kib(port, &["baseline", &url])?;
    println!("baseline (one request built, nothing filled): {:.1} MiB", mib(baseline));
    let mut worst = (0.0, "");
    for (what, args) in [
        ("330 unsent bodies, filled", &["bodies", &url, "330"][..]),
        (
            "1,000 bodies filled, finished with trailers",
            &["finished", &url, "1000"],
        ),
        ("1,000 header maps, 1,000-byte values", &["headers", "1000", "1000"]),
        ("1,000 header maps, 1-byte values", &["headers", "1000", "1"]),
        ("300 requests to a server that never reads", &["in-flight", &url, "300"]),
        ("1,000 requests, 60,000-byte parts", &["parts", "1000", "60000"]),
    ] {
        let added = mib(peak_rss_kib(port, args)?.saturating_sub(baseline));
        println!("{what:<44} +{added:.1} MiB");
        if added > worst.0 {
            worst = (added, what);
        }
    }
    summary.push(Target::new(
        "7 host memory a guest drives (worst)",
        format!("<= {ALLOWANCE_MIB} MiB over baseline"),
        format!("+{:.1} MiB ({})", worst.0, worst.1),
        Some(worst.0 <= ALLOWANCE_MIB),
    ));
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A loopback server that accepts every connection and holds it open without reading.
fn stalling_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind a loopback listener")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.extend(stream.ok());
        }
    });
    Ok(port)
}

/// Runs the hoarding guest with `args` under `wasmcell run` and returns the run's peak RSS in KiB.
fn peak_rss_kib(port: u16, args: &[&str]) -> Result<u64> {
    let origin = format!("http://127.0.0.1:{port}");
    let child = Command::new(WASMCELL)
        .args(["run", "--memory", "64MiB", "--timeout", "60s", "--allow-http", &origin])
        .arg(wasmcell_artifacts::LIMITS_HOST_HOARD_COMPONENT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("failed to start wasmcell")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills in; the child is ours and not yet
    // waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("waiting for wasmcell failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "`wasmcell run limits_host_hoard {}` ended with status {status}",
            args.join(" ")
        );
    }
    Ok(usage.ru_maxrss as u64)
}
