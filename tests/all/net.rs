//! Network: nothing is granted, so no guest reaches a socket. Real listeners on
//! loopback, started by the tests, prove that no connection arrives.

use crate::{assert_status, assert_test_exists, both, run, stdout};
use std::net::TcpListener;
use wasmcell::{Policy, Status};

wasmcell_artifacts::foreach_net!(assert_test_exists);

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
            assert_status(&outcome, Status::Exited(1));
            assert!(
                stdout(&outcome).starts_with("refused: "),
                "{target}: {}",
                stdout(&outcome)
            );
        }
    }
    assert_nothing_connected(&listener);
}

/// Every bundled policy denies the network too, not just the built-in default.
#[test]
fn bundled_policies_grant_no_network() {
    let (listener, port) = listener();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
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
