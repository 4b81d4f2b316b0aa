//! Needs nothing granted (`[net] dns` off). Makes COUNT (default 3000) name lookups, each with a
//! name of LEN bytes (default 20000) that carries a terminal escape, a bell and a forged
//! `\nwasmcell: forged` line, straight through `wasi:sockets` so that no resolver library
//! shortens or rejects them first. Prints `refused <n> of <COUNT>` and exits 0 when every lookup
//! was refused, 1 otherwise. Only the wasm32-wasip2 build can look names up; the other builds
//! print `refused: Unsupported` and exit 1.

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(3000, |a| a.parse().expect("COUNT is a number"));
    let len: usize = args.next().map_or(20_000, |a| a.parse().expect("LEN is a number"));
    match flood(count, len) {
        Ok(refused) => {
            println!("refused {refused} of {count}");
            std::process::exit(if refused == count { 0 } else { 1 });
        }
        Err(err) => {
            println!("refused: {err}");
            std::process::exit(1);
        }
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn flood(count: usize, len: usize) -> Result<usize, String> {
    use wasi::sockets::instance_network::instance_network;
    use wasi::sockets::ip_name_lookup::resolve_addresses;

    // The lookup's number, the escapes, then padding up to `len` bytes.
    let hostile_name = |i: usize, len: usize| {
        let mut name = format!("{i}\u{1b}[31m\u{7}\nwasmcell: forged {i}\u{202e}.");
        while name.len() < len {
            name.push('a');
        }
        name
    };
    let network = instance_network();
    let mut refused = 0;
    for i in 0..count {
        if resolve_addresses(&network, &hostile_name(i, len)).is_err() {
            refused += 1;
        }
    }
    Ok(refused)
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn flood(_count: usize, _len: usize) -> Result<usize, String> {
    Err("Unsupported".to_string())
}
