//! Figure 8: what the second wall costs. Each row runs the same `wasmcell run` with the wall
//! (`auto`: every layer on this kernel, and the watcher process that reports a run the wall
//! kills) and with `--wall off`, round robin in one run: `hello` (start-up, where the wall's
//! set-up and the extra process show), `fs_ops` on 1,000 files in a read-write grant (Landlock
//! checks every open, seccomp every call) and a TCP connection to a loopback echo server.
//! Then the matrix over quick guests and the bundled policies with a confined worker process
//! per cell (the CLI's default) against `--in-process`: the ratio is what isolation costs.

use crate::cli::{CliCommand, time_round_robin};
use crate::fs::Workload;
use crate::stats::{ms, ratio};
use crate::support::ScratchDir;
use crate::{Settings, Target, WARM_UP, WASMCELL};
use anyhow::Result;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;

pub(crate) fn bench_wall(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.cli_runs();
    println!(
        "\n== 8. The second wall: each row with the wall (auto) and with --wall off, {runs} timed runs per command"
    );
    let cache = ScratchDir::new("bench-wall-cache")?;
    let grant = ScratchDir::new("bench-wall-grant")?;
    std::fs::create_dir_all(&grant.path)?;
    let port = start_echo_server()?;
    let rows = rows(&grant.path, port);
    let mut commands = Vec::new();
    for (label, args, expect) in &rows {
        for wall in ["auto", "off"] {
            let mut all = vec!["run", "--wall", wall];
            all.extend(args.iter().map(String::as_str));
            let mut command = CliCommand::new(&format!("{label} (wall {wall})"), Path::new(WASMCELL), &all);
            command.env = Some(("WASMCELL_CACHE_DIR", cache.path.clone()));
            command.expect = expect.clone();
            commands.push(command);
        }
    }
    for command in &commands {
        for _ in 0..WARM_UP {
            command.run_checked()?;
        }
    }
    let stats = time_round_robin(&commands, runs)?;
    println!();
    for (i, (label, _, _)) in rows.iter().enumerate() {
        let (on, off) = (stats[2 * i].median, stats[2 * i + 1].median);
        let added = on.saturating_sub(off);
        let allowed = off.mul_f64(0.15).max(std::time::Duration::from_millis(1));
        let (target, met) = match *label {
            "hello" => ("at most 1 ms or 15% added".to_string(), Some(added <= allowed)),
            _ => ("nothing measurable (for the note)".to_string(), None),
        };
        summary.push(Target::new(
            format!("8 wall {label}, wall vs off"),
            target,
            format!(
                "{:.2} vs {:.2} ms (+{:.2} ms, {:.2}x)",
                ms(on),
                ms(off),
                ms(added),
                ratio(on, off)
            ),
            met,
        ));
    }
    bench_matrix_isolation(settings, &cache.path, summary)
}

/// The quick guests the matrix row runs, each under every bundled policy.
const MATRIX_GUESTS: [(&str, &str); 9] = [
    ("hello", wasmcell_artifacts::HELLO),
    ("exit_code", wasmcell_artifacts::EXIT_CODE),
    ("env_args", wasmcell_artifacts::ENV_ARGS),
    ("env_vars", wasmcell_artifacts::ENV_VARS),
    ("clocks_now", wasmcell_artifacts::CLOCKS_NOW),
    ("random_bytes", wasmcell_artifacts::RANDOM_BYTES),
    ("stdio_echo", wasmcell_artifacts::STDIO_ECHO),
    ("fs_read", wasmcell_artifacts::FS_READ),
    ("fs_escape_dotdot", wasmcell_artifacts::FS_ESCAPE_DOTDOT),
];

/// `wasmcell matrix` with a worker process per cell against `--in-process`.
fn bench_matrix_isolation(settings: &Settings, cache: &Path, summary: &mut Vec<Target>) -> Result<()> {
    let runs = (settings.cli_runs() / 6).max(3);
    let modules = ScratchDir::new("bench-wall-matrix")?;
    std::fs::create_dir_all(&modules.path)?;
    for (name, path) in MATRIX_GUESTS {
        std::fs::copy(path, modules.path.join(format!("{name}.wasm")))?;
    }
    let policies = Path::new(crate::WORKSPACE).join("policies");
    let base = [
        "matrix",
        "--modules",
        modules.path.to_str().unwrap_or_default(),
        "--policies",
    ];
    let mut commands = Vec::new();
    for (label, extra) in [
        ("matrix, a worker per cell", None),
        ("matrix, --in-process", Some("--in-process")),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.push(policies.to_str().unwrap_or_default());
        args.extend(extra);
        let mut command = CliCommand::new(label, Path::new(WASMCELL), &args);
        command.env = Some(("WASMCELL_CACHE_DIR", cache.to_path_buf()));
        command.expect = b"module".to_vec();
        commands.push(command);
    }
    let cells = MATRIX_GUESTS.len()
        * std::fs::read_dir(&policies)?
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.path().extension().is_some_and(|x| x == "toml") && e.file_name() != "expectations.toml"
                })
            })
            .count();
    println!(
        "\n{cells} cells ({} guests x the bundled policies), {runs} timed runs each",
        MATRIX_GUESTS.len()
    );
    commands[0].run_checked()?;
    let stats = time_round_robin(&commands, runs)?;
    let (workers, in_process) = (stats[0].median, stats[1].median);
    summary.push(Target::new(
        "8 wall matrix, worker per cell vs in-process",
        "report the ratio",
        format!(
            "{:.0} vs {:.0} ms for {cells} cells ({:.2}x, +{:.2} ms a cell)",
            ms(workers),
            ms(in_process),
            ratio(workers, in_process),
            ms(workers.saturating_sub(in_process)) / cells as f64
        ),
        None,
    ));
    Ok(())
}

/// Each row: a label, the arguments after `--wall MODE`, and what stdout starts with.
fn rows(grant: &Path, port: u16) -> Vec<(&'static str, Vec<String>, Vec<u8>)> {
    let workload = Workload::new();
    let mut fs_args = vec![
        "--dir".to_string(),
        format!("{}::/w", grant.display()),
        wasmcell_artifacts::FS_OPS.to_string(),
    ];
    fs_args.extend(workload.args);
    let connect = format!("127.0.0.1:{port}");
    vec![
        (
            "hello",
            vec![wasmcell_artifacts::HELLO.to_string()],
            crate::HELLO_OUTPUT.to_vec(),
        ),
        ("fs_ops 1000 files", fs_args, workload.expected),
        (
            "tcp connect (component)",
            vec![
                "--allow-connect".to_string(),
                connect.clone(),
                wasmcell_artifacts::NET_TCP_CONNECT_COMPONENT.to_string(),
                connect,
            ],
            b"connected, reply pong".to_vec(),
        ),
    ]
}

/// A loopback server that answers every connection's first read with `pong`, on a thread of
/// its own for the rest of the benchmark.
fn start_echo_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"pong");
        }
    });
    Ok(port)
}
