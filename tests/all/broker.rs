//! The egress broker: `[[net.http]]` rules by method and path, and secrets the
//! guest never holds (`[net.secrets]`, injected headers, placeholders).
//!
//! Each test takes the server it talks to as a parameter ([`StartServer`]):
//! a loopback server that records every request it receives, whole. Each
//! runs over plain HTTP ([`plain_http`]) and over HTTPS ([`https`]: a server
//! with a certificate from a CA made in the test, which `ca-certificates`
//! trusts), where the host terminates TLS for the guest.

use crate::{assert_status, policy_toml, run, stdout, wait_for, wasmcell_command};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmcell::{Outcome, Policy, Sandbox, Status};
use wasmcell_artifacts::NET_HTTP_CLIENT_COMPONENT;

/// A loopback server a test sends requests to.
pub struct TestServer {
    /// `scheme://127.0.0.1:PORT`, as a policy's `origin` and the guest's URLs name it.
    pub origin: String,
    /// Lines to add to the policy's `[net]` table for this server (a CA to trust).
    pub net_extra: String,
    /// Every request received, whole: the head's lines, a blank line, the body.
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Files the server's `net_extra` names (a CA), kept while it serves.
    files: Option<tempfile::TempDir>,
}

/// How a test starts its server.
pub type StartServer = fn() -> TestServer;

impl TestServer {
    /// Serves on `listener` (non-blocking), handing each connection to
    /// `serve`, which reads one request from it and answers it.
    pub fn spawn<S: Read + Write>(
        origin: String,
        net_extra: String,
        listener: TcpListener,
        wrap: impl Fn(std::net::TcpStream) -> Option<S> + Send + 'static,
    ) -> TestServer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, done) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        if let Some(mut stream) = wrap(stream)
                            && let Some(request) = read_request(&mut stream)
                        {
                            log.lock().unwrap().push(request);
                            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                            let _ = stream.write_all(reply.as_bytes());
                            let _ = stream.flush();
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("accept failed: {e}"),
                }
            }
        });
        TestServer {
            origin,
            net_extra,
            received,
            stop,
            thread: Some(thread),
            files: None,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request: its head (lines as sent), a blank line, its body.
fn read_request(stream: &mut impl Read) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.trim_end().is_empty() {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let length = head
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(format!("{}\n\n{}", head.join("\n"), String::from_utf8_lossy(&body)))
}

/// A plain HTTP server on loopback.
pub fn plain_http() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    TestServer::spawn(origin, String::new(), listener, Some)
}

/// An HTTPS server on loopback with a certificate for `127.0.0.1` from a CA
/// made for it, which its `net_extra` trusts (`ca-certificates`): the host
/// terminates TLS for the guest, so the broker sees and rewrites the request
/// before it is encrypted.
pub fn https() -> TestServer {
    let ca = crate::https_server::TestCa::new("wasmcell broker test CA");
    let files = tempfile::tempdir().unwrap();
    let ca_file = ca.write(files.path(), "ca.pem");
    let config = ca.server(&["127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let origin = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let net_extra = format!("ca-certificates = [\"{}\"]\n", ca_file.display());
    let mut server = TestServer::spawn(origin, net_extra, listener, move |tcp| {
        let connection = rustls::ServerConnection::new(config.clone()).ok()?;
        Some(rustls::StreamOwned::new(connection, tcp))
    });
    server.files = Some(files);
    server
}

/// The secret every test holds: unreserved characters, so it reads the same
/// percent-encoded.
const REAL: &str = "ghp_REALsecret0123456789";

/// A folder holding `gh.token` (mode 600, the value and a newline) and a
/// `data` folder to grant the guest.
fn secret_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("gh.token");
    std::fs::write(&token, format!("{REAL}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/notes.txt"), "nothing here").unwrap();
    dir
}

fn policy(server: &TestServer, body: &str, base: &Path) -> Policy {
    policy_toml(
        &format!("[net]\n{}\n{body}\n[limits]\ntimeout = \"30s\"\n", server.net_extra),
        base,
    )
}

fn client(policy: Policy, steps: &[String]) -> Outcome {
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let outcome = run(policy, NET_HTTP_CLIENT_COMPONENT, &steps);
    assert_status(&outcome, Status::Exited(0));
    outcome
}

/// The guest's answer to each request step, in order: `200` or the refusal.
fn answers(outcome: &Outcome) -> Vec<String> {
    stdout(outcome)
        .lines()
        .filter_map(|l| l.strip_prefix("status ").or_else(|| l.strip_prefix("refused: ")))
        .map(|l| l.trim_start_matches("ErrorCode::").to_string())
        .collect()
}

fn request_lines(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.lines().next().unwrap_or_default().to_string())
        .collect()
}

