//! Growth sequences: memories and tables of every kind the opt-in proposals
//! allow, grown near every edge under a small `limits.memory`, checked
//! against a reference of wasmtime's and the limiter's decisions. The
//! properties are in `wasmcell_fuzz::check_growth`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmcell_fuzz::check_growth(data);
});
