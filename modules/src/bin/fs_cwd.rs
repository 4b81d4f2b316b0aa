//! Needs a grant holding the initial working directory the host names (`[fs] cwd`), with a
//! file `hello.txt` in it. wasi-libc starts every program at `/` and reads no initial
//! directory, so this guest changes to it the way a program must: to `initial-cwd` of
//! `wasi:cli/environment` in the wasm32-wasip2 build, to `$PWD` in the wasm32-wasip1 build.
//! Prints `start: <dir>`, `initial-cwd: <dir or none>` (wasm32-wasip2 build only),
//! `PWD: <dir or none>`, `cwd: <dir>`, then `hello.txt: <content>` read by its relative name,
//! or `hello.txt: error <io::ErrorKind>`. Exits 0.

fn main() {
    let current = || match std::env::current_dir() {
        Ok(dir) => dir.display().to_string(),
        Err(err) => format!("error {:?}", err.kind()),
    };
    println!("start: {}", current());
    let pwd = std::env::var("PWD").ok();
    println!("PWD: {}", pwd.as_deref().unwrap_or("none"));
    if let Some(dir) = initial_dir(pwd)
        && let Err(err) = std::env::set_current_dir(&dir)
    {
        println!("chdir {dir}: error {:?}", err.kind());
    }
    println!("cwd: {}", current());
    match std::fs::read_to_string("hello.txt") {
        Ok(text) => println!("hello.txt: {}", text.trim_end()),
        Err(err) => println!("hello.txt: error {:?}", err.kind()),
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn initial_dir(_pwd: Option<String>) -> Option<String> {
    let dir = wasi::cli::environment::initial_cwd();
    println!("initial-cwd: {}", dir.as_deref().unwrap_or("none"));
    dir
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn initial_dir(pwd: Option<String>) -> Option<String> {
    pwd
}
