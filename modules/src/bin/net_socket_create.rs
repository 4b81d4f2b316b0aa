//! Takes `tcp` or `udp` and a count N. Creates up to N IPv4 sockets of that protocol with
//! `wasi:sockets`, holding every one, and prints `created <n>`, then `, then <error-code>` (the
//! WASI name, such as `access-denied`) if creating one failed; exits 0. Whether sockets may be
//! created is the host's choice: it needs some `[net]` use of that protocol granted. Only the
//! wasm32-wasip2 build has sockets: the others print `refused: Unsupported` and exit 1.

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(protocol), Some(count)) = (args.next(), args.next()) else {
        panic!("usage: net_socket_create tcp|udp COUNT");
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let (created, error) = create(&protocol, count);
    match error {
        Some(error) => println!("created {created}, then {error}"),
        None => println!("created {created}"),
    }
}

/// Creates up to `count` sockets, keeping them open until it returns; gives how many it
/// created and the error code that stopped it, if one did.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn create(protocol: &str, count: usize) -> (usize, Option<&'static str>) {
    use wasi::sockets::network::IpAddressFamily;
    use wasi::sockets::{tcp_create_socket, udp_create_socket};
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for created in 0..count {
        let result = match protocol {
            "tcp" => tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(|s| tcp.push(s)),
            "udp" => udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(|s| udp.push(s)),
            other => panic!("unknown protocol `{other}`: expected tcp or udp"),
        };
        if let Err(error) = result {
            return (created, Some(error.name()));
        }
    }
    (count, None)
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn create(_protocol: &str, _count: usize) -> (usize, Option<&'static str>) {
    println!("refused: Unsupported (wasi:sockets needs a wasm32-wasip2 component)");
    std::process::exit(1)
}
