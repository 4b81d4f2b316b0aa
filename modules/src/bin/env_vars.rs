//! Needs no grants; prints every environment variable as `K=V`, sorted by key.

fn main() {
    let mut vars: Vec<_> = std::env::vars_os().collect();
    // Stable, so repeated keys keep the order the host gave them.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in vars {
        println!("{}={}", key.display(), value.display());
    }
}
