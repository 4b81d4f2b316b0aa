//! Needs no grants; exits with the code given in args[1] (default 0).

fn main() {
    let code = std::env::args()
        .nth(1)
        .map_or(0, |arg| arg.parse::<i32>().expect("args[1] must be an i32"));
    std::process::exit(code);
}
