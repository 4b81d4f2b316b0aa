//! Network: nothing is granted by default, and `[net]` grants admit exactly the
//! addresses and ports they list. Real sockets on loopback, started by the
//! tests, show what got through; every refusal is an error for the guest and,
//! once a socket kind is switched on, a denial in the outcome.

use crate::{assert_status, assert_test_exists, both, policy_toml, run, stdout, wait_for, wasmcell_command};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmcell::{Outcome, Policy, Status};
use wasmcell_artifacts::{
    NET_DNS_FLOOD_COMPONENT, NET_DNS_LOOKUP, NET_DNS_LOOKUP_COMPONENT, NET_HTTP_CLIENT_COMPONENT, NET_HTTP_GET,
    NET_HTTP_GET_COMPONENT, NET_HTTP_POST, NET_HTTP_POST_COMPONENT, NET_SOCKET_CREATE, NET_SOCKET_CREATE_COMPONENT,
    NET_TCP_CONNECT, NET_TCP_CONNECT_COMPONENT, NET_TCP_LISTEN, NET_TCP_LISTEN_COMPONENT, NET_UDP_SEND,
    NET_UDP_SEND_COMPONENT,
};

wasmcell_artifacts::foreach_net!(assert_test_exists);

/// How long a test waits for any one socket event before it gives up.
const WAIT: Duration = Duration::from_secs(10);

/// A loopback listener that never blocks, to check whether anything connected.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_nothing_connected(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("a guest reached the host's listener from {peer}"),
        Err(e) => panic!("accept failed: {e}"),
    }
}

#[test]
fn net_tcp_connect() {
    let (listener, port) = listener();
    for guest in both(
        wasmcell_artifacts::NET_TCP_CONNECT,
        wasmcell_artifacts::NET_TCP_CONNECT_COMPONENT,
    ) {
        for target in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ] {
            let outcome = run(Policy::deny_all(), guest, &[&target]);
            assert_guest_refused(&outcome);
        }
    }
    assert_nothing_connected(&listener);
}

/// Every bundled policy denies the network too, not just the built-in default.
#[test]
fn bundled_policies_grant_no_network() {
    let (listener, port) = listener();
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("policies");
    for name in [
        "deny-all",
        "read-only",
        "scratch",
        "deterministic",
        "tight",
        "interactive",
    ] {
        let policy = Policy::from_file(dir.join(format!("{name}.toml"))).unwrap();
        let outcome = run(
            policy,
            wasmcell_artifacts::NET_TCP_CONNECT_COMPONENT,
            &[&format!("127.0.0.1:{port}")],
        );
        assert_status(&outcome, Status::Exited(1));
    }
    assert_nothing_connected(&listener);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A policy granting the given `[net]` lines, with a deadline so that a guest
/// left waiting for a peer still ends.
fn net_policy(net: &str) -> Policy {
    policy_toml(
        &format!("[net]\n{net}\n\n[limits]\ntimeout = \"30s\"\n"),
        Path::new("."),
    )
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Accepts one connection on a non-blocking `listener` within [`WAIT`].
fn accept_within(listener: &TcpListener) -> Option<TcpStream> {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("accept failed: {e}"),
        }
    }
    None
}

/// A loopback server for one client: it reads a line, replies `pong` and
/// closes. Joining it gives the line, or `None` if nobody came in time.
fn pong_server() -> (u16, JoinHandle<Option<String>>) {
    let (listener, port) = listener();
    let server = std::thread::spawn(move || {
        let stream = accept_within(&listener)?;
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .expect("read the client's line");
        (&stream).write_all(b"pong\n").expect("reply");
        Some(line)
    });
    (port, server)
}

/// Connects to `addr`, retrying while nothing listens there yet, for up to 5 s.
fn connect_within(addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => return stream,
            Err(_) if started.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("nothing listened on {addr} within 5 s: {e}"),
        }
    }
}

/// Sends `hi` to the listening guest at `addr` and returns its reply.
fn say_hi(addr: &str) -> String {
    let mut stream = connect_within(addr);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"hi\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the guest's reply");
    reply
}

/// Whether this host can listen on IPv6 loopback.
fn has_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// Asserts `net_tcp_connect` talked to the pong `server`, unrefused.
#[track_caller]
fn assert_connected(outcome: &Outcome, server: JoinHandle<Option<String>>) {
    assert_status(outcome, Status::Exited(0));
    assert_eq!(stdout(outcome).trim_end(), "connected, reply pong");
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    // The granted connect is counted as a use (and reaches an audit hook).
    assert_eq!(outcome.uses["tcp-connect"].allowed, 1, "{:?}", outcome.uses);
    assert_eq!(
        server.join().unwrap().as_deref(),
        Some("ping\n"),
        "the server saw no ping"
    );
}

/// The guest saw its network call fail (and said so) and exited 1.
#[track_caller]
fn assert_guest_refused(outcome: &Outcome) {
    assert_status(outcome, Status::Exited(1));
    assert!(stdout(outcome).starts_with("refused: "), "{}", stdout(outcome));
}

/// Asserts the guest was refused, and exactly one use was recorded: `kind` of `target`.
#[track_caller]
fn assert_refused(outcome: &Outcome, kind: &str, target: &str) {
    assert_guest_refused(outcome);
    let [denial] = &outcome.denials[..] else {
        panic!("expected one {kind} denial of {target}, got {:?}", outcome.denials);
    };
    assert_eq!(
        (denial.kind.as_str(), denial.target.as_str()),
        (kind, target),
        "{denial:?}"
    );
    assert!(
        denial.rule.contains("[net]"),
        "the rule should name the table: {denial:?}"
    );
    assert_eq!(outcome.uses[kind].denied, 1, "{:?}", outcome.uses);
}

/// Nothing arrived on a non-blocking UDP `socket`.
fn assert_nothing_received(socket: &UdpSocket) {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    match socket.recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((n, from)) => panic!("a guest sent {:?} from {from}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("recv failed: {e}"),
    }
}

// ---------------------------------------------------------------------------
// TCP connect
// ---------------------------------------------------------------------------

/// A `tcp-connect` entry admits its address and port; another port is refused,
/// recorded, and its listener sees no connection.
#[test]
fn tcp_connect_admits_only_the_listed_port() {
    let (port, server) = pong_server();
    let (other, other_port) = listener();
    let policy = || net_policy(&format!("tcp-connect = [\"127.0.0.1:{port}\"]"));

    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);

    let target = format!("127.0.0.1:{other_port}");
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-connect", &target);
    assert_eq!(stdout(&outcome).trim_end(), "refused: PermissionDenied");
    assert_nothing_connected(&other);
}

