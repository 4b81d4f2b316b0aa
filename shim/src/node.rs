//! What the shim learns on the node, before any container exists: the
//! `wasmcell.dev/policy` annotation of the runtime spec it was started for,
//! and the node policy that annotation names.
//!
//! containerd starts a shim with its working directory in the bundle of the
//! container it starts it for, so `./config.json` is that container's OCI
//! runtime spec. Under Kubernetes one shim serves a whole pod and is started
//! for the pod sandbox, whose spec carries the pod's annotations (those the
//! runtime's `pod_annotations` lets through): the annotation is therefore
//! per pod.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The annotation that names a node policy.
pub const POLICY_ANNOTATION: &str = "wasmcell.dev/policy";

/// The environment variable (of containerd, which shims inherit) that
/// overrides [`DEFAULT_POLICY_DIR`].
pub const POLICY_DIR_ENV: &str = "WASMCELL_POLICY_DIR";

/// Where node policies live: `<dir>/<name>.toml`.
pub const DEFAULT_POLICY_DIR: &str = "/etc/wasmcell/policies";

/// The policy the node imposes on this shim's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePolicy {
    /// No annotation: the image's own policy, or deny-all.
    None,
    /// The annotation named this policy; `text` is its TOML.
    Named { name: String, path: PathBuf, text: String },
    /// The annotation could not be honoured; containers must not run.
    Invalid(String),
}

static NODE_POLICY: OnceLock<NodePolicy> = OnceLock::new();
static SPEC_MEMORY_LIMIT: OnceLock<Option<u64>> = OnceLock::new();

/// Reads the annotation and the policy it names, and the spec's memory
/// limit, once per process.
pub fn capture() {
    let dir = std::env::var_os(POLICY_DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_POLICY_DIR), PathBuf::from);
    NODE_POLICY.get_or_init(|| read_node_policy(Path::new("config.json"), &dir));
    SPEC_MEMORY_LIMIT.get_or_init(|| read_memory_limit(Path::new("config.json")));
}

/// The memory limit of the container this shim was started for, when the
/// shim serves that container alone (not a Kubernetes pod, whose shim is
/// started for the pod sandbox): `linux.resources.memory.limit`.
pub fn spec_memory_limit() -> Option<u64> {
    SPEC_MEMORY_LIMIT.get().copied().flatten()
}

fn read_memory_limit(spec: &Path) -> Option<u64> {
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(spec).ok()?).ok()?;
    if spec.pointer("/annotations/io.kubernetes.cri.sandbox-id").is_some() {
        return None;
    }
    spec.pointer("/linux/resources/memory/limit")?
        .as_u64()
        .filter(|&n| n > 0)
}

/// What [`capture`] found; [`NodePolicy::None`] when it did not run.
pub fn node_policy() -> &'static NodePolicy {
    NODE_POLICY.get().unwrap_or(&NodePolicy::None)
}

/// The node policy for the runtime spec at `spec`, looked up in `dir`.
pub fn read_node_policy(spec: &Path, dir: &Path) -> NodePolicy {
    let text = match std::fs::read_to_string(spec) {
        Ok(text) => text,
        // `start` for a new shim, `delete`, `-info`: no bundle, nothing to honour.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return NodePolicy::None,
        Err(e) => return NodePolicy::Invalid(format!("failed to read the runtime spec `{}`: {e}", spec.display())),
    };
    let spec_json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => return NodePolicy::Invalid(format!("failed to parse the runtime spec `{}`: {e}", spec.display())),
    };
    let name = match spec_json.get("annotations").and_then(|a| a.get(POLICY_ANNOTATION)) {
        None => return NodePolicy::None,
        Some(serde_json::Value::String(name)) => name,
        Some(other) => {
            return NodePolicy::Invalid(format!(
                "annotation `{POLICY_ANNOTATION}` must be a string, not `{other}`"
            ));
        }
    };
    if let Err(why) = check_policy_name(name) {
        return NodePolicy::Invalid(why);
    }
    let path = dir.join(format!("{name}.toml"));
    // Read as the library reads any policy file (bounded, never blocking),
    // and more strictly: no link as its own name, and no `extends`, which
    // would be resolved inside the container's image.
    match wasmcell::policy::read_standalone(&path) {
        Ok(text) => NodePolicy::Named {
            name: name.clone(),
            path,
            text,
        },
        Err(err) => NodePolicy::Invalid(format!(
            "annotation `{POLICY_ANNOTATION}: {name}` names a node policy that cannot be used: {err}; install it on the node or fix the annotation ({POLICY_DIR_ENV} sets the directory)"
        )),
    }
}

/// A policy name is a plain file stem: it must not reach outside the policy
/// directory or pick a hidden file.
fn check_policy_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain {
        Ok(())
    } else {
        Err(format!(
            "annotation `{POLICY_ANNOTATION}` must name a node policy with 1 to 64 letters, digits, `-`, `_` or `.` (not first), not `{}`",
            name.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(dir: &Path, annotations: &str) -> PathBuf {
        let spec = dir.join("config.json");
        std::fs::write(
            &spec,
            format!(r#"{{"ociVersion":"1.0.2","annotations":{annotations}}}"#),
        )
        .unwrap();
        spec
    }

    #[test]
    fn the_memory_limit_is_read_only_for_a_lone_container() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("config.json");
        std::fs::write(&spec, r#"{"linux":{"resources":{"memory":{"limit":67108864}}}}"#).unwrap();
        assert_eq!(read_memory_limit(&spec), Some(64 << 20));
        std::fs::write(
            &spec,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"x"},"linux":{"resources":{"memory":{"limit":1}}}}"#,
        )
        .unwrap();
        assert_eq!(read_memory_limit(&spec), None);
    }

    #[test]
    fn no_annotation_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec_with(tmp.path(), r#"{"other":"x"}"#);
        assert_eq!(read_node_policy(&spec, tmp.path()), NodePolicy::None);
        assert_eq!(
            read_node_policy(&tmp.path().join("absent.json"), tmp.path()),
            NodePolicy::None
        );
    }

    #[test]
    fn named_policy_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("web.toml"), "[limits]\nfuel = 5\n").unwrap();
        let spec = spec_with(tmp.path(), r#"{"wasmcell.dev/policy":"web"}"#);
        match read_node_policy(&spec, tmp.path()) {
            NodePolicy::Named { name, text, .. } => {
                assert_eq!(name, "web");
                assert!(text.contains("fuel = 5"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["../etc/passwd", "a/b", "", ".hidden", "x\u{1b}[2J"] {
            let spec = spec_with(
                tmp.path(),
                &format!(r#"{{"wasmcell.dev/policy":{}}}"#, serde_json::json!(name)),
            );
            match read_node_policy(&spec, tmp.path()) {
                NodePolicy::Invalid(why) => assert!(!why.contains('\u{1b}'), "{why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_symlinked_or_extending_policies_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("real.toml"), "").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real.toml"), tmp.path().join("link.toml")).unwrap();
        std::fs::write(tmp.path().join("ext.toml"), "extends = [\"base.toml\"]\n").unwrap();
        for (name, expected) in [
            ("missing", "cannot read policy file"),
            ("link", "cannot read policy file"),
            ("ext", "extends: a policy that stands alone cannot extend other files"),
        ] {
            let spec = spec_with(tmp.path(), &format!(r#"{{"wasmcell.dev/policy":"{name}"}}"#));
            match read_node_policy(&spec, tmp.path()) {
                NodePolicy::Invalid(why) => assert!(why.contains(expected), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
