//! Needs no grants; prints 32 bytes from `getentropy` as lowercase hex, then
//! `hash=<u64>`, a `RandomState` hash of a fixed string.

use std::hash::{BuildHasher, RandomState};

unsafe extern "C" {
    /// From wasi-libc on wasip1 and wasip2, and from glibc on the host.
    fn getentropy(buf: *mut u8, len: usize) -> i32;
}

fn main() {
    let mut bytes = [0u8; 32];
    // SAFETY: `bytes` is valid for writes of its whole length, which is within
    // getentropy's 256-byte limit.
    let rc = unsafe { getentropy(bytes.as_mut_ptr(), bytes.len()) };
    assert_eq!(rc, 0, "getentropy failed: {}", std::io::Error::last_os_error());
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}");
    println!("hash={}", RandomState::new().hash_one("wasmcell"));
}
