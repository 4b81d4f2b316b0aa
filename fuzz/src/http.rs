//! Outgoing HTTP requests: generated schemes and authorities (userinfo, host
//! spellings, ports) sent by the `net_http_get` guest under generated
//! `[net] http` entries, and checked against a reference of the rules the
//! README states. The reference works on the pieces the case was built from,
//! never by parsing the authority, so it does not share the decision's code:
//!
//! - a scheme other than `http` or `https` (in any case) is refused with
//!   `HttpProtocolError`; a request without a scheme is `https`;
//! - a request without an authority is refused with `HttpRequestUriInvalid`;
//! - userinfo, a malformed host or a port outside 1..=65535 (or not decimal)
//!   is refused with `HttpRequestDenied`, and so is an origin no entry lists;
//! - each refusal is one `http` denial naming the target the README gives,
//!   userinfo shown as `***`, and no password appears in the report;
//! - an allowed request is one `http` use, and one sent to the case's local
//!   server reaches it with `Host:` rebuilt from the decided host and port;
//! - nothing else reaches the server.

use super::{HANG_MARGIN, engine_for, examine, serial};
use arbitrary::{Result as AResult, Unstructured};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmcell::{EngineConfig, Policy, Sandbox, Status};

/// How a case ended, for the smoke's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HttpCase {
    /// The bytes ran out before a case was built.
    #[default]
    Skipped,
    /// `set-authority` refused the authority (it ends with `@`): nothing to decide.
    NotSet,
    /// Refused by wasmcell with this code.
    Refused(&'static str),
    /// Allowed, and answered by the case's local server.
    Served,
    /// Allowed, sent somewhere nothing answers.
    Allowed,
}

/// The password a generated userinfo carries; it must never reach the report.
const PASSWORD: &str = "hunter2";

/// Scheme spellings (as the guest's URL writes them) and the scheme the rules
/// make of each, `None` for one they refuse.
const SCHEMES: &[(&str, Option<&str>)] = &[
    ("http:", Some("http")),
    ("HTTP:", Some("http")),
    ("https:", Some("https")),
    ("hTTps:", Some("https")),
    ("", Some("https")),
    ("ftp:", None),
    ("ws:", None),
];

/// Host spellings and the host the rules decide, `None` for a malformed one.
const HOSTS: &[(&str, Option<&str>)] = &[
    ("127.0.0.1", Some("127.0.0.1")),
    ("localhost", Some("localhost")),
    ("LocalHost", Some("localhost")),
    ("[::1]", Some("[::1]")),
    ("[0:0::1]", Some("[::1]")),
    ("Example.Invalid", Some("example.invalid")),
    ("", None),
    ("a!b", None),
    ("[::1%25lo]", None),
];

/// Entry hosts, as written in `[net] http`, and the host they name.
const ENTRY_HOSTS: &[(&str, &str)] = &[
    ("127.0.0.1", "127.0.0.1"),
    ("LOCALHOST", "localhost"),
    ("[::1]", "[::1]"),
    ("[0::1]", "[::1]"),
];

/// The local server every case may reach: its port, a port nothing listens
/// on, and the heads of the requests it answered.
struct Server {
    port: u16,
    closed: u16,
    heads: Mutex<Receiver<String>>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP check's server");
        let port = listener.local_addr().unwrap().port();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (send, heads) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = send.send(answer(stream));
            }
        });
        Server {
            port,
            closed,
            heads: Mutex::new(heads),
        }
    })
}

