//! Build sharing, not code: see this package's `Cargo.toml`. Depending on it
//! asks for the features that make the workspace's builds share one wasmtime.