/// An audit hook sees each network use as it is decided, allowed and
/// denied alike, with the address and the `[net]` entry or table that
/// decided it: the record a later "learn a policy from a run" reads.
#[test]
fn tcp_connect_uses_reach_the_audit_hook() {
    use std::sync::{Arc, Mutex};
    use wasmcell::{CapabilityUse, Decision};
    let (port, server) = pong_server();
    let (other, other_port) = listener();
    let seen: Arc<Mutex<Vec<CapabilityUse>>> = Arc::default();
    let sink = seen.clone();
    let sandbox = wasmcell::Sandbox::builder()
        .policy(net_policy(&format!("tcp-connect = [\"127.0.0.1:{port}\"]")))
        .audit(Arc::new(move |u: &CapabilityUse| sink.lock().unwrap().push(u.clone())))
        .build()
        .unwrap();
    let allowed = format!("127.0.0.1:{port}");
    let denied = format!("127.0.0.1:{other_port}");
    assert_connected(&sandbox.run(NET_TCP_CONNECT_COMPONENT, &[&allowed]).unwrap(), server);
    let outcome = sandbox.run(NET_TCP_CONNECT_COMPONENT, &[&denied]).unwrap();
    assert_refused(&outcome, "tcp-connect", &denied);
    assert_nothing_connected(&other);

    let seen = seen.lock().unwrap();
    let brief: Vec<(&str, &str, Decision)> = seen
        .iter()
        .map(|u| (u.kind.as_str(), u.target.as_str(), u.decision))
        .collect();
    assert_eq!(
        brief,
        [
            ("tcp-connect", allowed.as_str(), Decision::Allowed),
            ("tcp-connect", denied.as_str(), Decision::Denied)
        ]
    );
    assert!(seen.iter().all(|u| u.rule.contains("[net]")), "{seen:#?}");
    assert!(
        seen.iter().all(|u| u.time.ends_with('Z') && u.time.contains('T')),
        "RFC 3339 UTC times: {seen:#?}"
    );
}

/// A port range admits a port inside it and refuses the port just past its end.
#[test]
fn tcp_connect_port_range() {
    let (port, server) = pong_server();
    let (outside, outside_port) = listener();
    let range = if outside_port > port {
        format!("{}-{}", port.saturating_sub(5), outside_port - 1)
    } else {
        format!("{}-{}", outside_port + 1, port.saturating_add(5))
    };
    let policy = || net_policy(&format!("tcp-connect = [\"127.0.0.1:{range}\"]"));

    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);

    let target = format!("127.0.0.1:{outside_port}");
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-connect", &target);
    assert_nothing_connected(&outside);
}

/// `:*` admits every port of its address, and no other address.
#[test]
fn tcp_connect_any_port() {
    let (port, server) = pong_server();
    let policy = || net_policy("tcp-connect = [\"127.0.0.1:*\"]");

    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);

    // 127.0.0.2 is loopback too on Linux, but it is not the granted address.
    let target = format!("127.0.0.2:{port}");
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-connect", &target);

    // IPv6 loopback is another address too; the denial shows it in brackets.
    if has_ipv6_loopback() {
        let target = format!("[::1]:{port}");
        let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
        assert_refused(&outcome, "tcp-connect", &target);
    }
}

/// A CIDR block admits the addresses inside it and refuses those outside.
#[test]
fn tcp_connect_cidr_block() {
    let (port, server) = pong_server();
    let policy = || net_policy(&format!("tcp-connect = [\"127.0.0.0/31:{port}\"]"));

    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);

    let target = format!("127.0.0.2:{port}");
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-connect", &target);
}

/// A host name entry is resolved when the policy loads; connecting to the IP
/// it resolved to is allowed.
#[test]
fn tcp_connect_host_name_entry() {
    let (port, server) = pong_server();
    let policy = net_policy(&format!("tcp-connect = [\"localhost:{port}\"]"));
    let outcome = run(policy, NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);
}

/// An IPv4-mapped IPv6 target (`[::ffff:127.0.0.1]`) never reaches the policy:
/// wasmtime-wasi rejects it as invalid-argument, so it neither slips past a
/// refusal nor is admitted by an entry for the IPv4 address.
#[test]
fn tcp_connect_ipv4_mapped_target_is_rejected() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let (listener, port) = listener();
    let target = format!("[::ffff:127.0.0.1]:{port}");
    for net in [
        format!("tcp-connect = [\"127.0.0.1:{port}\"]"),
        format!("tcp-connect = [\"127.0.0.1:{}\"]", port.wrapping_add(1)),
    ] {
        let outcome = run(net_policy(&net), NET_TCP_CONNECT_COMPONENT, &[&target]);
        assert_status(&outcome, Status::Exited(1));
        assert_eq!(stdout(&outcome).trim_end(), "refused: InvalidInput", "{net}");
    }
    assert_nothing_connected(&listener);
}

/// The unspecified address as a target (which Linux would route to loopback)
/// never connects or sends: wasmtime-wasi rejects it as invalid-argument before
/// the policy is asked, whether an entry is a block or names it literally.
#[test]
fn unspecified_target_is_rejected() {
    let (listener, port) = listener();
    let target = format!("0.0.0.0:{port}");
    for net in [
        "tcp-connect = [\"0.0.0.0/0:*\"]".to_string(),
        format!("tcp-connect = [\"{target}\"]"),
    ] {
        let outcome = run(net_policy(&net), NET_TCP_CONNECT_COMPONENT, &[&target]);
        assert_status(&outcome, Status::Exited(1));
        assert_eq!(stdout(&outcome).trim_end(), "refused: InvalidInput", "{net}");
    }
    assert_nothing_connected(&listener);

    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("0.0.0.0:{}", receiver.local_addr().unwrap().port());
    let net = format!("udp-bind = [\"127.0.0.1:0\"]\nudp-send = [\"{target}\"]");
    let outcome = run(net_policy(&net), NET_UDP_SEND_COMPONENT, &["127.0.0.1:0", &target]);
    assert_status(&outcome, Status::Exited(1));
    assert_eq!(stdout(&outcome).trim_end(), "refused: InvalidInput");
    assert_nothing_received(&receiver);
}

/// A refused use is recorded even when the policy has no `[net]` table at all:
/// there the guest's TCP socket itself is refused.
#[test]
fn refusals_are_recorded_without_any_grant() {
    let (listener, port) = listener();
    let target = format!("127.0.0.1:{port}");
    let outcome = run(Policy::deny_all(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-socket", "ipv4");
    assert_nothing_connected(&listener);
}

// ---------------------------------------------------------------------------
// TCP listen
// ---------------------------------------------------------------------------

/// With a `tcp-bind` entry for its address the guest listens, and a client
/// started by the test gets its reply.
#[test]
fn net_tcp_listen() {
    let addr = format!("127.0.0.1:{}", free_port());
    let policy = net_policy(&format!("tcp-bind = [\"{addr}\"]"));
    let guest = {
        let addr = addr.clone();
        std::thread::spawn(move || run(policy, NET_TCP_LISTEN_COMPONENT, &[&addr]))
    };
    assert_eq!(say_hi(&addr), "pong: hi\n");
    let outcome = guest.join().unwrap();
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), format!("listening on {addr}\n"));
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
}

