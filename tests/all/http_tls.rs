//! Outgoing `wasi:http` over TLS that the host terminates, trusting the
//! public CAs plus `net.ca-certificates`, and the per-request bounds
//! (`limits.http-request-body`, `limits.http-response-body`,
//! `limits.http-timeout`). Each test starts its own loopback server
//! (`https_server`), with a CA made in the test.

use crate::https_server::{Answer, Received, TestCa, serve};
use crate::{BIN, REPO, assert_status, stdout, wait_for};
use std::path::Path;
use std::process::{Command, Stdio};
use wasmcell::{Outcome, Policy, Status};
use wasmcell_artifacts::{NET_HTTP_GET_COMPONENT, NET_HTTP_POST_COMPONENT};

/// A policy file `p.toml` in `dir` with `[net]` lines `net` and `[limits]`
/// lines `limits`; the run's own timeout is long enough for every request.
fn policy(dir: &Path, net: &str, limits: &str) -> Policy {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!("[net]\n{net}\n\n[limits]\ntimeout = \"30s\"\n{limits}\n"),
    )
    .unwrap();
    Policy::from_file(&path).unwrap_or_else(|e| panic!("test policy is invalid: {e}"))
}

fn run(policy: Policy, guest: &str, args: &[&str]) -> Outcome {
    crate::run(policy, guest, args)
}

/// The one request a server received.
#[track_caller]
fn one(received: Vec<Received>) -> Received {
    let [request] = &received[..] else {
        panic!("expected one request, got {received:?}");
    };
    request.clone()
}

/// The guest failed with `code` (in its `refused:` line), and the run went
/// on to the guest's own exit.
#[track_caller]
fn assert_failed_with(outcome: &Outcome, code: &str) {
    assert_status(outcome, Status::Exited(1));
    let out = stdout(outcome);
    assert!(
        out.starts_with("refused: ") && out.contains(code),
        "expected {code}: {out}"
    );
}

/// The one denial, an `http` one of `target` whose rule starts with `rule`.
#[track_caller]
fn assert_limit_recorded(outcome: &Outcome, target: &str, rule: &str) {
    let [denial] = &outcome.denials[..] else {
        panic!("expected one denial, got {:?}", outcome.denials);
    };
    assert_eq!(
        (denial.kind.as_str(), denial.target.as_str()),
        ("http", target),
        "{denial:?}"
    );
    assert!(denial.rule.starts_with(rule), "{denial:?}");
}

/// A GET over https to a loopback server whose certificate a CA named in
/// `net.ca-certificates` issued is answered, and the host named the server
/// in TLS (its certificate is for `localhost` only, so the name was checked).
#[test]
fn https_trusts_net_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    ca.write(dir.path(), "ca.pem");
    let (port, server) = serve(Some(ca.server(&["localhost"])), Answer::Body(b"hello".to_vec()));
    let net = format!("http = [\"https://localhost:{port}\"]\nca-certificates = [\"ca.pem\"]");
    let outcome = run(
        policy(dir.path(), &net, ""),
        NET_HTTP_GET_COMPONENT,
        &[&format!("https://localhost:{port}/greeting")],
    );
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), "status 200\nhello");
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    let request = one(server.join());
    assert_eq!(request.head[0], "GET /greeting HTTP/1.1");
}

/// Without the CA, or with it but a certificate for another name, the
/// handshake fails (`TLS-certificate-error`) and nothing reaches the server.
#[test]
fn https_refuses_an_untrusted_or_misnamed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    ca.write(dir.path(), "ca.pem");
    for (names, trusted) in [(&["127.0.0.1", "localhost"][..], false), (&["other.example"][..], true)] {
        let (port, server) = serve(Some(ca.server(names)), Answer::Body(b"hello".to_vec()));
        let mut net = format!("http = [\"https://127.0.0.1:{port}\"]");
        if trusted {
            net.push_str("\nca-certificates = [\"ca.pem\"]");
        }
        let outcome = run(
            policy(dir.path(), &net, ""),
            NET_HTTP_GET_COMPONENT,
            &[&format!("https://127.0.0.1:{port}/")],
        );
        assert_failed_with(&outcome, "TlsCertificateError");
        let received = server.join_connection().expect("the client connected");
        assert!(received.is_empty(), "nothing reaches the server: {received:?}");
    }
}

