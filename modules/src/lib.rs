//! What several guests share. Each guest is one binary in `src/bin/`.

use std::io;

/// Makes `link` a symbolic link to `target`. On WASI,
/// `std::os::wasi::fs::symlink_path` is unstable, so this calls wasi-libc's
/// `symlink` directly; elsewhere (a guest built for the host) the OS's.
#[cfg(target_os = "wasi")]
pub fn symlink(target: &str, link: &str) -> io::Result<()> {
    use std::ffi::{CString, c_char, c_int};

    unsafe extern "C" {
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let target = CString::new(target)?;
    let link = CString::new(link)?;
    // SAFETY: both pointers are to NUL-terminated strings that outlive the call.
    match unsafe { symlink(target.as_ptr(), link.as_ptr()) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Makes `link` a symbolic link to `target`.
#[cfg(not(target_os = "wasi"))]
pub fn symlink(target: &str, link: &str) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}