/// Without a matching `tcp-bind` entry the bind is refused and recorded, even
/// when connecting is granted, and the guest never listens.
#[test]
fn tcp_listen_needs_a_bind_grant() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    for net in [
        "tcp-connect = [\"127.0.0.1:*\"]".to_string(),
        format!("tcp-bind = [\"127.0.0.1:{}\"]", port.wrapping_add(1)),
        format!("tcp-bind = [\"127.0.0.2:{port}\"]"),
    ] {
        let outcome = run(net_policy(&net), NET_TCP_LISTEN_COMPONENT, &[&addr]);
        assert_refused(&outcome, "tcp-bind", &addr);
    }
    for guest in both(NET_TCP_LISTEN, NET_TCP_LISTEN_COMPONENT) {
        let outcome = run(Policy::deny_all(), guest, &[&addr]);
        assert_guest_refused(&outcome);
    }
}

/// Binding the wildcard address (every interface) needs an entry naming it
/// literally: `0.0.0.0/0` does not cover it. (The tests listen on loopback
/// only, so the literal case is left to the unit tests.)
#[test]
fn tcp_bind_wildcard_needs_a_literal_entry() {
    let wildcard = format!("0.0.0.0:{}", free_port());
    let outcome = run(
        net_policy("tcp-bind = [\"0.0.0.0/0:*\"]"),
        NET_TCP_LISTEN_COMPONENT,
        &[&wildcard],
    );
    assert_refused(&outcome, "tcp-bind", &wildcard);
    assert!(outcome.denials[0].rule.contains("literally"), "{:?}", outcome.denials);
}

/// A connect grant lets wasmtime bind the wildcard address implicitly inside
/// the connect, but never lets the guest bind it itself: binding `0.0.0.0:0`
/// is an explicit bind, refused and recorded as `tcp-bind`.
#[test]
fn tcp_connect_grant_does_not_allow_binding_the_wildcard() {
    let outcome = run(
        net_policy("tcp-connect = [\"127.0.0.1:*\"]"),
        NET_TCP_LISTEN_COMPONENT,
        &["0.0.0.0:0"],
    );
    assert_refused(&outcome, "tcp-bind", "0.0.0.0:0");
}

/// An entry naming the wildcard address with a port grants that port only:
/// binding the wildcard at port 0 (an ephemeral port, on every address of the
/// machine) is an explicit bind like any other, refused and recorded, on IPv4
/// and IPv6 alike. It used to pass as the implicit bind of a connect, and the
/// listen that followed was decided on the address alone.
// See: #27
#[test]
fn wildcard_bind_at_port_zero_needs_an_entry_for_port_zero() {
    let port = free_port();
    let mut cases = vec![(format!("0.0.0.0:{port}"), "0.0.0.0:0")];
    if has_ipv6_loopback() {
        cases.push((format!("[::]:{port}"), "[::]:0"));
    }
    for (entry, bind) in cases {
        let outcome = run(
            net_policy(&format!("tcp-bind = [\"{entry}\"]")),
            NET_TCP_LISTEN_COMPONENT,
            &[bind],
        );
        assert_refused(&outcome, "tcp-bind", bind);
        assert_eq!(stdout(&outcome).trim_end(), "refused: PermissionDenied", "{entry}");
    }
}

/// This machine's IPv4 address on its default route, which other machines
/// reach it at, if it has one. Connecting a UDP socket sends nothing; it only
/// asks the kernel which local address it would use (198.51.100.1 is a
/// documentation address).
fn external_ipv4() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("198.51.100.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A listener the guest opens on the wildcard address at port 0, under an
/// entry naming exactly that, is reachable on the machine's other addresses,
/// and the report and the audit show its bind (as asked: `0.0.0.0:0`), its
/// listen (as bound, with the port it got) and the accepted client.
// See: #27
#[test]
fn wildcard_listener_is_reported_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (report, audit) = (dir.path().join("report.json"), dir.path().join("audit.jsonl"));
    let mut child = spawn_wasmcell(&[
        "run",
        "--timeout",
        "30s",
        "--allow-bind",
        "0.0.0.0:0",
        "--report",
        report.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        NET_TCP_LISTEN_COMPONENT,
        "0.0.0.0:0",
    ]);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("read the guest's first line");
    let out = wait_for_reply(child, &first);
    assert_code(&out, 0);
    let port = first
        .trim_end()
        .strip_prefix("listening on 0.0.0.0:")
        .unwrap_or_else(|| panic!("the guest did not listen: {first:?}"));

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for kind in ["tcp-bind", "tcp-listen", "tcp-accept"] {
        assert_eq!(json["uses"][kind]["allowed"], 1, "{kind}: {json:#}");
    }
    assert_eq!(json["denials"], serde_json::json!([]), "{json:#}");
    let audited: Vec<(String, String, String)> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .skip(1) // the module and its digest
        .map(|l| {
            let l: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let field = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (field("kind"), field("target"), field("decision"))
        })
        .collect();
    let want = |k: &str, t: &str| (k.to_string(), t.to_string(), "allowed".to_string());
    assert_eq!(
        audited[..2],
        [
            want("tcp-bind", "0.0.0.0:0"),
            want("tcp-listen", &format!("0.0.0.0:{port}"))
        ],
        "{audited:#?}"
    );
}

/// Says hi to the guest that printed `first` (`listening on 0.0.0.0:PORT`)
/// through this machine's external address, or loopback if it has none, and
/// waits for it to end.
fn wait_for_reply(child: Child, first: &str) -> Output {
    let port = first.trim_end().rsplit(':').next().unwrap_or_default();
    let ip = external_ipv4().unwrap_or_else(|| {
        eprintln!("note: this machine has no non-loopback IPv4 address; reaching the listener on loopback");
        IpAddr::from([127, 0, 0, 1])
    });
    if first.starts_with("listening on ") {
        assert_eq!(
            say_hi(&SocketAddr::new(ip, port.parse().unwrap()).to_string()),
            "pong: hi\n"
        );
    }
    wait_for(child)
}

// ---------------------------------------------------------------------------
// Creating sockets
// ---------------------------------------------------------------------------

/// A socket of a protocol the policy grants no use of cannot be created:
/// `access-denied`, as wasmtime answers when that protocol is off, and one
/// record. A socket of a granted protocol is created; core modules have none.
// See: #27
#[test]
fn net_socket_create() {
    for (net, protocol, expected, denial) in [
        ("", "tcp", "created 0, then access-denied", Some("tcp-socket")),
        ("", "udp", "created 0, then access-denied", Some("udp-socket")),
        (
            "udp-send = [\"127.0.0.1:9\"]",
            "tcp",
            "created 0, then access-denied",
            Some("tcp-socket"),
        ),
        (
            "tcp-bind = [\"127.0.0.1:0\"]",
            "udp",
            "created 0, then access-denied",
            Some("udp-socket"),
        ),
        ("udp-send = [\"127.0.0.1:9\"]", "udp", "created 3", None),
        ("tcp-connect = [\"127.0.0.1:9\"]", "tcp", "created 3", None),
        ("tcp-bind = [\"127.0.0.1:0\"]", "tcp", "created 3", None),
    ] {
        let outcome = run(net_policy(net), NET_SOCKET_CREATE_COMPONENT, &[protocol, "3"]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome).trim_end(), expected, "{net:?} {protocol}");
        let denials: Vec<(&str, &str)> = outcome
            .denials
            .iter()
            .map(|d| (d.kind.as_str(), d.target.as_str()))
            .collect();
        assert_eq!(
            denials,
            denial.map(|kind| (kind, "ipv4")).into_iter().collect::<Vec<_>>()
        );
    }
    let outcome = run(
        net_policy("tcp-connect = [\"127.0.0.1:9\"]"),
        NET_SOCKET_CREATE,
        &["tcp", "1"],
    );
    assert_guest_refused(&outcome);
}