fn rules_decide_by_method_and_path(start: StartServer) {
    let server = start();
    let o = &server.origin;
    let rules = format!(
        "[[net.http]]\norigin = \"{o}\"\nmethods = [\"GET\"]\npaths = [\"/repos/acme/**\", \"/user\"]\ndeny-paths = [\"/repos/acme/secrets/**\"]\n"
    );
    let steps: Vec<String> = [
        "GET|/repos/acme/x",
        "GET|/repos/%61cme/y",
        "GET|/user?page=2",
        "POST|/repos/acme/x",
        "DELETE|/user",
        "GET|/admin",
        "GET|/user/keys",
        "GET|/repos/acme/secrets/k",
        "GET|/repos/acme/../../admin",
        "GET|/repos/acme/%2e%2e/%2E%2E/admin",
        "GET|/repos/acme%2f..%2f..%2fadmin",
        "GET|//repos/acme/x",
        "GET|/repos/acme;x=1/y",
        "GET|/repos/acme/x/%2e%2e/secrets/k",
    ]
    .iter()
    .map(|s| {
        let (method, path) = s.split_once('|').unwrap();
        format!("{method}|{o}{path}")
    })
    .collect();
    let outcome = client(policy(&server, &rules, Path::new(".")), &steps);
    let answers = answers(&outcome);
    assert_eq!(answers[..3], ["200", "200", "200"], "{answers:?}");
    assert!(answers[3..].iter().all(|a| a == "HttpRequestDenied"), "{answers:?}");
    // The server saw the three allowed requests, spelled as decided.
    assert_eq!(
        request_lines(&server),
        [
            "GET /repos/acme/x HTTP/1.1",
            "GET /repos/acme/y HTTP/1.1",
            "GET /user?page=2 HTTP/1.1"
        ]
    );
    let key = o.clone();
    let denied: Vec<(&str, &str)> = outcome
        .denials
        .iter()
        .map(|d| (d.kind.as_str(), d.target.as_str()))
        .collect();
    assert_eq!(denied.len(), steps.len() - 3, "{denied:?}");
    assert!(denied.iter().all(|(kind, _)| *kind == "http"), "{denied:?}");
    assert_eq!(denied[0].1, format!("POST {key}/repos/acme/x"));
    assert!(outcome.denials[0].rule.contains("method"), "{:?}", outcome.denials[0]);
    assert_eq!(denied[4].1, format!("GET {key}/repos/acme/secrets/k"));
    assert!(
        outcome.denials[4].rule.contains("deny-paths `/repos/acme/secrets/**`"),
        "{:?}",
        outcome.denials[4]
    );
    assert!(
        outcome.denials[5].rule.contains("`..` segment"),
        "{:?}",
        outcome.denials[5]
    );
    assert!(
        outcome.denials[7].rule.contains("encoded `/`"),
        "{:?}",
        outcome.denials[7]
    );
    // The report counts the origin's requests.
    let counts = &outcome.http[&key];
    assert_eq!(
        (counts.requests, counts.denied),
        (3, steps.len() as u64 - 3),
        "{:?}",
        outcome.http
    );
    assert_eq!(counts.response_body_bytes, 6, "three bodies of `ok`");
}

/// `[[net.http]]` admits by method and path; every spelling that could route
/// around a rule (`..`, `%2e%2e`, `%2f`, `//`, `;`) is refused, deny-paths win,
/// the server sees exactly the path decided, and the report counts the origin.
#[test]
fn http_rules_decide_by_method_and_path_over_http() {
    rules_decide_by_method_and_path(plain_http);
}

#[test]
fn http_rules_decide_by_method_and_path_over_https() {
    rules_decide_by_method_and_path(https);
}

