//! Needs a `[net] tcp-bind` grant for the `IP:PORT` it takes. Binds a TCP listener there
//! (explicitly, even at port 0), prints `listening on <the IP:PORT it got>`, accepts one
//! connection, reads one line and writes `pong: <line>` back, then exits 0. If binding or accepting fails it prints `refused: <error kind>` and exits 1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn refused(err: std::io::Error) -> ! {
    println!("refused: {:?}", err.kind());
    std::process::exit(1);
}

fn main() {
    let addr = std::env::args().nth(1).expect("usage: net_tcp_listen IP:PORT");
    let listener = TcpListener::bind(&addr).unwrap_or_else(|err| refused(err));
    let bound = listener.local_addr().unwrap_or_else(|err| refused(err));
    println!("listening on {bound}");
    std::io::stdout().flush().expect("flush stdout");
    let (stream, _peer) = listener.accept().unwrap_or_else(|err| refused(err));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("receive");
    let mut stream = reader.into_inner();
    stream
        .write_all(format!("pong: {}\n", line.trim_end_matches(['\r', '\n'])).as_bytes())
        .expect("send");
}