/// A guest that creates sockets until the host's process has no descriptor
/// left is told `new-socket-limit`, the error a guest can handle, not
/// `unknown`. The process's open-file limit is lowered for this one run.
// See: #27
#[test]
fn out_of_descriptors_is_new_socket_limit() {
    let out = wait_for(
        wasmcell_command_in_shell("ulimit -n 64")
            .args([
                "run",
                "--allow-connect",
                "127.0.0.1:9",
                NET_SOCKET_CREATE_COMPONENT,
                "tcp",
                "500",
            ])
            .spawn()
            .expect("spawn wasmcell under sh"),
    );
    assert_code(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout);
    let (created, error) = said
        .trim_end()
        .strip_prefix("created ")
        .and_then(|rest| rest.split_once(", then "))
        .unwrap_or_else(|| panic!("the guest was never refused: {said:?}"));
    assert!(created.parse::<u32>().unwrap() > 0, "{said}");
    assert_eq!(error, "new-socket-limit", "{said}");
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

/// With `udp-bind` and `udp-send` entries the datagram arrives.
#[test]
fn net_udp_send() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(WAIT)).unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let policy = net_policy(&format!("udp-bind = [\"127.0.0.1:0\"]\nudp-send = [\"{target}\"]"));
    let outcome = run(policy, NET_UDP_SEND_COMPONENT, &["127.0.0.1:0", &target]);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), "sent 4 bytes\n");
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    let mut buf = [0; 64];
    let (n, from) = receiver.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], b"ping");
    assert!(from.ip().is_loopback(), "{from}");
}

/// Without a `udp-send` entry for the target the send is refused and
/// recorded, and nothing arrives.
#[test]
fn udp_send_needs_a_send_grant() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let outcome = run(
        net_policy("udp-bind = [\"127.0.0.1:0\"]"),
        NET_UDP_SEND_COMPONENT,
        &["127.0.0.1:0", &target],
    );
    assert_refused(&outcome, "udp-send", &target);
    assert_nothing_received(&receiver);
}

/// A `udp-send` entry does not grant binding a chosen local address.
#[test]
fn udp_bind_needs_a_bind_grant() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let outcome = run(
        net_policy(&format!("udp-send = [\"{target}\"]")),
        NET_UDP_SEND_COMPONENT,
        &["127.0.0.1:0", &target],
    );
    assert_refused(&outcome, "udp-bind", "127.0.0.1:0");
    assert_nothing_received(&receiver);
}

/// A UDP bind the guest asks for is decided whatever its address: binding the
/// wildcard at port 0 (every address of the machine, where datagrams sent to
/// its external address arrive) needs an entry naming it, and is counted when
/// one does. It used to pass unrecorded as the implicit bind of a send.
// See: #27
#[test]
fn explicit_udp_wildcard_bind_needs_an_entry_naming_it() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let outcome = run(
        net_policy(&format!("udp-bind = [\"127.0.0.1:0\"]\nudp-send = [\"{target}\"]")),
        NET_UDP_SEND_COMPONENT,
        &["0.0.0.0:0", &target],
    );
    assert_refused(&outcome, "udp-bind", "0.0.0.0:0");
    assert_nothing_received(&receiver);

    let outcome = run(
        net_policy(&format!("udp-bind = [\"0.0.0.0:0\"]\nudp-send = [\"{target}\"]")),
        NET_UDP_SEND_COMPONENT,
        &["0.0.0.0:0", &target],
    );
    assert_status(&outcome, Status::Exited(0));
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    assert_eq!(outcome.uses["udp-bind"].allowed, 1, "{:?}", outcome.uses);
    assert_eq!(outcome.uses["udp-send"].allowed, 1, "{:?}", outcome.uses);
}

// ---------------------------------------------------------------------------
// Name lookups
// ---------------------------------------------------------------------------

/// `dns = true` lets the guest resolve `localhost` to loopback addresses.
#[test]
fn net_dns_lookup() {
    let outcome = run(net_policy("dns = true"), NET_DNS_LOOKUP_COMPONENT, &["localhost"]);
    assert_status(&outcome, Status::Exited(0));
    let text = stdout(&outcome);
    let ips: Vec<IpAddr> = text.lines().map(|l| l.parse().expect("one IP per line")).collect();
    assert!(!ips.is_empty(), "no addresses: {text}");
    assert!(ips.iter().all(IpAddr::is_loopback), "{text}");
}

/// Without `dns = true` name lookups fail, even when sockets are granted, and
/// each refused lookup is recorded with the name asked for.
#[test]
fn dns_lookup_needs_a_grant() {
    for policy in [
        Policy::deny_all(),
        net_policy("tcp-connect = [\"127.0.0.1:*\"]\ndns = false"),
        net_policy("udp-send = [\"127.0.0.1:*\"]"),
    ] {
        let outcome = run(policy, NET_DNS_LOOKUP_COMPONENT, &["localhost"]);
        assert_refused(&outcome, "dns", "localhost");
    }
}

// ---------------------------------------------------------------------------
// Bundled policies
// ---------------------------------------------------------------------------

/// The bundled `loopback-client.toml` reaches a server on 127.0.0.1 and nothing
/// else: another address, listening, UDP and name lookups are all refused.
#[test]
fn loopback_client_policy() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("policies/loopback-client.toml");
    let policy = || Policy::from_file(&path).unwrap();
    let (port, server) = pong_server();
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&format!("127.0.0.1:{port}")]);
    assert_connected(&outcome, server);

    let (other, other_port) = listener();
    let target = format!("127.0.0.2:{other_port}");
    let outcome = run(policy(), NET_TCP_CONNECT_COMPONENT, &[&target]);
    assert_refused(&outcome, "tcp-connect", &target);
    assert_nothing_connected(&other);

    let listen_at = format!("127.0.0.1:{}", free_port());
    let outcome = run(policy(), NET_TCP_LISTEN_COMPONENT, &[&listen_at]);
    assert_refused(&outcome, "tcp-bind", &listen_at);

    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_target = receiver.local_addr().unwrap().to_string();
    for (guest, args) in [
        (NET_UDP_SEND_COMPONENT, ["127.0.0.1:0", udp_target.as_str()].as_slice()),
        (NET_DNS_LOOKUP_COMPONENT, &["localhost"]),
    ] {
        let outcome = run(policy(), guest, args);
        assert_guest_refused(&outcome);
    }
    assert_nothing_received(&receiver);
}

