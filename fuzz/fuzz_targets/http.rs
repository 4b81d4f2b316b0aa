//! Outgoing HTTP requests: generated schemes and authorities sent under
//! generated `[net] http` entries, checked against a reference of the rules.
//! The properties are in `wasmcell_fuzz::check_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmcell_fuzz::check_http(data, std::path::Path::new(wasmcell_artifacts::NET_HTTP_GET_COMPONENT));
});
