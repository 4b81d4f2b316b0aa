//! Signing modules for `module.signed-by`, for hosts and users without the
//! `wasmsign2` tool: Ed25519 key pairs, and signatures in the format of the
//! WebAssembly tool-conventions signature proposal, embedded in a custom
//! section at the start of the module or detached. Files written by this
//! module and by `wasmsign2` are interchangeable, except that a multi-part
//! signature (`wasmsign2`'s `split`/`sign_multi`) is refused: it would let a
//! module cut short at a part boundary verify.
//!
//! # Example
//!
//! ```
//! use wasmcell::signing;
//!
//! let keys = signing::generate_key_pair();
//! let module = wat::parse_str(r#"(module (func (export "_start")))"#)?;
//! let signed = signing::sign_module(&module, &keys.secret)?;
//! signing::verify_module(&signed, &keys.public, None)?;
//! let mut changed = signed.clone();
//! *changed.last_mut().unwrap() ^= 1;
//! assert!(signing::verify_module(&changed, &keys.public, None).is_err());
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::{Result, anyhow, bail};
use std::io::Cursor;

/// A key pair, each key in `wasmsign2`'s raw format (what `module.signed-by`
/// and `wasmsign2` read; PEM and DER are read too).
pub struct KeyPair {
    /// The secret key: keep it private.
    pub secret: Vec<u8>,
    /// The public key, for `module.signed-by`.
    pub public: Vec<u8>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A new Ed25519 key pair from the operating system's randomness.
pub fn generate_key_pair() -> KeyPair {
    let pair = wasmsign2::KeyPair::generate();
    KeyPair {
        secret: pair.sk.to_bytes(),
        public: pair.pk.to_bytes(),
    }
}

fn secret_key(bytes: &[u8]) -> Result<wasmsign2::SecretKey> {
    wasmsign2::SecretKey::from_any(bytes)
        .map_err(|_| anyhow!("not an Ed25519 secret key in a format wasmsign2 reads (raw, DER or PEM)"))
}

fn public_key(bytes: &[u8]) -> Result<wasmsign2::PublicKey> {
    wasmsign2::PublicKey::from_any(bytes)
        .map_err(|_| anyhow!("not an Ed25519 public key in a format wasmsign2 reads (raw, DER or PEM)"))
}

fn parse(module: &[u8]) -> Result<wasmsign2::Module> {
    wasmsign2::Module::deserialize(&mut Cursor::new(module))
        .map_err(|e| anyhow!("not a WebAssembly module or component ({e})"))
}

/// `module` signed with `secret_key`, the signature embedded (a signature
/// already there is replaced).
///
/// # Errors
///
/// When the key or the module cannot be read.
pub fn sign_module(module: &[u8], secret_key_bytes: &[u8]) -> Result<Vec<u8>> {
    let signed = secret_key(secret_key_bytes)?
        .sign(parse(module)?, None)
        .map_err(|e| anyhow!("cannot sign the module: {e}"))?;
    let mut out = Vec::new();
    signed
        .serialize(&mut out)
        .map_err(|e| anyhow!("cannot write the module: {e}"))?;
    Ok(out)
}

/// A detached signature of `module` (without any signature embedded in it)
/// by `secret_key`, and the module as it must be run: without an embedded
/// signature.
///
/// # Errors
///
/// When the key or the module cannot be read.
pub fn sign_module_detached(module: &[u8], secret_key_bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let signed = secret_key(secret_key_bytes)?
        .sign(parse(module)?, None)
        .map_err(|e| anyhow!("cannot sign the module: {e}"))?;
    let (unsigned, signature) = signed
        .detach_signature()
        .map_err(|e| anyhow!("cannot detach the signature: {e}"))?;
    let mut out = Vec::new();
    unsigned
        .serialize(&mut out)
        .map_err(|e| anyhow!("cannot write the module: {e}"))?;
    Ok((out, signature))
}

/// Refuses a signature that signs the module in parts (`wasmsign2`'s
/// multi-part signatures, made with `split` or `sign_multi`): such a
/// signature signs the hash of every delimited prefix of the module, so a
/// module cut short after any of them still verifies. wasmcell accepts only
/// signatures whose every signed set holds one hash: that of the whole
/// module after the signature, as `sign_module` and `wasmsign2 sign` make
/// them. A signature that cannot be read is left to the verification,
/// which refuses it.
pub(crate) fn check_whole_module(module: &[u8], detached: Option<&[u8]>) -> Result<(), String> {
    let data = match detached {
        Some(signature) => wasmsign2::SignatureData::deserialize(signature).ok(),
        None => {
            let mut reader = Cursor::new(module);
            wasmsign2::Module::init_from_reader(&mut reader)
                .and_then(wasmsign2::Module::iterate)
                .ok()
                .and_then(|mut sections| sections.next())
                .and_then(Result::ok)
                .and_then(|section| match section {
                    wasmsign2::Section::Custom(custom) if custom.is_signature_header() => custom.signature_data().ok(),
                    _ => None,
                })
        }
    };
    match data {
        Some(data) if data.signed_hashes_set.iter().any(|set| set.hashes.len() != 1) => Err(
            "its signature signs the module in parts (a multi-part signature), under which a module cut short would verify too; sign the whole module (`wasmcell sign`, or `wasmsign2 sign` without splitting it)".into(),
        ),
        _ => Ok(()),
    }
}

/// Checks that `module` carries a signature (embedded, or `detached`) that
/// `public_key` verifies, as `module.signed-by` does before a run: a
/// signature of the whole module (see the refusal of multi-part signatures
/// in the module's docs).
///
/// # Errors
///
/// When the module is not signed, no signature verifies with the key (it
/// was signed with another, or changed since), or the key or signature
/// cannot be read.
pub fn verify_module(module: &[u8], public_key_bytes: &[u8], detached: Option<&[u8]>) -> Result<()> {
    let key = public_key(public_key_bytes)?;
    check_whole_module(module, detached).map_err(|why| anyhow!("{why}"))?;
    match key.verify(&mut Cursor::new(module), detached) {
        Ok(()) => Ok(()),
        Err(wasmsign2::WSError::NoSignatures) => bail!("the module is not signed"),
        Err(wasmsign2::WSError::VerificationFailed) => {
            bail!(
                "no signature on the module verifies with this key (it was signed with another key, or changed after it was signed)"
            )
        }
        Err(e) => bail!("the signature cannot be read ({e})"),
    }
}
