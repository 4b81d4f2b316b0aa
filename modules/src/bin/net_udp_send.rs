//! Needs `[net] udp-bind` for the local `IP:PORT` it takes first and `udp-send` for the target
//! `IP:PORT` it takes second. Binds a UDP socket, sends `ping` to the target and prints
//! `sent <n> bytes`, exiting 0. If binding or sending fails it prints `refused: <error kind>`
//! and exits 1.

use std::net::UdpSocket;

fn refused(err: std::io::Error) -> ! {
    println!("refused: {:?}", err.kind());
    std::process::exit(1);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(local), Some(target)) = (args.next(), args.next()) else {
        panic!("usage: net_udp_send LOCAL_IP:PORT TARGET_IP:PORT");
    };
    let socket = UdpSocket::bind(&local).unwrap_or_else(|err| refused(err));
    let sent = socket.send_to(b"ping", &target).unwrap_or_else(|err| refused(err));
    println!("sent {sent} bytes");
}
