//! Policy loader: raw and mutated TOML, generated files and `extends` graphs.
//! The properties are in `wasmcell_fuzz::check_policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmcell_fuzz::check_policy(data);
});
