//! Needs no grants; prints `about to panic`, then panics with `guest panicked on purpose`.

fn main() {
    println!("about to panic");
    panic!("guest panicked on purpose");
}
