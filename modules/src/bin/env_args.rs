//! Needs no grants; prints each argument, argv[0] included, on its own line.

fn main() {
    for arg in std::env::args_os() {
        println!("{}", arg.display());
    }
}
