//! Precompilation through runwasi's `Compiler` hook: the first container of
//! an image with a Wasm-typed OCI layer compiles it, containerd keeps the
//! native code in its content store beside the layer, and later containers
//! of that image load the code instead of compiling again.
//!
//! The hook runs in the shim's own process, before any container exists and
//! so before the container's policy is known. The code is therefore compiled
//! for one fixed engine, [`precompile_config`]: fuel metering compiled in (an
//! engine with fuel runs unmetered policies too) and every other setting at
//! its default. A policy that needs another engine (a different
//! `limits.stack`, say) cannot run precompiled code; the run says so.
//!
//! This is not a cache a guest can write, so its code carries no MAC as the
//! CLI's disk cache does: containerd's content store is root's, outside
//! every container's filesystem, and no grant of a container reaches it
//! (the shim refuses `/`, `/proc`, `/sys` and `/dev`; a pod that mounts
//! containerd's state directory from the node owns the node anyway).

use containerd_shim_wasm::sandbox::context::WasmLayer;
use containerd_shim_wasm::shim::Compiler;
use std::sync::OnceLock;
use wasmcell::{Engine, EngineConfig, Policy};

/// The engine configuration precompiled layers are compiled for.
pub fn precompile_config() -> EngineConfig {
    EngineConfig {
        fuel: true,
        ..EngineConfig::default()
    }
}

/// The engine precompiled layers are compiled for and loaded into: one per
/// process, so its code and epoch thread are shared.
pub fn precompile_engine() -> anyhow::Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let engine = Engine::new(precompile_config())?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

/// The shim's `Compiler`.
pub struct WasmcellCompiler;

impl Compiler for WasmcellCompiler {
    /// containerd keeps the code under `runwasi.io/precompiled/wasmcell/<hash
    /// of this>`: a new shim build, wasmtime version or engine configuration
    /// gets its own entry instead of code it cannot load. wasmtime checks the
    /// code's compatibility again when the run loads it.
    fn cache_key(&self) -> impl std::hash::Hash {
        (
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            format!("{:?}", precompile_config()),
        )
    }

    /// Compiles each layer that is WebAssembly. A layer that is already
    /// precompiled, or that does not compile, is left as it is (`None`): the
    /// run then loads the original and reports the load error in the
    /// container's log with exit 126, where the pod's owner sees it.
    async fn compile(&self, layers: &[WasmLayer]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let engine = precompile_engine()?;
        Ok(layers.iter().map(|layer| compile_layer(&engine, layer)).collect())
    }
}

fn compile_layer(engine: &Engine, layer: &WasmLayer) -> Option<Vec<u8>> {
    // The image's bytes are untrusted and this is the shim's own process on
    // the node, outside any container: nothing over the default
    // `limits.module-size` is compiled here. Such a layer runs from its
    // original bytes, under the container's policy and its own size limit.
    let max = Policy::deny_all().limits().module_size.value;
    if layer.precompiled || layer.layer.len() as u64 > max {
        return None;
    }
    let program = engine.load_bytes("layer.wasm", &layer.layer).ok()?;
    program.precompile().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_wasm::sandbox::context::WasmLayer;
    use wasmcell::{Sandbox, Status};

    fn layer(bytes: &[u8], precompiled: bool) -> WasmLayer {
        WasmLayer {
            config: serde_json::from_str(
                r#"{"mediaType":"application/wasm","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}"#,
            )
            .unwrap(),
            precompiled,
            layer: bytes.to_vec(),
        }
    }

    const EXIT7: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 7))))"#;

    #[tokio::test]
    async fn layers_compile_once_and_run_from_their_code() {
        let layers = [
            layer(EXIT7.as_bytes(), false),
            layer(b"not wasm", false),
            layer(b"already native", true),
            // Over the default module-size limit: not compiled on the node.
            layer(&[EXIT7.as_bytes(), &vec![b' '; 64 << 20]].concat(), false),
        ];
        let compiled = WasmcellCompiler.compile(&layers).await.unwrap();
        assert_eq!(compiled.len(), 4, "one answer per layer");
        assert!(
            compiled[3].is_none(),
            "an oversized layer is left for the container to refuse"
        );
        assert!(compiled[1].is_none(), "a broken layer is left for the run to report");
        assert!(compiled[2].is_none(), "precompiled layers are not compiled again");
        let code = compiled[0].as_ref().expect("WebAssembly compiles");

        let engine = precompile_engine().unwrap();
        let before = engine.cache_stats().compiled;
        // SAFETY: compiled by the hook a moment ago, in this process.
        let program = unsafe { engine.load_precompiled_bytes("exit7.wasm", code) }.unwrap();
        assert_eq!(engine.cache_stats().compiled, before, "loading code compiles nothing");
        // Policies with and without fuel both run on the precompile engine.
        for policy in [Policy::deny_all(), Policy::builder().fuel(1_000).build().unwrap()] {
            let sandbox = Sandbox::builder()
                .engine(engine.clone())
                .policy(policy)
                .build()
                .unwrap();
            let outcome = sandbox.run_program_async(&program, &[] as &[&str]).await.unwrap();
            assert_eq!(outcome.status, Status::Exited(7));
        }
    }

    /// A precompiled layer records the digest of the WebAssembly it came
    /// from, so a container policy that pins the module (`module.sha256`)
    /// runs the node's precompiled code of that module and refuses another.
    #[tokio::test]
    async fn a_precompiled_layer_meets_the_container_policy_pins() {
        use sha2::{Digest as _, Sha256};
        let compiled = WasmcellCompiler
            .compile(&[layer(EXIT7.as_bytes(), false)])
            .await
            .unwrap();
        let code = compiled[0].as_ref().expect("WebAssembly compiles");
        let digest: String = Sha256::digest(EXIT7.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sandbox = |pin: &str| {
            let policy = Policy::builder().module_sha256(&[pin]).build().unwrap();
            Sandbox::builder()
                .engine(precompile_engine().unwrap())
                .policy(policy)
                .build()
                .unwrap()
        };
        let pinned = sandbox(&digest);
        // SAFETY: compiled by the hook a moment ago, in this process.
        let program = unsafe { pinned.load_precompiled_bytes("exit7.wasm", code) }.unwrap();
        let outcome = pinned.run_program_async(&program, &[] as &[&str]).await.unwrap();
        assert_eq!(outcome.status, Status::Exited(7));
        assert_eq!(outcome.module_sha256.as_deref(), Some(digest.as_str()));

        let other = sandbox(&"0".repeat(64));
        // SAFETY: as above.
        let Err(refused) = (unsafe { other.load_precompiled_bytes("exit7.wasm", code) }) else {
            panic!("a policy pinned to another module ran the layer");
        };
        assert!(
            matches!(refused.kind(), wasmcell::LoadErrorKind::ModulePin { found: Some(found), .. } if *found == digest),
            "{refused}"
        );
    }
}