fn injected_header_replaces_the_guests(start: StartServer) {
    let server = start();
    let dir = secret_dir();
    let o = &server.origin;
    let rules = format!(
        "[net.secrets]\ngh = {{ file = \"gh.token\" }}\n\n[[net.http]]\norigin = \"{o}\"\nheaders = {{ Authorization = \"Bearer ${{secret.gh}}\" }}\n"
    );
    // TRACE would have the server echo the injected value to the guest.
    let steps = [
        format!("GET|{o}/user|Authorization: Bearer guest-made|authorization: second"),
        format!("TRACE|{o}/user"),
    ];
    let outcome = client(policy(&server, &rules, dir.path()), &steps);
    assert_eq!(answers(&outcome), ["200", "HttpRequestDenied"]);
    let received = server.requests();
    assert_eq!(received.len(), 1, "the TRACE was not sent: {received:?}");
    let auth: Vec<&str> = received[0]
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .collect();
    assert_eq!(auth, [format!("authorization: Bearer {REAL}")], "{received:?}");
    assert!(!stdout(&outcome).contains(REAL));
}

/// An entry's `headers` set the secret on the request, replacing every
/// header of that name the guest set.
#[test]
fn injected_header_replaces_the_guests_over_http() {
    injected_header_replaces_the_guests(plain_http);
}

#[test]
fn injected_header_replaces_the_guests_over_https() {
    injected_header_replaces_the_guests(https);
}

/// The policy for the placeholder tests: `gh` from `source`, bound to
/// `bound`'s origin (headers and query), `other` allowed without it, the
/// guest's `GITHUB_TOKEN` its placeholder and `data` granted.
fn placeholder_policy(bound: &TestServer, other: &TestServer, source: &str) -> String {
    format!(
        "[net]\n{}\n[net.secrets]\ngh = {source}\n\n[[net.http]]\norigin = \"{}\"\nsecrets = [\"gh\"]\nplaceholder-in = [\"headers\", \"query\"]\n\n[[net.http]]\norigin = \"{}\"\n\n[env.vars]\nGITHUB_TOKEN = \"${{placeholder.gh}}\"\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n\n[limits]\ntimeout = \"30s\"\n",
        bound.net_extra, bound.origin, other.origin
    )
}

/// The steps of an exfiltration attempt: a proper use, then the placeholder
/// sent where it is not bound, then a search of the guest's world.
fn exfiltration_steps(bound: &TestServer, other: &TestServer, unbound_port: u16) -> Vec<String> {
    vec![
        format!(
            "GET|{}/user?t={{env:GITHUB_TOKEN}}|Authorization: token {{env:GITHUB_TOKEN}}",
            bound.origin
        ),
        format!("POST|{}/collect|X-Token: {{env:GITHUB_TOKEN}}|=stolen", other.origin),
        format!("GET|http://127.0.0.1:{unbound_port}/?t={{env:GITHUB_TOKEN}}"),
        format!("GET|{}/p/{{env:GITHUB_TOKEN}}", bound.origin),
        "env".to_string(),
        "dump:/data".to_string(),
    ]
}

fn placeholder_is_swapped_only_where_bound(start: StartServer) {
    let (bound, other) = (start(), start());
    let dir = secret_dir();
    let text = placeholder_policy(&bound, &other, "{ file = \"gh.token\" }");
    let unbound = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unbound.local_addr().unwrap().port();
    unbound.set_nonblocking(true).unwrap();
    let outcome = client(
        policy_toml(&text, dir.path()),
        &exfiltration_steps(&bound, &other, port),
    );
    let out = stdout(&outcome);
    assert_eq!(
        answers(&outcome)[..4],
        ["200", "HttpRequestDenied", "HttpRequestDenied", "HttpRequestDenied"],
        "{out}"
    );
    // The bound server got the value in the header and the query.
    let received = bound.requests();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0].starts_with(&format!("GET /user?t={REAL} HTTP/1.1")),
        "{received:?}"
    );
    assert!(
        received[0].contains(&format!("authorization: token {REAL}")),
        "{received:?}"
    );
    assert!(!received[0].contains("wasmcell-secret-"), "{received:?}");
    // Nothing reached the other server or the unbound port.
    assert_eq!(other.requests(), Vec::<String>::new());
    assert!(unbound.accept().is_err(), "the unbound port was reached");
    let leaks: Vec<&str> = outcome
        .denials
        .iter()
        .filter(|d| d.kind == "secret-leak")
        .map(|d| d.rule.as_str())
        .collect();
    assert_eq!(leaks.len(), 3, "{:?}", outcome.denials);
    assert!(leaks[0].contains("secret `gh` in its header `x-token`"), "{leaks:?}");
    assert!(leaks[1].contains("in its query"), "{leaks:?}");
    assert!(leaks[2].contains("in its path"), "{leaks:?}");
    // The guest saw a placeholder, never the value.
    assert!(out.contains("env GITHUB_TOKEN=wasmcell-secret-"), "{out}");
    assert!(out.contains("file /data/notes.txt: nothing here"), "{out}");
    assert!(!out.contains(REAL), "{out}");
    let records = serde_json::to_string(&outcome.to_json()).unwrap();
    assert!(
        !records.contains(REAL) && !records.contains("wasmcell-secret-"),
        "{records}"
    );
}

