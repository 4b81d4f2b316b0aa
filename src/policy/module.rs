//! `[module]`: which module a policy is for. `module.sha256` pins the SHA-256
//! of the WebAssembly a run under the policy may load, and `module.signed-by`
//! names the public keys one of which must have signed it (the WebAssembly
//! tool-conventions signature format, through `wasmsign2`): any other module
//! is refused before it is compiled. A layer over a pinned layer (a file that
//! `extends` it, a later `--policy`, a builder call) may only narrow either
//! list, so a policy written for one program cannot be stretched to another
//! by extending it.

use super::error::{PolicyError, invalid};
use super::load::{Links, read_bounded_bytes};
use super::model::{Origin, Setting};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// Most digests one `module.sha256` may list: pins name releases, not
/// catalogues, and the bound keeps a hostile policy file's list small.
pub const MAX_MODULE_PINS: usize = 256;

/// Most keys one `module.signed-by` may name.
pub const MAX_MODULE_KEYS: usize = 32;

/// Largest public key file read: a key is 33 bytes raw, about 100 as PEM.
const MAX_KEY_FILE_SIZE: u64 = 16 << 10;

/// The digests `module.sha256` lists, checked: each 64 hexadecimal digits,
/// lower-cased, kept once, in order.
///
/// # Errors
///
/// A message naming the value at fault and what would be accepted.
pub(super) fn check_pins<'a>(written: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, PolicyError> {
    let mut pins: Vec<String> = Vec::new();
    for digest in written {
        let ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            let shown: String = digest.chars().take(80).flat_map(char::escape_default).collect();
            return Err(invalid(format!(
                "module.sha256 must list SHA-256 digests of 64 hexadecimal digits, as `sha256sum module.wasm` prints them; `{shown}` is not one"
            )));
        }
        let digest = digest.to_ascii_lowercase();
        if !pins.contains(&digest) {
            pins.push(digest);
        }
    }
    if pins.is_empty() {
        return Err(invalid(
            "module.sha256 lists no digest, so no module could run; list the SHA-256 of the module this policy is for (`sha256sum module.wasm`), or leave the key out",
        ));
    }
    if pins.len() > MAX_MODULE_PINS {
        return Err(invalid(format!(
            "module.sha256 lists {} digests, over the {MAX_MODULE_PINS} allowed; pin the releases this policy is for",
            pins.len()
        )));
    }
    Ok(pins)
}

/// A public key `module.signed-by` names: an Ed25519 key in `wasmsign2`'s
/// formats (raw, DER or PEM, as `wasmcell keygen` and `wasmsign2 keygen`
/// write them), with the file it was read from.
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleKey {
    path: PathBuf,
    /// The key as `wasmsign2::PublicKey::to_bytes` gives it.
    key: Vec<u8>,
}

impl ModuleKey {
    /// Reads the public key in `path` (a regular file of at most 16 KiB).
    ///
    /// # Errors
    ///
    /// A message naming the file and what is wrong with it.
    pub(super) fn read(path: &Path) -> Result<ModuleKey, String> {
        let bytes = read_bounded_bytes(path, Links::Follow, MAX_KEY_FILE_SIZE, "a public key file may have")
            .map_err(|e| format!("cannot read the public key `{}`: {e}", path.display()))?;
        let key = wasmsign2::PublicKey::from_any(&bytes).map_err(|_| {
            format!(
                "`{}` is not an Ed25519 public key in a format wasmsign2 reads (raw, DER or PEM); make one with `wasmcell keygen`",
                path.display()
            )
        })?;
        Ok(ModuleKey {
            path: path.to_path_buf(),
            key: key.to_bytes(),
        })
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 of the key's bytes, in hexadecimal: how messages and
    /// `wasmcell check` tell keys apart.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(&self.key).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key, for verifying a signature.
    pub(crate) fn public_key(&self) -> wasmsign2::PublicKey {
        wasmsign2::PublicKey::from_bytes(&self.key).expect("the key was read with wasmsign2")
    }
}

impl fmt::Debug for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleKey({} {})", self.path.display(), &self.fingerprint()[..16])
    }
}

