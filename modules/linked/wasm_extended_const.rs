//! A position-independent shared library, linked into a component as
//! `wasm-tools component link` links a Python component's libraries: built by
//! rustc and wasm-ld with `-C relocation-model=pic -C target-feature=+extended-const
//! -shared`, so its data segments start at `__memory_base` plus an offset, an
//! extended constant expression. `count(i)` returns the byte of "hello" at
//! `i % 5` plus how often it was called plus 40: `count(1)` is 142.
#![no_std]

/// Read-only data: the first segment.
static GREETING: [u8; 5] = *b"hello";

/// Writable data: a segment after it, placed at `__memory_base + N`.
static mut CALLS: u32 = 40;

/// The one export.
#[unsafe(no_mangle)]
pub extern "C" fn count(i: u32) -> u32 {
    // SAFETY: the component is single-threaded; nothing else holds CALLS.
    let calls = unsafe {
        CALLS += 1;
        core::ptr::read_volatile(&raw const CALLS)
    };
    u32::from(GREETING[(i % 5) as usize]) + calls
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
