//! Needs `[net] dns = true`. Resolves the host name it takes and prints each IP address, sorted
//! and without duplicates, one per line, exiting 0. If the lookup fails it prints
//! `refused: <error kind>` and exits 1.

use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};

fn main() {
    let name = std::env::args().nth(1).expect("usage: net_dns_lookup HOST");
    match (name.as_str(), 0).to_socket_addrs() {
        Ok(addrs) => {
            let ips: BTreeSet<IpAddr> = addrs.map(|addr| addr.ip()).collect();
            for ip in ips {
                println!("{ip}");
            }
        }
        Err(err) => {
            println!("refused: {:?}", err.kind());
            std::process::exit(1);
        }
    }
}