/// A bad `net.ca-certificates` entry stops the policy with the file's line,
/// the key, the CA file and what is wrong with it; a link to a good file is
/// followed (as `/etc/ssl/certs` is made of links), and `check` names it.
#[test]
fn ca_certificates_errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    let good = ca.write(dir.path(), "ca.pem");
    std::fs::write(dir.path().join("text.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("cut.pem"), &ca.pem()[..100]).unwrap();
    std::fs::write(dir.path().join("key.pem"), KEY_ONLY_PEM).unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for (file, expected) in [
        ("absent.pem", "does not exist; create it or fix the path"),
        ("text.pem", "holds no certificate"),
        ("cut.pem", "is not PEM text"),
        ("key.pem", "holds no certificate"),
        ("certs", "cannot be read: it is a directory, not a regular file"),
    ] {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, format!("[net]\n\nca-certificates = [\"ca.pem\", \"{file}\"]\n")).unwrap();
        let e = Policy::from_file(&path).unwrap_err();
        assert_eq!((e.key_name(), e.line()), (Some("net.ca-certificates"), Some(3)), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("CA file `{}`", dir.path().join(file).display())),
            "{text}"
        );
        assert!(text.contains(expected), "{file}: {text}");
    }
    std::os::unix::fs::symlink(&good, dir.path().join("link.pem")).unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[net]\nca-certificates = [\"link.pem\"]\n").unwrap();
    let policy = Policy::from_file(&path).unwrap();
    assert_eq!(policy.net().ca_certificates.len(), 1);
    let described = wasmcell::policy::summarize(&policy);
    assert!(
        described.contains(&format!(
            "https also trusts 1 CA from {}",
            dir.path().join("link.pem").display()
        )),
        "{described}"
    );
    let out = wait_for(
        Command::new(BIN)
            .current_dir(REPO)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["run", "--ca-certificate"])
            .arg(dir.path().join("text.pem"))
            .arg("nothing.wasm")
            .spawn()
            .unwrap(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ca-certificate: CA file `"), "{stderr}");
    assert!(stderr.contains("holds no certificate"), "{stderr}");
}

/// A PEM file holding a private key and no certificate.
const KEY_ONLY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

/// `limits.http-request-body` bounds what one request sends: a chunked body
/// over it is cut off before the server has it all, a declared one is
/// refused before connecting; either fails `HTTP-request-body-size` and
/// leaves a denial naming the key and its value. Under it, all arrives.
#[test]
fn http_request_body_over_its_limit_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "limits.http-request-body allows 4 KiB per request";
    // POSTs `size` bytes (`declared` or chunked) to a new server under a
    // 4 KiB limit: the outcome, the target it is recorded as, the server.
    let post = |size: &str, declared: &[&str]| {
        let (port, server) = serve(None, Answer::Body(b"ok".to_vec()));
        let url = format!("http://127.0.0.1:{port}/upload");
        let net = format!("http = [\"http://127.0.0.1:{port}\"]");
        let policy = policy(dir.path(), &net, "http-request-body = \"4 KiB\"");
        let args = [&[url.as_str(), size][..], declared].concat();
        let outcome = run(policy, NET_HTTP_POST_COMPONENT, &args);
        (outcome, format!("http://127.0.0.1:{port}"), server)
    };
    let (outcome, _, server) = post("4096", &[]);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), "status 200\nok");
    assert_eq!(one(server.join()).body, Some(vec![b'x'; 4096]));

    let (outcome, target, server) = post("65536", &[]);
    assert_failed_with(&outcome, "HttpRequestBodySize");
    assert_limit_recorded(&outcome, &target, rule);
    let received = server.join();
    assert!(
        received.iter().all(|r| r.body.is_none()),
        "the body never arrives whole"
    );

    let (outcome, target, server) = post("65536", &["declared"]);
    assert_failed_with(&outcome, "HttpRequestBodySize");
    assert_limit_recorded(&outcome, &target, rule);
    assert!(
        server.join_connection().is_none(),
        "a declared body over it never connects"
    );
}

/// `limits.http-response-body` bounds what one response brings in, over
/// https too: a declared length over it fails at once, a chunked body when
/// it passes it, each `HTTP-response-body-size` with a denial naming the
/// key; a body at the limit is read whole.
#[test]
fn http_response_body_over_its_limit_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    ca.write(dir.path(), "ca.pem");
    let limit = "http-response-body = \"4 KiB\"";
    // Found out at the head, the request fails with the code; in the body,
    // a read fails with the error (wasi:http gives a body's error no code).
    for (answer, failure) in [
        (Answer::Body(vec![b'y'; 4096]), None),
        (Answer::Chunked(vec![b'y'; 4096]), None),
        (Answer::Body(vec![b'y'; 4097]), Some("HttpResponseBodySize(Some(4096))")),
        (
            Answer::Chunked(vec![b'y'; 65536]),
            Some("HTTP response body size exceeds limit: 4096 bytes"),
        ),
    ] {
        let (port, server) = serve(Some(ca.server(&["127.0.0.1"])), answer);
        let net = format!("http = [\"https://127.0.0.1:{port}\"]\nca-certificates = [\"ca.pem\"]");
        let url = format!("https://127.0.0.1:{port}/download");
        let outcome = run(policy(dir.path(), &net, limit), NET_HTTP_GET_COMPONENT, &[&url]);
        if let Some(code) = failure {
            assert_failed_with(&outcome, code);
            assert_limit_recorded(
                &outcome,
                &format!("https://127.0.0.1:{port}"),
                "limits.http-response-body allows 4 KiB per response",
            );
        } else {
            assert_status(&outcome, Status::Exited(0));
            assert_eq!(stdout(&outcome), format!("status 200\n{}", "y".repeat(4096)));
            assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
        }
        one(server.join());
    }
}

/// `limits.http-timeout` ends a request whose server stops, before its
/// answer or inside its body: `HTTP-response-timeout` (a body's read fails
/// with the error), or in the TLS handshake: `connection-timeout`; each
/// with a denial naming the key and its value, and the guest goes on to its
/// own exit, well inside the run's `limits.timeout`.
#[test]
fn http_timeout_ends_a_stalled_request() {
    let dir = tempfile::tempdir().unwrap();
    for (answer, failure) in [
        (Answer::Stall, "HttpResponseTimeout"),
        (Answer::StallInBody(b"partial".to_vec()), "HTTP response timeout"),
    ] {
        let (port, server) = serve(None, answer);
        let net = format!("http = [\"http://127.0.0.1:{port}\"]");
        let outcome = run(
            policy(dir.path(), &net, "http-timeout = \"200ms\""),
            NET_HTTP_GET_COMPONENT,
            &[&format!("http://127.0.0.1:{port}/slow")],
        );
        assert_failed_with(&outcome, failure);
        assert_limit_recorded(
            &outcome,
            &format!("http://127.0.0.1:{port}"),
            "limits.http-timeout allows 200ms per request",
        );
        assert_eq!(one(server.join()).head[0], "GET /slow HTTP/1.1");
    }
    // A server that never answers the TLS handshake: still connecting.
    let (port, server) = serve(None, Answer::Silent);
    let net = format!("http = [\"https://127.0.0.1:{port}\"]");
    let outcome = run(
        policy(dir.path(), &net, "http-timeout = \"200ms\""),
        NET_HTTP_GET_COMPONENT,
        &[&format!("https://127.0.0.1:{port}/slow")],
    );
    assert_failed_with(&outcome, "ConnectionTimeout");
    assert_limit_recorded(
        &outcome,
        &format!("https://127.0.0.1:{port}"),
        "limits.http-timeout allows 200ms per request",
    );
    assert!(server.join_connection().is_some(), "the client connected");
}

/// The command line: `--ca-certificate` trusts a CA, and an https request
/// goes through inside the second wall the run puts up around itself (to an
/// IP address: a host name is not resolved inside the wall without `net.dns`).
#[test]
fn https_from_the_command_line_inside_the_wall() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    let pem = ca.write(dir.path(), "ca.pem");
    let (port, server) = serve(Some(ca.server(&["127.0.0.1"])), Answer::Body(b"hello".to_vec()));
    let out = wait_for(
        crate::wasmcell_command()
            .arg("run")
            .arg("--ca-certificate")
            .arg(&pem)
            .args(["--allow-http", &format!("https://127.0.0.1:{port}")])
            .args([NET_HTTP_GET_COMPONENT, &format!("https://127.0.0.1:{port}/cli")])
            .spawn()
            .unwrap(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "status 200\nhello");
    assert_eq!(one(server.join()).head[0], "GET /cli HTTP/1.1");
}

/// A CA file a read-write grant reaches, directly or as a link's target, is
/// refused: a guest could have written its own CA there in an earlier run.
/// Under a read-only grant it is trusted.
#[test]
fn ca_certificates_inside_a_read_write_grant_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    TestCa::new("planted").write(&work, "ca.pem");
    std::os::unix::fs::symlink(work.join("ca.pem"), dir.path().join("link.pem")).unwrap();
    let path = dir.path().join("p.toml");
    for (file, access, refused) in [
        ("work/ca.pem", "read-write", true),
        ("link.pem", "read-write", true),
        ("work/ca.pem", "read-only", false),
    ] {
        let text = format!(
            "[net]\nca-certificates = [\"{file}\"]\n\n[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"{access}\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let Err(e) = Policy::from_file(&path) else {
            assert!(!refused, "{file} under a {access} grant is refused");
            continue;
        };
        assert!(refused, "{file} under a {access} grant: {e}");
        assert_eq!(e.key_name(), Some("net.ca-certificates"), "{e}");
        let text = e.to_string();
        assert!(text.contains("is inside the read-write grant"), "{text}");
        assert!(text.contains("(guest path `/work`)"), "{text}");
    }
}
