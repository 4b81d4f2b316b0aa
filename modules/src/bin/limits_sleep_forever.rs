//! Needs no grants; prints `sleeping`, then sleeps an hour in the host, so a wall-clock
//! limit must stop it (epochs alone do not interrupt a host call).

use std::io::Write;
use std::time::Duration;

fn main() {
    println!("sleeping");
    std::io::stdout().flush().expect("failed to flush stdout");
    std::thread::sleep(Duration::from_secs(3600));
    println!("woke");
}
