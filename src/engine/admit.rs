//! Whether a module may be loaded under a policy, decided before it is
//! compiled: `module.sha256` on the digest of its bytes, `module.signed-by`
//! on a signature over them (the WebAssembly tool-conventions format,
//! verified with `wasmsign2`). Decided again when a run starts, on what the
//! program recorded when it was loaded, so a program loaded elsewhere meets
//! the same policy.

use super::LoadErrorKind;
use crate::cache::{self, ContentHash};
use crate::policy::{ModuleKey, Policy};
use std::io::Cursor;
use std::path::Path;

/// What a load knows of a module when it decides whether to load it.
pub(crate) struct Candidate<'a> {
    /// The SHA-256 of its bytes; `None` for precompiled code, which records
    /// none.
    pub(crate) hash: Option<&'a ContentHash>,
    /// Its bytes, when the load read them (not when the compile cache loads
    /// code by a file's stamp, or for precompiled code).
    pub(crate) bytes: Option<&'a [u8]>,
}

/// The fingerprints of the `module.signed-by` keys whose signature on a
/// module verified when it was loaded (empty when the policy asks for none).
pub(crate) type Signers = Vec<String>;

/// A load's decision: a sandbox's [`admit_module`], or [`admit_any`].
pub(crate) type Admit<'a> = &'a dyn Fn(Candidate<'_>) -> Result<Signers, LoadErrorKind>;

/// Admits every module: an engine alone knows no policy.
pub(crate) fn admit_any(_: Candidate<'_>) -> Result<Signers, LoadErrorKind> {
    Ok(Signers::new())
}

/// Admits a module `policy` allows: one whose digest `module.sha256` lists
/// (when it lists any) and that carries a signature, embedded or `detached`,
/// one of the `module.signed-by` keys verifies (when it names any).
/// Precompiled code records neither, so a policy that asks for either
/// refuses it; a candidate without its bytes is refused when a signature is
/// asked for (the caller reads them and asks again).
pub(crate) fn admit_module(
    policy: &Policy,
    candidate: Candidate<'_>,
    detached: Option<&[u8]>,
) -> Result<Signers, LoadErrorKind> {
    check_pins(policy, candidate.hash)?;
    let Some(keys) = policy.module_signed_by() else {
        return Ok(Signers::new());
    };
    let refuse = |reason: String| LoadErrorKind::ModuleSignature {
        reason,
        origin: keys.origin.cite("module.signed-by"),
    };
    let Some(bytes) = candidate.bytes else {
        return Err(refuse(match candidate.hash {
            None => "it is precompiled code, which carries no signature".into(),
            Some(_) => "its signature was not checked when it was loaded".into(),
        }));
    };
    crate::signing::check_whole_module(bytes, detached).map_err(refuse)?;
    let set = wasmsign2::PublicKeySet::new(keys.value.iter().map(ModuleKey::public_key).collect());
    match set.verify(&mut Cursor::new(bytes), detached) {
        Ok(valid) => {
            let valid: Vec<Vec<u8>> = valid.iter().map(|k| k.to_bytes()).collect();
            Ok(keys
                .value
                .iter()
                .filter(|k| valid.contains(&k.public_key().to_bytes()))
                .map(ModuleKey::fingerprint)
                .collect())
        }
        Err(wasmsign2::WSError::NoSignatures) => Err(refuse(match detached {
            None => "it is not signed".into(),
            Some(_) => "the detached signature holds no signature".into(),
        })),
        Err(wasmsign2::WSError::VerificationFailed) => Err(refuse(format!(
            "no signature on it verifies with {} (it was signed with another key, or changed after it was signed)",
            key_list(&keys.value)
        ))),
        Err(other) => Err(refuse(format!("its signature cannot be read ({other})"))),
    }
}

/// Admits a loaded program under `policy` on what it recorded when it was
/// loaded: its digest (`None` for precompiled code) and the signers that
/// verified it then.
pub(crate) fn admit_program(
    policy: &Policy,
    hash: Option<&ContentHash>,
    signers: &[String],
) -> Result<(), LoadErrorKind> {
    check_pins(policy, hash)?;
    let Some(keys) = policy.module_signed_by() else {
        return Ok(());
    };
    if keys.value.iter().any(|k| signers.contains(&k.fingerprint())) {
        return Ok(());
    }
    Err(LoadErrorKind::ModuleSignature {
        reason: match hash {
            None => "it is precompiled code, which carries no signature".into(),
            Some(_) => format!(
                "it was not verified against {} when it was loaded; load it with this sandbox (`Sandbox::load`)",
                key_list(&keys.value)
            ),
        },
        origin: keys.origin.cite("module.signed-by"),
    })
}

/// The signers that verify the module in `path` under `policy` (empty when
/// it asks for none), for a program compiled from it whose digest is
/// `compiled`: a host that compiled once for many policies (the matrix)
/// checks each policy's keys here. The file is read again, at most
/// `max_size` bytes, and must still hold the bytes that were compiled.
pub(crate) fn signers_of_file(
    policy: &Policy,
    path: &Path,
    max_size: u64,
    compiled: Option<&ContentHash>,
) -> Result<Signers, LoadErrorKind> {
    if policy.module_signed_by().is_none() {
        return Ok(Signers::new());
    }
    // Read as a policy's files are: a regular file, opened without blocking
    // (the path may have become a FIFO since it was compiled).
    let bytes = crate::policy::read_regular_file(path, max_size, "a module may have (limits.module-size)")
        .map_err(LoadErrorKind::Read)?;
    let hash = cache::content_hash(&bytes);
    if compiled != Some(&hash) {
        let keys = policy.module_signed_by().expect("checked above");
        return Err(LoadErrorKind::ModuleSignature {
            reason:
                "the file changed after it was compiled, so its signature cannot be checked on the code that would run"
                    .into(),
            origin: keys.origin.cite("module.signed-by"),
        });
    }
    admit_module(
        policy,
        Candidate {
            hash: Some(&hash),
            bytes: Some(&bytes),
        },
        None,
    )
}

fn check_pins(policy: &Policy, hash: Option<&ContentHash>) -> Result<(), LoadErrorKind> {
    check_pins_of(policy, hash, false)
}

/// [`check_pins`], saying in a refusal whether the program is precompiled.
pub(crate) fn check_pins_of(
    policy: &Policy,
    hash: Option<&ContentHash>,
    precompiled: bool,
) -> Result<(), LoadErrorKind> {
    let Some(pins) = policy.module_sha256() else {
        return Ok(());
    };
    let found = hash.map(|h| cache::hex(h));
    match &found {
        Some(digest) if policy.admits_module(digest) => Ok(()),
        _ => Err(LoadErrorKind::ModulePin {
            found,
            precompiled,
            allowed: pins.value.clone(),
            origin: pins.origin.cite("module.sha256"),
        }),
    }
}

fn key_list(keys: &[ModuleKey]) -> String {
    let names: Vec<String> = keys.iter().map(|k| format!("`{}`", k.path().display())).collect();
    match names.len() {
        1 => format!("the key {}", names[0]),
        _ => format!("any of the keys {}", names.join(", ")),
    }
}