// ---------------------------------------------------------------------------
// Core modules
// ---------------------------------------------------------------------------

/// Core modules have no socket API: under grants for everything, every net
/// guest built for wasm32-wasip1 is refused and nothing reaches the host.
#[test]
fn core_modules_get_no_sockets_even_when_granted() {
    let everything = || {
        net_policy(
            "tcp-connect = [\"127.0.0.1:*\"]\ntcp-bind = [\"127.0.0.1:*\"]\n\
             udp-bind = [\"127.0.0.1:*\"]\nudp-send = [\"127.0.0.1:*\"]\ndns = true",
        )
    };
    let (tcp, tcp_port) = listener();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_target = udp.local_addr().unwrap().to_string();
    let listen_at = format!("127.0.0.1:{}", free_port());
    for (guest, args) in [
        (NET_TCP_CONNECT, vec![format!("127.0.0.1:{tcp_port}")]),
        (NET_TCP_LISTEN, vec![listen_at]),
        (NET_UDP_SEND, vec!["127.0.0.1:0".to_string(), udp_target]),
        (NET_DNS_LOOKUP, vec!["localhost".to_string()]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = run(everything(), guest, &args);
        assert_guest_refused(&outcome);
    }
    assert_nothing_connected(&tcp);
    assert_nothing_received(&udp);
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// Spawns `wasmcell ARGS..` with stdin closed.
fn spawn_wasmcell(args: &[&str]) -> Child {
    wasmcell_command().args(args).spawn().expect("spawn wasmcell")
}

/// A `wasmcell` command (as [`wasmcell_command`] makes it) that `sh` starts
/// after running `setup`, such as `ulimit -n 64`.
fn wasmcell_command_in_shell(setup: &str) -> Command {
    let plain = wasmcell_command();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{setup} && exec \"$0\" \"$@\""), crate::BIN]);
    cmd.envs(plain.get_envs().filter_map(|(key, value)| Some((key, value?))));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs `wasmcell ARGS..` to the end.
fn wasmcell(args: &[&str]) -> Output {
    wait_for(spawn_wasmcell(args))
}

/// Asserts the exit code, showing the output on failure; returns stderr.
#[track_caller]
fn assert_code(out: &Output, expected: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(expected),
        "--- stdout ---\n{}\n--- stderr ---\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The stderr lines announcing a refused use.
fn denied_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("wasmcell: denied ")).collect()
}

/// `--allow-connect` grants one address, and a run that stays inside its
/// grants prints no denial lines.
#[test]
fn cli_allow_connect() {
    let (port, server) = pong_server();
    let target = format!("127.0.0.1:{port}");
    let out = wasmcell(&[
        "run",
        "--timeout",
        "30s",
        "--verbose",
        "--allow-connect",
        &target,
        NET_TCP_CONNECT_COMPONENT,
        &target,
    ]);
    let err = assert_code(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "connected, reply pong");
    assert_eq!(denied_lines(&err), Vec::<&str>::new());
    assert_eq!(server.join().unwrap().as_deref(), Some("ping\n"));
}

/// `--allow-bind` lets the guest listen on the address.
#[test]
fn cli_allow_bind() {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = spawn_wasmcell(&[
        "run",
        "--timeout",
        "30s",
        "--allow-bind",
        &addr,
        NET_TCP_LISTEN_COMPONENT,
        &addr,
    ]);
    let reply = say_hi(&addr);
    let out = wait_for(child);
    assert_code(&out, 0);
    assert_eq!(reply, "pong: hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("listening on {addr}\n"));
}

/// A refused connect is in the report's `denials` and, with `--report` or
/// `--verbose`, one `wasmcell: denied` line on stderr; without either, no line.
#[test]
fn cli_reports_denials() {
    let (listener, port) = listener();
    let target = format!("127.0.0.1:{port}");
    // Some other port is granted, so TCP is on and the refusal is the policy's.
    let granted = format!("127.0.0.1:{}", port.wrapping_add(1));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let report = report.to_str().unwrap();
    let base = ["run", "--timeout", "30s", "--allow-connect", &granted];

    let out = wasmcell(&[&base[..], &["--report", report, NET_TCP_CONNECT_COMPONENT, &target]].concat());
    let err = assert_code(&out, 1);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let denials = json["denials"].as_array().expect("the report has `denials`");
    assert_eq!(denials.len(), 1, "{json:#}");
    assert_eq!(denials[0]["kind"], "tcp-connect", "{json:#}");
    assert_eq!(denials[0]["target"], target.as_str(), "{json:#}");
    assert!(denials[0]["rule"].as_str().is_some_and(|r| !r.is_empty()), "{json:#}");
    let lines = denied_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("tcp-connect") && lines[0].contains(&target), "{err}");

    let out = wasmcell(&[&base[..], &["--verbose", NET_TCP_CONNECT_COMPONENT, &target]].concat());
    let err = assert_code(&out, 1);
    let lines = denied_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&target), "{err}");

    let out = wasmcell(&[&base[..], &[NET_TCP_CONNECT_COMPONENT, &target]].concat());
    let err = assert_code(&out, 1);
    assert!(!err.contains("wasmcell: denied"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "refused: PermissionDenied"
    );

    assert_nothing_connected(&listener);
}

/// A malformed `[net]` entry stops the run with exit 2 and
/// `FILE:LINE:` pointing at the entry, which the message names.
#[test]
fn cli_rejects_bad_net_entries() {
    let dir = tempfile::tempdir().unwrap();
    for (key, entry) in [
        ("tcp-connect", "10.0.0.0/40:80"),
        ("tcp-bind", "127.0.0.1:70000"),
        ("udp-bind", "127.0.0.1:9-3"),
        ("udp-send", "127.0.0.1"),
    ] {
        let path = dir.path().join(format!("{key}.toml"));
        std::fs::write(
            &path,
            format!("# A bad entry on line 3.\n[net]\n{key} = [\"{entry}\"]\n"),
        )
        .unwrap();
        let path = path.to_str().unwrap();
        for args in [
            vec!["run", "--policy", path, NET_TCP_CONNECT_COMPONENT, "127.0.0.1:9"],
            vec!["check", path],
        ] {
            let out = wasmcell(&args);
            let err = assert_code(&out, 2);
            assert!(err.contains(&format!("{path}:3:")), "{key}: {err}");
            assert!(err.contains(entry), "{key}: {err}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing may run");
        }
    }

    // In a list over several lines, the line is the bad entry's own.
    let path = dir.path().join("multi.toml");
    std::fs::write(
        &path,
        "[net]\ntcp-connect = [\n  \"127.0.0.1:80\",\n  \"127.0.0.1:9-3\",\n]\n",
    )
    .unwrap();
    let err = assert_code(&wasmcell(&["check", path.to_str().unwrap()]), 2);
    assert!(err.contains(&format!("{}:4:", path.display())), "{err}");

    let err = assert_code(
        &wasmcell(&[
            "run",
            "--allow-connect",
            "127.0.0.1",
            NET_TCP_CONNECT_COMPONENT,
            "127.0.0.1:9",
        ]),
        2,
    );
    assert!(err.contains("`127.0.0.1`"), "{err}");
}

