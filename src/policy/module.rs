//! `[module]`: which module a policy is for. `module.sha256` pins the SHA-256
//! of the WebAssembly a run under the policy may load: any other module is
//! refused before it is compiled. A layer over a pinned layer (a file that
//! `extends` it, a later `--policy`, a builder call) may only narrow the list,
//! so a policy written for one program cannot be stretched to another by
//! extending it.

use super::error::{PolicyError, invalid};
use super::model::{Origin, Setting};

/// Most digests one `module.sha256` may list: pins name releases, not
/// catalogues, and the bound keeps a hostile policy file's list small.
pub const MAX_MODULE_PINS: usize = 256;

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

/// The pins of a layer and everything under it, with the first attempt to
/// widen them (reported when the policy is resolved, where the layers are
/// known to be complete).
#[derive(Debug, Default, Clone)]
pub(super) struct PinLayer {
    pub(super) pins: Option<Setting<Vec<String>>>,
    /// A digest a layer listed that the layers under it do not allow, and
    /// the message saying so.
    pub(super) widened: Option<(Origin, String)>,
}

impl PinLayer {
    /// `top` over `self`: `top`'s list replaces this one only when every
    /// digest in it is in this one.
    pub(super) fn overlay(&mut self, top: PinLayer) {
        if self.widened.is_none() {
            self.widened = top.widened;
        }
        let Some(top) = top.pins else { return };
        let Some(base) = &self.pins else {
            self.pins = Some(top);
            return;
        };
        match top.value.iter().find(|d| !base.value.contains(d)) {
            None => self.pins = Some(top),
            Some(extra) => {
                if self.widened.is_none() {
                    let message = format!(
                        "module.sha256 lists {extra}, which {} does not allow: a policy layer may only narrow the modules the layers under it pin; list a subset of theirs, or leave module.sha256 out to keep theirs",
                        base.origin.cite("module.sha256")
                    );
                    self.widened = Some((top.origin, message));
                }
            }
        }
    }

    /// The resolved pins, or the refusal of a layer that widened them.
    pub(super) fn resolve(self) -> Result<Option<Setting<Vec<String>>>, PolicyError> {
        match self.widened {
            None => Ok(self.pins),
            Some((origin, message)) => {
                let mut e = invalid(message).key("module.sha256");
                if let Origin::File { path, line } = origin {
                    e.path = Some(path);
                    e.line = line;
                }
                Err(e)
            }
        }
    }
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
        assert_eq!(narrowed.clone().resolve().unwrap().unwrap().value, [B]);

        let mut kept = base();
        kept.overlay(PinLayer::default());
        assert_eq!(kept.resolve().unwrap().unwrap().value, [A, B]);

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
