//! Expects a host built with the test-only `wall-drill` feature, which links the escape drill's import.
//! Takes `WHAT [ARG]` and asks the *host process* to attempt WHAT (an escape a subverted runtime
//! would try: `read-file PATH`, `exec`, `connect PORT`, ...; the list is in wasmcell's
//! src/engine/drill.rs). Prints `drill WHAT: ok` or `drill WHAT: refused errno N`, then
//! `drill done`, and exits 0; a request the drill cannot read (an unknown WHAT, a bad ARG) prints
//! `drill WHAT: error N` and exits 1. The core module imports `wasmcell_drill::attempt`, the
//! component `wasmcell:drill/attempt`.

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().expect("usage: drill_attempt WHAT [ARG]");
    let arg = args.next().unwrap_or_default();
    match attempt(&what, &arg) {
        0 => println!("drill {what}: ok"),
        errno if errno > 0 => println!("drill {what}: refused errno {errno}"),
        code => {
            println!("drill {what}: error {code}");
            std::process::exit(1);
        }
    }
    println!("drill done");
}

/// The preview 1 import: two strings as pointer and length in this module's memory.
#[cfg(all(target_os = "wasi", target_env = "p1"))]
fn attempt(what: &str, arg: &str) -> i32 {
    #[link(wasm_import_module = "wasmcell_drill")]
    unsafe extern "C" {
        #[link_name = "attempt"]
        fn drill_attempt(what_ptr: *const u8, what_len: usize, arg_ptr: *const u8, arg_len: usize) -> i32;
    }
    // SAFETY: both pointers and lengths describe live strings for the whole call.
    unsafe { drill_attempt(what.as_ptr(), what.len(), arg.as_ptr(), arg.len()) }
}

/// The component import, typed by its WIT.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn attempt(what: &str, arg: &str) -> i32 {
    component::wasmcell::drill::attempt::attempt(what, arg)
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod component {
    wit_bindgen::generate!({
        inline: "
            package wasmcell:drill;
            interface attempt {
                attempt: func(what: string, arg: string) -> s32;
            }
            world drill {
                import attempt;
            }
        ",
    });
}

/// Built for the host (so `cargo clippy --workspace` checks it) there is no drill to ask.
#[cfg(not(target_os = "wasi"))]
fn attempt(what: &str, _arg: &str) -> i32 {
    eprintln!("drill {what}: the drill's import exists only in wasmcell built with `wall-drill`");
    std::process::exit(2);
}
