//! The "compiling app.wasm (65.7 MiB)..." line: shown on a terminal when a
//! load takes longer than a second, erased when it ends, never written
//! anywhere else (a log or a pipe gets nothing).

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmcell::policy::ByteSize;
use wasmcell::sanitize;

/// How long a load runs before the line appears: a cache hit or a small
/// module never shows it.
const NOTICE_DELAY: Duration = Duration::from_secs(1);

/// Runs `load` (compiling `module`), showing the notice while it takes
/// longer than [`NOTICE_DELAY`] when stderr is a terminal.
pub(crate) fn with_compile_notice<T>(module: &Path, load: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return load();
    }
    let text = notice_text(module, std::fs::metadata(module).map(|m| m.len()).ok());
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let waiter = Arc::clone(&done);
    let thread = std::thread::Builder::new()
        .name("wasmcell-notice".into())
        .spawn(move || show_after_delay(&waiter, &text));
    let result = load();
    let (finished, wake) = &*done;
    *finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
    wake.notify_all();
    // No thread (it could not be started) means no notice; a load is never
    // refused for want of one.
    if let Ok(thread) = thread {
        let _ = thread.join();
    }
    result
}

/// Waits for the load; if it is still running after the delay, shows the
/// line until it ends, then erases it so that what follows starts clean.
fn show_after_delay(done: &(Mutex<bool>, Condvar), text: &str) {
    let (finished, wake) = done;
    let guard = finished.lock().unwrap_or_else(|e| e.into_inner());
    let (guard, _) = wake
        .wait_timeout_while(guard, NOTICE_DELAY, |finished| !*finished)
        .unwrap_or_else(|e| e.into_inner());
    if *guard {
        return;
    }
    // Errors are ignored: a closed stderr loses the notice, not the run.
    let _ = write!(std::io::stderr().lock(), "{text}");
    let guard = wake
        .wait_while(guard, |finished| !*finished)
        .unwrap_or_else(|e| e.into_inner());
    drop(guard);
    // Back to the start of the line, and clear it.
    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
}

/// `compiling app.wasm (65.7 MiB)...`; the name is escaped, as any text
/// from outside is before it reaches the terminal.
fn notice_text(module: &Path, size: Option<u64>) -> String {
    let name = module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| module.display().to_string());
    let name = sanitize(&name);
    match size {
        Some(size) => format!("compiling {name} ({})...", ByteSize(size)),
        None => format!("compiling {name}..."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_names_the_file_and_its_size() {
        assert_eq!(
            notice_text(Path::new("/x/yosys.wasm"), Some(68_860_682)),
            "compiling yosys.wasm (65.7 MiB)..."
        );
        assert_eq!(
            notice_text(Path::new("a\x1b[2J.wasm"), None),
            "compiling a\\u{1b}[2J.wasm..."
        );
    }

    #[test]
    fn a_quick_load_shows_nothing_and_returns_its_result() {
        // Under `cargo test` stderr may or may not be a terminal; either
        // way the closure's result comes back unchanged.
        assert_eq!(with_compile_notice(Path::new("none.wasm"), || 7), 7);
    }
}
