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

/// Waits for a `wasi:http` response and reads its body to the end: the
/// status and the body, or the error as text.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub fn read_response(pending: wasi::http::types::FutureIncomingResponse) -> Result<(u16, Vec<u8>), String> {
    use wasi::io::streams::StreamError;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response after the pollable was ready")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body taken twice")?;
    let stream = body.stream().map_err(|()| "stream taken twice")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok((status, bytes))
}