/// Reads a request's head (up to a blank line, 1 s or 16 KiB: a TLS hello
/// has none) and answers `200 hello`.
fn answer(mut stream: TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while head.len() < 16 << 10 && !head.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
        head.push(byte[0]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    String::from_utf8_lossy(&head).into_owned()
}

/// One generated request and the policy it runs under.
struct Case {
    url: String,
    toml: String,
    expect: Expect,
    /// Whether the authority carries [`PASSWORD`].
    secret: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    NotSet,
    Refused {
        target: String,
        code: &'static str,
    },
    Allowed {
        target: String,
        authority: String,
        served: bool,
    },
}

/// Sends one generated request with the `net_http_get` component at `guest`
/// and checks what wasmcell decided, recorded and sent against the reference.
///
/// # Panics
///
/// When a property in the module docs fails.
pub fn check_http(data: &[u8], guest: &Path) -> HttpCase {
    let mut u = Unstructured::new(data);
    let server = server();
    let Ok(case) = generate(&mut u, server) else {
        return HttpCase::Skipped;
    };
    let _serial = serial();
    let policy = Policy::from_toml(&case.toml, ".").unwrap_or_else(|e| panic!("the HTTP check's policy: {e}"));
    let sandbox = Sandbox::builder()
        .engine(engine_for(EngineConfig::for_policy(&policy)))
        .policy(policy.clone())
        .build()
        .expect("the HTTP engine fits its policy");
    let started = Instant::now();
    let outcome = sandbox
        .run(guest, &[case.url.as_str()])
        .unwrap_or_else(|e| panic!("the run failed instead of ending with a status: {e:#}"));
    assert!(started.elapsed() <= Duration::from_secs(10) + HANG_MARGIN);
    examine(&outcome, &policy);
    let stdout = String::from_utf8_lossy(&outcome.stdout).into_owned();
    let shown = format!(
        "{} under\n{}expected {:?}\nstdout: {stdout}",
        case.url, case.toml, case.expect
    );
    let records: Vec<(&str, &str)> = outcome
        .denials
        .iter()
        .map(|d| (d.kind.as_str(), d.target.as_str()))
        .collect();
    let uses = outcome.uses.get("http").map(|c| (c.allowed, c.denied));
    if case.secret {
        assert!(!outcome.to_json().to_string().contains(PASSWORD), "{shown}");
    }
    let heads = server.heads.lock().unwrap_or_else(|e| e.into_inner());
    let ended = match &case.expect {
        Expect::NotSet => {
            assert_eq!((stdout.as_str(), uses), ("refused: bad authority\n", None), "{shown}");
            HttpCase::NotSet
        }
        Expect::Refused { target, code } => {
            assert_eq!(outcome.status, Status::Exited(1), "{shown}");
            assert!(stdout.contains(code), "{shown}");
            assert_eq!(
                (records, uses),
                (vec![("http", target.as_str())], Some((0, 1))),
                "{shown}"
            );
            HttpCase::Refused(code)
        }
        Expect::Allowed {
            target,
            authority,
            served,
        } => {
            assert_eq!((records, uses), (vec![], Some((1, 0))), "{shown} (target {target})");
            if *served {
                let head = heads
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("the request never reached the server ({e}): {shown}"));
                if case.url.starts_with("http:") || case.url.starts_with("HTTP:") {
                    assert_eq!(outcome.status, Status::Exited(0), "{shown}");
                    let host = head.lines().find(|l| l.to_ascii_lowercase().starts_with("host:"));
                    assert_eq!(host, Some(format!("host: {authority}").as_str()), "{shown}\n{head}");
                }
                HttpCase::Served
            } else {
                HttpCase::Allowed
            }
        }
    };
    match heads.recv_timeout(Duration::ZERO) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("the server saw a request it should not have: {other:?}\n{shown}"),
    }
    ended
}

