//! `[net]` decisions: a generated table and generated uses, each decided by
//! the policy and by a reference of the rules. The properties are in
//! `wasmcell_fuzz::check_net`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmcell_fuzz::check_net(data);
});
