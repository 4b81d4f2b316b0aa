//! The policy's digest: the SHA-256 of its canonical form, which every report
//! carries so that a log line proves which rules a program ran under.
//!
//! The canonical form is a JSON document of what the resolved policy decides,
//! each value as it is in effect: the limits, every grant with its rules (host
//! paths canonical), the environment, stdio, clocks, network entries, Wasm
//! proposals, unknown imports, the wall's settings and the module pins and
//! signer keys (by fingerprint). Where a value was set (which file, line or
//! flag) is not part of it, so splitting a policy into layers or moving a
//! rule between files keeps the digest; any change to what is granted
//! changes it. The document names its format (`wasmcell-policy/1`); a later
//! wasmcell that words a value differently changes the format name with it.

use super::Policy;
use super::model::Setting;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The canonical form's format, part of the form itself.
pub const POLICY_FORMAT: &str = "wasmcell-policy/1";

impl Policy {
    /// The canonical form the digest is taken of (compact JSON, keys in a
    /// fixed order): see [`Policy::sha256`].
    pub fn canonical(&self) -> String {
        let debug = |v: &dyn std::fmt::Debug| Value::String(format!("{v:?}"));
        let limits: serde_json::Map<String, Value> = self
            .limits
            .described()
            .into_iter()
            .map(|(name, value, _)| (name.to_string(), Value::String(value)))
            .collect();
        let dirs: Vec<Value> = self
            .dirs
            .iter()
            .map(|d| {
                json!({
                    "host": d.host.to_string_lossy(),
                    "guest": d.guest,
                    "access": debug(&d.access),
                    "rules": debug(&d.rules),
                })
            })
            .collect();
        let mut proposals: Vec<String> = self.proposals.iter().map(|p| p.value.to_string()).collect();
        proposals.sort();
        let keys = self.module_signed_by.as_ref().map(|keys| {
            let mut prints: Vec<String> = keys.value.iter().map(|k| k.fingerprint()).collect();
            prints.sort();
            prints
        });
        let pins = self.module_sha256.as_ref().map(|pins| {
            let mut pins = pins.value.clone();
            pins.sort();
            pins
        });
        json!({
            "format": POLICY_FORMAT,
            "limits": limits,
            "fs": { "dirs": dirs, "cwd": self.cwd },
            "env": { "vars": self.env_vars, "inherit": self.env_inherit },
            "stdio": { "stdin": debug(&self.stdin), "stdout": debug(&self.stdout), "stderr": debug(&self.stderr) },
            "clocks": debug(&self.clocks),
            "random": { "seed": self.seed },
            "net": debug(&self.net),
            "wasm": { "proposals": proposals, "unknown-imports": debug(&self.unknown_imports.value) },
            "wall": {
                "mode": debug(&self.wall.mode.value),
                "landlock-abi": self.wall.landlock_abi.as_ref().map(|s: &Setting<u32>| s.value),
            },
            "module": { "sha256": pins, "signed-by": keys },
        })
        .to_string()
    }

    /// The SHA-256 of the policy's [canonical form](Policy::canonical), in
    /// lowercase hexadecimal: what a report's `policy_sha256` and
    /// `wasmcell check` show. Equal policies have equal digests however
    /// their layers were written.
    pub fn sha256(&self) -> String {
        Sha256::digest(self.canonical().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_what_is_granted_not_where_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("base.toml"), "[limits]\nfuel = 1000\n").unwrap();
        std::fs::write(
            d.join("layered.toml"),
            "extends = [\"base.toml\"]\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("flat.toml"),
            "# the same rules in one file\n[limits]\nfuel = 1000\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n",
        )
        .unwrap();
        let layered = Policy::from_file(d.join("layered.toml")).unwrap();
        let flat = Policy::from_file(d.join("flat.toml")).unwrap();
        assert_eq!(layered.sha256(), flat.sha256());
        assert!(layered.canonical().starts_with("{\"format\":\"wasmcell-policy/1\""));

        let changed = [
            "[limits]\nfuel = 1001\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n",
            "[limits]\nfuel = 1000\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-write\"\n",
            "[limits]\nfuel = 1000\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/d\"\naccess = \"read-only\"\n",
            "[limits]\nfuel = 1000\n[env]\nvars = { A = \"1\" }\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n",
        ];
        for text in changed {
            std::fs::write(d.join("other.toml"), text).unwrap();
            let other = Policy::from_file(d.join("other.toml")).unwrap();
            assert_ne!(other.sha256(), flat.sha256(), "{text}");
        }
        assert_ne!(Policy::deny_all().sha256(), flat.sha256());
        assert_eq!(Policy::deny_all().sha256(), Policy::builder().build().unwrap().sha256());
    }
}