/// `wasmcell check` names every network grant in plain words, and whether
/// name lookups are allowed.
#[test]
fn cli_check_describes_net_grants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.toml");
    std::fs::write(
        &path,
        "[net]\ntcp-connect = [\"127.0.0.1:8080\", \"10.1.0.0/16:443\"]\ntcp-bind = [\"127.0.0.1:0\"]\n\
         udp-bind = [\"127.0.0.1:5000-5010\"]\nudp-send = [\"127.0.0.1:5353\"]\ndns = true\n",
    )
    .unwrap();
    let out = wasmcell(&["check", path.to_str().unwrap()]);
    assert_code(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line_with = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` missing from:\n{text}"))
            .to_string()
    };
    for (entry, verb) in [
        ("127.0.0.1:8080", "connect"),
        ("10.1.0.0/16:443", "connect"),
        ("127.0.0.1:0", "bind"),
        ("127.0.0.1:5000-5010", "bind"),
        ("127.0.0.1:5353", "send"),
    ] {
        let line = line_with(entry);
        assert!(line.contains(verb), "{entry}: `{line}` should say {verb}");
    }
    assert!(line_with("name lookups").contains("allowed"), "{text}");

    std::fs::write(&path, "[net]\ntcp-connect = [\"127.0.0.1:8080\"]\n").unwrap();
    let out = wasmcell(&["check", path.to_str().unwrap()]);
    assert_code(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lookups = text
        .lines()
        .find(|l| l.contains("name lookups"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!lookups.contains("allowed"), "dns is off by default: {text}");
}

// ---------------------------------------------------------------------------
// Outgoing HTTP (wasi:http)
// ---------------------------------------------------------------------------

/// A loopback HTTP/1.1 server for one request: it answers `200 hello`.
/// Joining it gives the request line, or `None` if nobody came in time.
fn http_server() -> (u16, JoinHandle<Option<String>>) {
    let (listener, port) = listener();
    let server = std::thread::spawn(move || Some(serve_http(&listener)?.swap_remove(0)));
    (port, server)
}

/// [`http_server`], whose join gives the request's whole head: the request
/// line, then each header line as sent.
fn http_server_head() -> (u16, JoinHandle<Option<Vec<String>>>) {
    let (listener, port) = listener();
    let server = std::thread::spawn(move || serve_http(&listener));
    (port, server)
}

/// Answers one request on `listener` with `200 hello`; gives its head.
fn serve_http(listener: &TcpListener) -> Option<Vec<String>> {
    let stream = accept_within(listener)?;
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(&stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the request's head");
        if line.trim_end().is_empty() {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    (&stream).write_all(reply.as_bytes()).expect("reply");
    Some(head)
}

/// A GET to a listed origin reaches the server and returns its answer.
#[test]
fn net_http_get() {
    let (port, server) = http_server();
    let policy = net_policy(&format!("http = [\"http://127.0.0.1:{port}\"]"));
    let outcome = run(
        policy,
        NET_HTTP_GET_COMPONENT,
        &[&format!("http://127.0.0.1:{port}/greeting?x=1")],
    );
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), "status 200\nhello");
    assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    let request = server.join().unwrap();
    assert_eq!(request.as_deref(), Some("GET /greeting?x=1 HTTP/1.1"));
}

/// The client guest sends the method, headers and body it is given; an
/// origin of `[net] http` admits any method and path as written, and a
/// refusal does not stop the guest.
#[test]
fn net_http_client() {
    let server = crate::broker::plain_http();
    let policy = net_policy(&format!("http = [\"{}\"]", server.origin));
    let steps = [
        format!("PUT|{}/a/../b;c|X-Kind: test|=hi", server.origin),
        "GET|http://127.0.0.1:1/".to_string(),
    ];
    let outcome = run(policy, NET_HTTP_CLIENT_COMPONENT, &[&steps[0], &steps[1]]);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(
        stdout(&outcome),
        "status 200\nok\nrefused: ErrorCode::HttpRequestDenied\n"
    );
    let received = server.requests();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].starts_with("PUT /a/../b;c HTTP/1.1\n"), "{received:?}");
    assert!(
        received[0].contains("\nx-kind: test\n") && received[0].ends_with("\n\nhi"),
        "{received:?}"
    );
    let denied: Vec<(&str, &str)> = outcome
        .denials
        .iter()
        .map(|d| (d.kind.as_str(), d.target.as_str()))
        .collect();
    assert_eq!(denied, [("http", "http://127.0.0.1:1")]);
}

/// `limits.http-requests` caps the requests one run makes: past it, a request
/// to an allowed origin is refused before it leaves the host, recorded with
/// the key as its rule, and answered `HttpRequestDenied`; 0 turns HTTP off.
#[test]
fn http_requests_past_limits_http_requests_are_refused() {
    let policy = |port: u16, max: u64| {
        policy_toml(
            &format!(
                "[net]\nhttp = [\"http://127.0.0.1:{port}\"]\n\n[limits]\ntimeout = \"30s\"\nhttp-requests = {max}\n"
            ),
            Path::new("."),
        )
    };
    let (listener, port) = listener();
    let server = std::thread::spawn(move || {
        (
            serve_http(&listener).is_some() && serve_http(&listener).is_some(),
            listener,
        )
    });
    let url = format!("http://127.0.0.1:{port}/");
    let outcome = run(policy(port, 2), NET_HTTP_GET_COMPONENT, &[&url, &url, &url]);
    assert_status(&outcome, Status::Exited(1));
    let out = stdout(&outcome);
    assert!(out.starts_with("status 200\nhellostatus 200\nhellorefused: "), "{out}");
    assert!(out.contains("HttpRequestDenied"), "{out}");
    assert_eq!(
        (outcome.uses["http"].allowed, outcome.uses["http"].denied),
        (2, 1),
        "{:?}",
        outcome.uses
    );
    let [denial] = &outcome.denials[..] else {
        panic!("expected one denial, got {:?}", outcome.denials);
    };
    assert_eq!(
        (denial.kind.as_str(), denial.target.as_str()),
        ("http", url.trim_end_matches('/'))
    );
    assert!(
        denial
            .rule
            .starts_with("limits.http-requests allows 2 outgoing HTTP requests per run"),
        "{denial:?}"
    );
    let (served_two, listener) = server.join().unwrap();
    assert!(served_two, "the two requests under the limit reach the server");
    assert_nothing_connected(&listener);

    let outcome = run(policy(port, 0), NET_HTTP_GET_COMPONENT, &[&url]);
    assert_guest_refused(&outcome);
    assert!(
        outcome.denials[0].rule.starts_with("limits.http-requests allows 0"),
        "{:?}",
        outcome.denials
    );
    assert_nothing_connected(&listener);
}

/// A request to an origin no entry lists is refused before it leaves the host,
/// recorded, and reaches the guest as `HttpRequestDenied`.
#[test]
fn http_request_to_an_unlisted_origin_is_refused() {
    let (listener, port) = listener();
    let other = free_port();
    for grant in [
        String::new(),
        format!("http = [\"http://127.0.0.1:{other}\"]"),
        format!("http = [\"https://127.0.0.1:{port}\"]"),
        format!("http = [\"http://localhost:{port}\"]"),
        format!("tcp-connect = [\"127.0.0.1:{port}\"]"),
    ] {
        let outcome = run(
            net_policy(&grant),
            NET_HTTP_GET_COMPONENT,
            &[&format!("http://127.0.0.1:{port}/")],
        );
        assert_refused(&outcome, "http", &format!("http://127.0.0.1:{port}"));
        assert!(
            stdout(&outcome).contains("HttpRequestDenied"),
            "{grant}: {}",
            stdout(&outcome)
        );
    }
    assert_nothing_connected(&listener);
}

/// Requests that wasi-http would refuse on its own, or that name credentials,
/// are decided and recorded by wasmcell before any lookup or connection, with
/// the error wasmtime gives where it has one: an unsupported scheme is
/// `HttpProtocolError`, no authority `HttpRequestUriInvalid`; userinfo, a
/// malformed authority and a request without a scheme (so `https`, which no
/// entry lists) are `HttpRequestDenied`.
// See: #27
#[test]
fn every_refused_http_request_is_recorded() {
    let (listener, port) = listener();
    let policy = || net_policy(&format!("http = [\"http://127.0.0.1:{port}\"]"));
    for (url, code, target) in [
        (
            format!("ftp://127.0.0.1:{port}/"),
            "HttpProtocolError",
            format!("ftp://127.0.0.1:{port}"),
        ),
        ("http:///x".to_string(), "HttpRequestUriInvalid", "http://".to_string()),
        (
            format!("http://x@127.0.0.1:{port}/"),
            "HttpRequestDenied",
            format!("http://***@127.0.0.1:{port}"),
        ),
        (
            format!("http://127.0.0.1:{port}0000/"),
            "HttpRequestDenied",
            format!("http://127.0.0.1:{port}0000"),
        ),
        (
            "http://127.0.0.1:/".to_string(),
            "HttpRequestDenied",
            "http://127.0.0.1:".to_string(),
        ),
        (
            format!("//127.0.0.1:{port}/"),
            "HttpRequestDenied",
            format!("https://127.0.0.1:{port}"),
        ),
    ] {
        let outcome = run(policy(), NET_HTTP_GET_COMPONENT, &[&url]);
        assert_refused(&outcome, "http", &target);
        assert!(stdout(&outcome).contains(code), "{url}: {}", stdout(&outcome));
    }
    assert_nothing_connected(&listener);
}

/// An authority with userinfo is refused before the host looks anything up
/// (it used to be allowed for the host after the `@`, then the host resolved
/// the guest's whole string), and its credentials appear nowhere wasmcell
/// writes: not in the report, the audit, `--verbose` lines or any message.
// See: #27
#[test]
fn http_userinfo_is_refused_and_redacted() {
    let (listener, port) = listener();
    let dir = tempfile::tempdir().unwrap();
    let (audit, report) = (dir.path().join("audit.jsonl"), dir.path().join("report.json"));
    let out = wasmcell(&[
        "run",
        "--verbose",
        "--allow-http",
        &format!("http://127.0.0.1:{port}"),
        "--audit",
        audit.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        NET_HTTP_GET_COMPONENT,
        &format!("http://agent:hunter2@127.0.0.1:{port}/"),
    ]);
    let err = assert_code(&out, 1);
    let guest_out = String::from_utf8_lossy(&out.stdout);
    assert!(guest_out.contains("HttpRequestDenied"), "{guest_out}");
    let (audit, report) = (
        std::fs::read_to_string(&audit).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    );
    for (name, text) in [
        ("stderr", &err),
        ("guest's stdout", &guest_out.into_owned()),
        ("audit", &audit),
        ("report", &report),
    ] {
        assert!(!text.contains("hunter2"), "the password in the {name}: {text}");
        assert!(!text.contains("agent"), "the user name in the {name}: {text}");
    }
    let target = format!("http://***@127.0.0.1:{port}");
    assert_eq!(denied_lines(&err).len(), 1, "{err}");
    assert!(denied_lines(&err)[0].contains(&target), "{err}");
    let http: Vec<(String, String)> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|l| l["kind"] == "http")
        .map(|l| (l["target"].to_string(), l["decision"].to_string()))
        .collect();
    assert_eq!(http, [(format!("\"{target}\""), "\"denied\"".to_string())], "{audit}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["uses"]["http"]["denied"], 1, "{report}");
    assert_eq!(report["denials"][0]["target"], target.as_str(), "{report}");
    assert_nothing_connected(&listener);
}

/// An allowed request goes to the scheme, host and port wasmcell decided,
/// rebuilt from them, never to the guest's spelling: the server sees the
/// host lower-cased and the port without its leading zero.
// See: #27
#[test]
fn http_request_goes_to_the_decided_authority() {
    let (port, server) = http_server_head();
    let policy = net_policy(&format!("http = [\"http://localhost:{port}\"]"));
    let outcome = run(
        policy,
        NET_HTTP_GET_COMPONENT,
        &[&format!("http://LocalHost:0{port}/x")],
    );
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(outcome.uses["http"].allowed, 1, "{:?}", outcome.uses);
    let head = server.join().unwrap().expect("the request reached the server");
    assert_eq!(head[0], "GET /x HTTP/1.1");
    let host: Vec<&String> = head
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .collect();
    assert_eq!(host, [&format!("host: localhost:{port}")], "{head:?}");
}

/// `:*` admits any port of the host, and core modules have no wasi:http at all.
#[test]
fn http_any_port_and_modules() {
    let (port, server) = http_server();
    let policy = || net_policy("http = [\"http://127.0.0.1:*\"]");
    let outcome = run(
        policy(),
        NET_HTTP_GET_COMPONENT,
        &[&format!("http://127.0.0.1:{port}/")],
    );
    assert_status(&outcome, Status::Exited(0));
    assert!(server.join().unwrap().is_some());

    let (listener, port) = listener();
    let outcome = run(policy(), NET_HTTP_GET, &[&format!("http://127.0.0.1:{port}/")]);
    assert_status(&outcome, Status::Exited(1));
    assert!(
        stdout(&outcome).starts_with("refused: Unsupported"),
        "{}",
        stdout(&outcome)
    );
    assert_nothing_connected(&listener);
}

/// `--allow-http` grants an origin from the command line; a bad entry is a usage error.
#[test]
fn http_cli_flag() {
    let (port, server) = http_server();
    let url = format!("http://127.0.0.1:{port}/");
    let out = wasmcell(&[
        "run",
        "--allow-http",
        &format!("http://127.0.0.1:{port}"),
        NET_HTTP_GET_COMPONENT,
        &url,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status 200\nhello");
    assert!(server.join().unwrap().is_some());

    let out = wasmcell(&["run", "--allow-http", "ftp://127.0.0.1", NET_HTTP_GET_COMPONENT, &url]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--allow-http: invalid [net] http entry `ftp://127.0.0.1`"),
        "{stderr}"
    );
}

