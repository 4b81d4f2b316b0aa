//! Takes `HOST:PORT` and tries to connect over TCP, send `ping` and read the reply.
//! Prints `connected, reply <text>` and exits 0, or prints `refused: <error kind>` and
//! exits 1. Unless a policy grants the address, the host must refuse.

use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let addr = std::env::args().nth(1).expect("usage: net_tcp_connect HOST:PORT");
    match TcpStream::connect(&addr) {
        Ok(mut stream) => {
            stream.write_all(b"ping\n").expect("send");
            let mut reply = String::new();
            stream.read_to_string(&mut reply).expect("receive");
            println!("connected, reply {reply}");
        }
        Err(err) => {
            println!("refused: {:?}", err.kind());
            std::process::exit(1);
        }
    }
}