/// Draws the request's pieces and the entries, and works out with the
/// reference what must happen.
fn generate(u: &mut Unstructured, server: &Server) -> AResult<Case> {
    let (port, closed) = (server.port, server.closed);
    let mut entries = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let scheme = *u.choose(&["http", "https"])?;
        let (host, named) = *u.choose(ENTRY_HOSTS)?;
        let (ports, written) = match u.int_in_range(0..=3)? {
            0 => ((port, port), format!(":{port}")),
            1 => ((closed, closed), format!(":{closed}")),
            2 => ((1, u16::MAX), ":*".to_string()),
            _ => (default_port(scheme).map(|p| (p, p)).unwrap(), String::new()),
        };
        entries.push((scheme, named, ports, format!("\"{scheme}://{host}{written}\"")));
    }
    // Half the cases aim at the server through an entry that admits it (the
    // pieces below may still spoil the request), so allowed requests are
    // common; the rest draw every piece freely.
    let aim = u.arbitrary()?;
    if aim {
        let host = *u.choose(&["127.0.0.1", "LOCALHOST"])?;
        let written = u.choose(&[port.to_string(), "*".to_string()])?.clone();
        let named = if host == "127.0.0.1" { host } else { "localhost" };
        let ports = if written == "*" { (1, u16::MAX) } else { (port, port) };
        entries.push(("http", named, ports, format!("\"http://{host}:{written}\"")));
    }
    let (scheme_written, scheme) = *u.choose(if aim { &SCHEMES[..2] } else { SCHEMES })?;
    let userinfo = if u.ratio(1, 4)? {
        Some(*u.choose(&["x", "agent:hunter2", "a@b:hunter2", ""])?)
    } else {
        None
    };
    let (host_written, host) = *u.choose(if aim { &HOSTS[..3] } else { HOSTS })?;
    let port_pieces = [
        (String::new(), Ok(None)),
        (format!(":{port}"), Ok(Some(port))),
        (format!(":0{port}"), Ok(Some(port))),
        (format!(":{closed}"), Ok(Some(closed))),
        (":80".to_string(), Ok(Some(80))),
        (":0".to_string(), Err(())),
        (":".to_string(), Err(())),
        (":70000".to_string(), Err(())),
        (format!(":+{port}"), Err(())),
    ];
    let (port_written, port_value) = u.choose(if aim { &port_pieces[1..3] } else { &port_pieces })?.clone();
    let mut hostport = format!("{host_written}{port_written}");
    if userinfo.is_some() && u.ratio(1, 6)? {
        // `user@` alone, which `set-authority` itself refuses.
        hostport.clear();
    }
    // The guest sets no authority for an empty one.
    let no_authority = u.ratio(1, 8)? || (hostport.is_empty() && userinfo.is_none());
    let authority = match (no_authority, userinfo) {
        (true, _) => String::new(),
        (false, Some(info)) => format!("{info}@{hostport}"),
        (false, None) => hostport.clone(),
    };
    let shown_authority = match userinfo {
        Some(_) if !no_authority => format!("***@{hostport}"),
        _ => authority.clone(),
    };
    let expect = if authority.ends_with('@') {
        Expect::NotSet
    } else {
        let refused = |code, target| Expect::Refused { target, code };
        match scheme {
            None => {
                let name = scheme_written.trim_end_matches(':').to_ascii_lowercase();
                refused("HttpProtocolError", format!("{name}://{shown_authority}"))
            }
            Some(scheme) if no_authority => refused("HttpRequestUriInvalid", format!("{scheme}://")),
            Some(scheme) if userinfo.is_some() => refused("HttpRequestDenied", format!("{scheme}://{shown_authority}")),
            Some(scheme) => match (host, port_value) {
                (Some(host), Ok(explicit)) => {
                    let default = default_port(scheme).unwrap();
                    let port_used = explicit.unwrap_or(default);
                    let target = format!("{scheme}://{host}:{port_used}");
                    let admitted = entries
                        .iter()
                        .any(|(s, h, (lo, hi), _)| *s == scheme && *h == host && (*lo..=*hi).contains(&port_used));
                    if admitted {
                        Expect::Allowed {
                            target,
                            authority: if port_used == default {
                                host.to_string()
                            } else {
                                format!("{host}:{port_used}")
                            },
                            served: port_used == port && matches!(host, "127.0.0.1" | "localhost"),
                        }
                    } else {
                        refused("HttpRequestDenied", target)
                    }
                }
                _ => refused("HttpRequestDenied", format!("{scheme}://{shown_authority}")),
            },
        }
    };
    let list: Vec<&str> = entries.iter().map(|e| e.3.as_str()).collect();
    Ok(Case {
        url: format!("{scheme_written}//{authority}/x"),
        toml: format!("[net]\nhttp = [{}]\n[limits]\ntimeout = \"10s\"\n", list.join(", ")),
        expect,
        secret: authority.contains(PASSWORD),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}