/// A placeholder is swapped for the value only in requests to the entries
/// its secret is bound to; carried anywhere else (another allowed origin, an
/// unlisted one, a path) the request is refused as `secret-leak`, and the
/// guest finds the value nowhere in its environment or files.
#[test]
fn placeholder_is_swapped_only_where_bound_over_http() {
    placeholder_is_swapped_only_where_bound(plain_http);
}

#[test]
fn placeholder_is_swapped_only_where_bound_over_https() {
    placeholder_is_swapped_only_where_bound(https);
}

fn secret_appears_in_no_output(start: StartServer) {
    let (bound, other) = (start(), start());
    let dir = secret_dir();
    let text = placeholder_policy(&bound, &other, "{ env = \"WASMCELL_TEST_GH\" }");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    let (audit, report) = (dir.path().join("audit.jsonl"), dir.path().join("report.json"));
    let steps = exfiltration_steps(&bound, &other, 1);
    let mut cmd = wasmcell_command();
    cmd.env("WASMCELL_TEST_GH", REAL).args([
        "run",
        "--verbose",
        "--policy",
        policy.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        NET_HTTP_CLIENT_COMPONENT,
    ]);
    let out = wait_for(cmd.args(&steps).spawn().unwrap());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(bound.requests()[0].contains(&format!("authorization: token {REAL}")));
    let check = wait_for(
        wasmcell_command()
            .env("WASMCELL_TEST_GH", REAL)
            .args(["check", policy.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let check = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.contains("may carry secret gh"), "{check}");
    assert!(
        check.contains("secret gh: read from the host environment variable `WASMCELL_TEST_GH`"),
        "{check}"
    );
    let (audit, report) = (
        std::fs::read_to_string(&audit).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    );
    for (name, text) in [
        ("stdout", &stdout.into_owned()),
        ("stderr", &stderr.into_owned()),
        ("audit", &audit),
        ("report", &report),
        ("check", &check),
    ] {
        assert!(!text.contains(REAL), "the secret in the {name}: {text}");
    }
    // The audit has each request: method, origin and path.
    let http: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "http" || l["kind"] == "secret-leak")
        .map(|l| format!("{} {} {}", l["kind"], l["decision"], l["target"]))
        .collect();
    let b = &bound.origin;
    assert_eq!(http[0], format!("\"http\" \"allowed\" \"GET {b}/user\""), "{http:?}");
    assert!(http[1].starts_with("\"secret-leak\" \"denied\" \"POST "), "{http:?}");
    assert_eq!(
        http[3],
        format!("\"secret-leak\" \"denied\" \"GET {b}/p/${{placeholder.gh}}\""),
        "{http:?}"
    );
    // And the status of each response.
    let responses: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "http-response")
        .map(|l| format!("{} {}", l["target"], l["rule"]))
        .collect();
    assert_eq!(responses, [format!("\"GET {b}/user\" \"status 200\"")], "{audit}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["http"][b]["requests"], 1, "{report}");
    assert_eq!(report["http"][b]["response_body_bytes"], 2, "{report}");
}

/// The secret's value appears in nothing wasmcell writes: the guest's output,
/// `--verbose` lines, the audit, the report, `wasmcell check`.
#[test]
fn secret_appears_in_no_output_over_http() {
    secret_appears_in_no_output(plain_http);
}

#[test]
fn secret_appears_in_no_output_over_https() {
    secret_appears_in_no_output(https);
}

/// Runs `policy` (TOML, relative to `dir`) and gives the error that stopped
/// the run before the guest started.
fn run_error(text: &str, dir: &Path) -> String {
    let policy = match Policy::from_toml(text, dir) {
        Ok(policy) => policy,
        Err(err) => return err.to_string(),
    };
    let sandbox = Sandbox::builder().policy(policy).build().unwrap();
    match sandbox.run(NET_HTTP_CLIENT_COMPONENT, &["env"]) {
        Ok(outcome) => panic!("the run started: {}", stdout(&outcome)),
        Err(err) => format!("{err:#}"),
    }
}

/// A secret the host cannot vouch for stops the run (or the policy) with an
/// error naming the secret and what to do, never its value: a link, a file
/// others may read, a file inside a grant, a variable that is not set.
#[test]
fn secret_sources_are_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = secret_dir();
    let path = |name: &str| dir.path().join(name);
    std::os::unix::fs::symlink(path("gh.token"), path("link.token")).unwrap();
    std::fs::write(path("group.token"), REAL).unwrap();
    std::fs::set_permissions(path("group.token"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(path("data/in-grant.token"), REAL).unwrap();
    std::fs::set_permissions(path("data/in-grant.token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A second name for a secret file, inside the granted folder: the guest
    // could read the secret there.
    std::fs::write(path("linked.token"), REAL).unwrap();
    std::fs::set_permissions(path("linked.token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(path("linked.token"), path("data/also.token")).unwrap();
    let with = |source: &str| {
        format!(
            "[net.secrets]\ngh = {source}\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n"
        )
    };
    for (source, says) in [
        ("{ file = \"link.token\" }", "symbolic link"),
        ("{ file = \"group.token\" }", "others than its owner (mode 640)"),
        ("{ file = \"data/in-grant.token\" }", "inside the grant"),
        ("{ file = \"linked.token\" }", "has 2 names (hard links)"),
        ("{ env = \"WASMCELL_TEST_NOT_SET_ANYWHERE\" }", "is not set"),
        ("{ file = \"missing.token\" }", "cannot be opened"),
    ] {
        let err = run_error(&with(source), dir.path());
        assert!(err.contains("secret `gh`") && err.contains(says), "{source}: {err}");
        assert!(!err.contains(REAL), "{err}");
    }
    // The file as it should be: the run starts.
    let policy = policy_toml(&with("{ file = \"gh.token\" }"), dir.path());
    assert_status(&run(policy, NET_HTTP_CLIENT_COMPONENT, &["env"]), Status::Exited(0));
}

/// A guest can name as many origins as `net.http` admits; the report counts
/// the first `MAX_HTTP_ORIGINS` apart and every further one together under
/// `OTHER_ORIGINS`, so its size stays bounded whatever the guest asks.
#[test]
fn requests_past_the_origin_cap_are_counted_together() {
    let policy = Policy::from_toml("[net]\nhttp = [\"http://127.0.0.1:*\"]\n", Path::new(".")).unwrap();
    // Ports above Linux's ephemeral range, where nothing listens: each
    // request is admitted, counted, then refused by the loopback.
    let extra = 4;
    let steps: Vec<String> = (0..wasmcell::MAX_HTTP_ORIGINS + extra)
        .map(|i| format!("GET|http://127.0.0.1:{}/", 61_000 + i))
        .collect();
    let args: Vec<&str> = steps.iter().map(String::as_str).collect();
    let outcome = run(policy, NET_HTTP_CLIENT_COMPONENT, &args);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(
        outcome.http.len(),
        wasmcell::MAX_HTTP_ORIGINS + 1,
        "{:?}",
        outcome.http.keys()
    );
    let other = outcome.http[wasmcell::OTHER_ORIGINS];
    assert_eq!(other.requests, extra as u64, "{:?}", outcome.http);
    let counted: u64 = outcome.http.values().map(|c| c.requests).sum();
    assert_eq!(counted, steps.len() as u64);
}
