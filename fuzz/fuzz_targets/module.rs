//! Module loading and running: wasm-smith modules with only the enabled
//! proposals, and raw bytes, under tight limits. The properties are in
//! `wasmcell_fuzz::check_module`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmcell_fuzz::check_module(data);
});