/// An origin named by host name (`localhost`) is resolved by the host when
/// it sends the request, whatever `net.dns` says: behind the second wall
/// (`--wall require`) the resolver's files and port are reachable for it,
/// and `wasmcell check` says why.
#[test]
fn http_to_a_named_origin_resolves_behind_the_wall() {
    let (port, server) = http_server_head();
    let origin = format!("http://localhost:{port}");
    let url = format!("{origin}/");
    let out = wasmcell(&[
        "run",
        "--wall",
        "require",
        "--allow-http",
        &origin,
        NET_HTTP_GET_COMPONENT,
        &url,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status 200\nhello");
    let head = server.join().unwrap().expect("the request arrived");
    assert!(
        head.iter()
            .any(|l| l.eq_ignore_ascii_case(&format!("host: localhost:{port}"))),
        "{head:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, format!("[net]\nhttp = [\"{origin}\"]\n")).unwrap();
    let out = wasmcell(&["check", policy.to_str().unwrap()]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("path /etc/hosts (read): a net.http origin named by host name"),
        "{summary}"
    );
}

// ---------------------------------------------------------------------------
// Hostile denial records
// ---------------------------------------------------------------------------

/// Thousands of refused lookups with 20 KB names: the outcome keeps the first
/// `MAX_DENIALS` that fit the byte budget, counts the rest, and cuts every
/// target to `DENIAL_FIELD_BYTES` with a marker.
// See: #9
#[test]
fn net_dns_flood() {
    let outcome = run(Policy::deny_all(), NET_DNS_FLOOD_COMPONENT, &["3000", "20000"]);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(stdout(&outcome), "refused 3000 of 3000\n");
    let kept = outcome.denials.len();
    assert!(kept > 0 && kept <= wasmcell::MAX_DENIALS, "{kept} records kept");
    assert_eq!(
        kept as u64 + outcome.denials_dropped,
        3000,
        "every refusal is kept or counted"
    );
    let bytes: usize = outcome
        .denials
        .iter()
        .map(|d| d.kind.len() + d.target.len() + d.rule.len())
        .sum();
    assert!(bytes <= wasmcell::DENIAL_BYTES, "{bytes} bytes of records");
    for (i, denial) in outcome.denials.iter().enumerate() {
        assert_eq!(denial.kind, "dns");
        assert!(
            denial.target.starts_with(&format!("{i}\u{1b}[31m")),
            "records stay in order"
        );
        let (kept, marker) = denial.target.split_once('…').expect("a cut target is marked");
        assert!(kept.len() <= wasmcell::DENIAL_FIELD_BYTES, "{} bytes kept", kept.len());
        assert!(marker.starts_with("[+") && marker.ends_with(" bytes]"), "{marker}");
    }

    let outcome = run(Policy::deny_all(), NET_DNS_FLOOD_COMPONENT, &["3", "20"]);
    assert_eq!(outcome.denials.len(), 3, "a few short names are all recorded whole");
    assert_eq!(outcome.denials_dropped, 0);
    assert!(
        outcome.denials[2]
            .target
            .starts_with("2\u{1b}[31m\u{7}\nwasmcell: forged 2")
    );
    assert!(!outcome.denials[2].target.contains('…'));
}

/// The same flood through the CLI with `--verbose` and a report: stderr and
/// the report stay small, no raw escape byte reaches stderr, no line of it is
/// forged, and the report counts what it left out.
// See: #9
#[test]
fn denial_flood_is_bounded_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = wasmcell(&[
        "run",
        "--verbose",
        "--report",
        report.to_str().unwrap(),
        NET_DNS_FLOOD_COMPONENT,
        "3000",
        "20000",
    ]);
    let err = assert_code(&out, 0);
    assert!(out.stderr.len() < 256 << 10, "{} bytes on stderr", out.stderr.len());
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "raw control bytes on stderr"
    );
    assert!(!err.contains('\u{202e}'), "a raw bidi override on stderr");
    for line in err.lines() {
        assert!(
            line.starts_with("wasmcell: "),
            "a line wasmcell did not write: {line:?}"
        );
        assert!(!line.starts_with("wasmcell: forged"), "a forged line: {line:?}");
    }
    let lines = denied_lines(&err);
    assert!(
        !lines.is_empty() && lines.len() <= wasmcell::MAX_DENIALS,
        "{} lines",
        lines.len()
    );
    assert!(
        lines[0].contains(r"\u{1b}[31m\u{7}\nwasmcell: forged 0\u{202e}"),
        "{}",
        lines[0]
    );
    assert!(err.contains("further refusals are only counted"), "{err}");

    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.len() < 256 << 10, "a {} byte report", text.len());
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kept = json["denials"].as_array().expect("the report has `denials`").len();
    assert_eq!(kept, lines.len(), "one line per record");
    assert_eq!(
        json["denials_dropped"].as_u64(),
        Some(3000 - kept as u64),
        "{}",
        json["denials_dropped"]
    );
}

