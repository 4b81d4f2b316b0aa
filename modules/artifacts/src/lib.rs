//! Paths to the guest programs in `modules/`, compiled by this crate's build script.
//!
//! For each guest `modules/src/bin/<name>.rs` there are two constants holding absolute
//! paths: `<NAME>`, the wasm32-wasip1 core module, and `<NAME>_COMPONENT`, the
//! wasm32-wasip2 component. `ALL` lists every guest. Each suite (the guest name's prefix:
//! `fs`, `env`, `stdio`, `clocks`, `random`, `limits`, `exit`, `net`, `cpu`, `drill`) has a macro,
//! `foreach_<suite>!`, that invokes a given macro once per guest, so a test module can
//! insist that each guest has a test of the same name:
//!
//! ```
//! macro_rules! assert_test_exists {
//!     ($name:ident) => {
//!         #[expect(unused_imports, reason = "only checks that the test exists")]
//!         use self::$name as _;
//!     };
//! }
//! wasmcell_artifacts::foreach_exit!(assert_test_exists);
//!
//! // In a test module these are the `#[test]` functions that run each guest.
//! fn exit_code() {}
//! fn exit_panic() {}
//!
//! fn main() -> std::io::Result<()> {
//!     let wasm = std::fs::read(wasmcell_artifacts::HELLO)?;
//!     assert!(wasm.starts_with(b"\0asm"));
//!     Ok(())
//! }
//! ```
//!
//! Building this crate needs the `wasm32-wasip1` and `wasm32-wasip2` targets; the build
//! script installs them with rustup if it can, and fails otherwise.

#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
