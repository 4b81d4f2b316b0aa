//! Needs no grants; prints `hello from wasmcell` and exits 0.

fn main() {
    println!("hello from wasmcell");
}