/// The keys `module.signed-by` names, each read and kept once.
///
/// # Errors
///
/// A message naming the key file at fault.
pub(super) fn read_keys(paths: impl IntoIterator<Item = PathBuf>) -> Result<Vec<ModuleKey>, PolicyError> {
    let mut keys: Vec<ModuleKey> = Vec::new();
    for path in paths {
        let key = ModuleKey::read(&path).map_err(invalid)?;
        if !keys.iter().any(|k| k.key == key.key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(invalid(
            "module.signed-by names no key, so no module could run; name the public key files of the module's signers, or leave the key out",
        ));
    }
    if keys.len() > MAX_MODULE_KEYS {
        return Err(invalid(format!(
            "module.signed-by names {} keys, over the {MAX_MODULE_KEYS} allowed",
            keys.len()
        )));
    }
    Ok(keys)
}

/// The pins and signers of a layer and everything under it, with the first
/// attempt to widen either (reported when the policy is resolved, where the
/// layers are known to be complete).
#[derive(Debug, Default, Clone)]
pub(super) struct PinLayer {
    pub(super) pins: Option<Setting<Vec<String>>>,
    pub(super) signers: Option<Setting<Vec<ModuleKey>>>,
    /// What a layer listed that the layers under it do not allow, and the
    /// message saying so.
    pub(super) widened: Option<(Origin, String)>,
}

/// `top` over `base`: `top`'s list replaces `base`'s only when every item in
/// it is in `base`'s; otherwise the first widening is kept in `widened`.
fn narrow<T: PartialEq>(
    base: &mut Option<Setting<Vec<T>>>,
    top: Option<Setting<Vec<T>>>,
    widened: &mut Option<(Origin, String)>,
    key: &str,
    show: impl Fn(&T) -> String,
) {
    let Some(top) = top else { return };
    let Some(under) = base else {
        *base = Some(top);
        return;
    };
    match top.value.iter().find(|item| !under.value.contains(item)) {
        None => *base = Some(top),
        Some(extra) => {
            if widened.is_none() {
                let message = format!(
                    "{key} lists {}, which {} does not allow: a policy layer may only narrow what the layers under it list; list a subset of theirs, or leave {key} out to keep theirs",
                    show(extra),
                    under.origin.cite(key)
                );
                *widened = Some((top.origin, message));
            }
        }
    }
}

impl PinLayer {
    /// `top` over `self`, each list narrowed, never widened.
    pub(super) fn overlay(&mut self, top: PinLayer) {
        if self.widened.is_none() {
            self.widened = top.widened;
        }
        narrow(
            &mut self.pins,
            top.pins,
            &mut self.widened,
            "module.sha256",
            String::clone,
        );
        narrow(
            &mut self.signers,
            top.signers,
            &mut self.widened,
            "module.signed-by",
            |k| format!("the key `{}`", k.path.display()),
        );
    }

    /// The resolved pins and signers, or the refusal of a layer that
    /// widened them.
    pub(super) fn resolve(self) -> Result<ResolvedModule, PolicyError> {
        match self.widened {
            None => Ok(ResolvedModule {
                sha256: self.pins,
                signed_by: self.signers,
            }),
            Some((origin, message)) => {
                let key = if message.starts_with("module.sha256") {
                    "module.sha256"
                } else {
                    "module.signed-by"
                };
                let mut e = invalid(message).key(key);
                if let Origin::File { path, line } = origin {
                    e.path = Some(path);
                    e.line = line;
                }
                Err(e)
            }
        }
    }
}

/// `[module]` resolved.
#[derive(Debug)]
pub(super) struct ResolvedModule {
    pub(super) sha256: Option<Setting<Vec<String>>>,
    pub(super) signed_by: Option<Setting<Vec<ModuleKey>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn layer(pins: &[&str], origin: Origin) -> PinLayer {
        PinLayer {
            pins: Some(Setting {
                value: pins.iter().map(|s| s.to_string()).collect(),
                origin,
            }),
            signers: None,
            widened: None,
        }
    }

    #[test]
    fn digests_are_checked_lowered_and_kept_once() {
        let upper = A.to_ascii_uppercase();
        assert_eq!(check_pins([upper.as_str(), A, B]).unwrap(), [A, B]);
        for bad in ["", "abc", &A[1..], &format!("{A}0"), &A.replace('a', "g")] {
            let e = check_pins([bad]).unwrap_err().to_string();
            assert!(e.contains("64 hexadecimal digits"), "{bad}: {e}");
        }
        assert!(check_pins([]).unwrap_err().to_string().contains("lists no digest"));
        let many: Vec<String> = (0..=MAX_MODULE_PINS).map(|i| format!("{i:064x}")).collect();
        assert!(
            check_pins(many.iter().map(String::as_str))
                .unwrap_err()
                .to_string()
                .contains("over the 256")
        );
    }

    #[test]
    fn a_layer_narrows_the_pins_under_it_and_cannot_widen_them() {
        let base = || layer(&[A, B], Origin::Api);
        let mut narrowed = base();
        narrowed.overlay(layer(&[B], Origin::Flag("--x")));
        assert_eq!(narrowed.clone().resolve().unwrap().sha256.unwrap().value, [B]);

        let mut kept = base();
        kept.overlay(PinLayer::default());
        assert_eq!(kept.resolve().unwrap().sha256.unwrap().value, [A, B]);

        let c = "c".repeat(64);
        let mut widened = layer(&[A], Origin::Api);
        widened.overlay(layer(&[A, &c], Origin::file(std::path::Path::new("top.toml"))));
        let e = widened.resolve().unwrap_err();
        assert_eq!(e.path(), Some(std::path::Path::new("top.toml")));
        assert!(
            e.to_string().contains(&format!(
                "lists {c}, which module.sha256 set through the API does not allow"
            )),
            "{e}"
        );

        // A refusal deep in the layers is not lost when a later one narrows.
        let mut deep = layer(&[A], Origin::Api);
        deep.overlay(layer(&[B], Origin::Api));
        deep.overlay(layer(&[A], Origin::Api));
        assert!(deep.resolve().is_err());
    }
}
