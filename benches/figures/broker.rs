//! Figure 9: what the egress broker costs per request. One embedded run of `net_http_client`
//! makes 100 GETs to a loopback HTTP server, each carrying a token from the guest's
//! environment, under two policies, round robin: today's origin check (`[net] http`, the token
//! a plain variable) and the broker's full path (a `[[net.http]]` entry with methods, path
//! globs and deny-paths, the path normalised, the token a placeholder swapped for a secret
//! read from an owner-only file, and a header injected). The difference, divided by the
//! requests, is the broker's cost per request; each request also opens a connection.

use crate::stats::{Stats, us};
use crate::support::{ScratchDir, check_outcome};
use crate::{Settings, Target, WARM_UP};
use anyhow::{Context as _, Result, bail};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use wasmcell::{Policy, Sandbox, Status};

/// Requests per run.
const REQUESTS: usize = 100;

pub(crate) fn bench_broker(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.cli_runs();
    println!(
        "\n== 9. The egress broker: {REQUESTS} loopback GETs per embedded run, origin check vs rules + secret, {runs} timed runs each"
    );
    let port = start_server()?;
    let origin = format!("http://127.0.0.1:{port}");
    let dir = ScratchDir::new("bench-broker")?;
    std::fs::create_dir_all(&dir.path)?;
    let token = dir.path.join("api.token");
    std::fs::write(&token, "bench-token-0123456789\n")?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    }
    let origin_only =
        format!("[net]\nhttp = [\"{origin}\"]\n[env.vars]\nT = \"plain-token\"\n[limits]\ntimeout = \"60s\"\n");
    let broker = format!(
        "[net.secrets]\napi = {{ file = \"api.token\" }}\n\n[[net.http]]\norigin = \"{origin}\"\nmethods = [\"GET\", \"POST\"]\npaths = [\"/repos/acme/**\", \"/user\"]\ndeny-paths = [\"/repos/acme/*/hooks/**\"]\nsecrets = [\"api\"]\nheaders = {{ X-Api-Key = \"${{secret.api}}\" }}\n\n[env.vars]\nT = \"${{placeholder.api}}\"\n[limits]\ntimeout = \"60s\"\n"
    );
    let step = format!("GET|{origin}/repos/acme/widgets/issues|Authorization: token {{env:T}}");
    let args = vec![step; REQUESTS];
    let expected = "status 200\nok\n".repeat(REQUESTS);
    let rows = [("origin check", origin_only), ("rules + secret", broker)];
    let mut sandboxes = Vec::new();
    for (label, text) in &rows {
        let policy = Policy::from_toml(text, &dir.path).with_context(|| format!("policy `{label}`"))?;
        let sandbox = Sandbox::builder().policy(policy).build()?;
        let program = sandbox.load(wasmcell_artifacts::NET_HTTP_CLIENT_COMPONENT)?;
        sandboxes.push((label, sandbox, program));
    }
    let mut times = vec![Vec::new(); rows.len()];
    for round in 0..WARM_UP + runs {
        for ((label, sandbox, program), times) in sandboxes.iter().zip(&mut times) {
            let started = Instant::now();
            let outcome = sandbox.run_program(program, &args)?;
            let took = started.elapsed();
            check_outcome(label, &outcome, Status::Exited(0), expected.as_bytes())?;
            if outcome.uses["http"].allowed != REQUESTS as u64 {
                bail!("{label}: {:?}", outcome.uses);
            }
            if round >= WARM_UP {
                times.push(took);
            }
        }
    }
    let [plain, brokered] = [Stats::from(times[0].clone()), Stats::from(times[1].clone())];
    let per = |d: Duration| d / REQUESTS as u32;
    println!("{:<24} {:>16} {:>16}", "per request", "median (us)", "min (us)");
    for (label, stats) in [("origin check", &plain), ("rules + secret", &brokered)] {
        println!(
            "{label:<24} {:>16.1} {:>16.1}",
            us(per(stats.median)),
            us(per(stats.min))
        );
    }
    let added = per(brokered.median).as_secs_f64() - per(plain.median).as_secs_f64();
    let share = added / per(plain.median).as_secs_f64();
    // "Nothing measurable": within 5% of a loopback request, or 20 us, whichever is more.
    let allowed = (per(plain.median).as_secs_f64() * 0.05).max(20e-6);
    summary.push(Target::new(
        "9 broker per request, rules + secret vs origin",
        "at most 20 us or 5% added",
        format!(
            "{:+.1} us ({:+.1}%) on {:.1} us",
            added * 1e6,
            share * 100.0,
            us(per(plain.median))
        ),
        Some(added <= allowed),
    ));
    Ok(())
}

/// A loopback HTTP/1.1 server on its own thread for the rest of the process: one request per
/// connection, each answered `200 ok`.
fn start_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            let _ = (&stream).write_all(reply.as_bytes());
        }
    });
    Ok(port)
}