/// A POST's body reaches the server whole over https, through the CA that
/// `net.ca-certificates` names, chunked or with its declared length; core
/// modules have no wasi:http. (`tests/all/http_tls.rs` covers the rest.)
#[test]
fn net_http_post() {
    use crate::https_server::{Answer, TestCa, serve};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wasmcell test CA");
    let pem = ca.write(dir.path(), "ca.pem");
    for declared in [&[][..], &["declared"][..]] {
        let (port, server) = serve(Some(ca.server(&["127.0.0.1"])), Answer::Body(b"stored".to_vec()));
        let policy = Policy::builder()
            .allow_http(&format!("https://127.0.0.1:{port}"))
            .ca_certificate(&pem)
            .build()
            .unwrap();
        let url = format!("https://127.0.0.1:{port}/upload");
        let args = [&[url.as_str(), "100000"][..], declared].concat();
        let outcome = run(policy, NET_HTTP_POST_COMPONENT, &args);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "status 200\nstored");
        let received = server.join();
        let [request] = &received[..] else {
            panic!("{received:?}")
        };
        assert_eq!(request.head[0], "POST /upload HTTP/1.1");
        assert_eq!(request.body.as_deref(), Some(&[b'x'; 100_000][..]));
    }
    let outcome = run(Policy::deny_all(), NET_HTTP_POST, &["http://127.0.0.1:1/", "1"]);
    assert_guest_refused(&outcome);
}
