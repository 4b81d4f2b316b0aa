//! `wasmcell keygen`, `sign` and `verify`: module signatures for policies
//! with `module.signed-by`, for users without the `wasmsign2` tool (whose
//! files these are interchangeable with).

use crate::app::usage_error;
use anyhow::{Context as _, Result, bail};
use clap::Parser;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use wasmcell::signing;

/// Largest module `sign` and `verify` read.
const MAX_MODULE: u64 = 1 << 30;

/// Largest key or detached signature read.
const MAX_SMALL: u64 = 64 << 10;

/// Make an Ed25519 key pair for signing modules.
///
/// The secret key is written owner-only; neither file may exist already.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  wasmcell keygen --secret-key release.key --public-key release.pub
  wasmcell sign --secret-key release.key app.wasm -o app.signed.wasm
  # in the policy:  [module] signed-by = [\"release.pub\"]")]
pub struct KeygenCommand {
    /// Where to write the secret key (owner-only).
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Where to write the public key, for module.signed-by.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
}

impl KeygenCommand {
    /// Writes both keys.
    ///
    /// # Errors
    ///
    /// When either file exists or cannot be written.
    pub fn execute(self) -> Result<u8> {
        let keys = signing::generate_key_pair();
        write_new(&self.secret_key, &keys.secret, 0o600)?;
        write_new(&self.public_key, &keys.public, 0o644)?;
        Ok(0)
    }
}

/// Sign a module or component with a secret key.
///
/// The signature is embedded in a custom section at the start of the module
/// (a signature already there is replaced), or with --detached written to a
/// file of its own, for `wasmcell run --signature`.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  wasmcell sign --secret-key release.key app.wasm -o app.signed.wasm
  wasmcell sign --secret-key release.key --detached app.wasm.sig app.wasm -o app.wasm")]
pub struct SignCommand {
    /// The secret key (from `wasmcell keygen` or `wasmsign2 keygen`).
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Write the signature to FILE instead of embedding it; the module is
    /// written without any embedded signature.
    #[arg(long, value_name = "FILE")]
    pub detached: Option<PathBuf>,
    /// Where to write the module (may be MODULE itself).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// The module (wasm32-wasip1) or component (wasm32-wasip2) to sign.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
}

impl SignCommand {
    /// Signs and writes.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or the key or module is not one.
    pub fn execute(self) -> Result<u8> {
        let module = read_bounded(&self.module, MAX_MODULE, "MODULE")?;
        let key = read_small(&self.secret_key, "--secret-key")?;
        let context = || {
            format!(
                "cannot sign `{}` with `{}`",
                self.module.display(),
                self.secret_key.display()
            )
        };
        match &self.detached {
            None => {
                let signed = signing::sign_module(&module, &key).with_context(context)?;
                write_replacing(&self.output, &signed)?;
            }
            Some(sig_path) => {
                let (unsigned, signature) = signing::sign_module_detached(&module, &key).with_context(context)?;
                write_replacing(sig_path, &signature)?;
                write_replacing(&self.output, &unsigned)?;
            }
        }
        Ok(0)
    }
}

/// Check that a module or component carries a signature a public key verifies.
///
/// Exits 0 and prints `verified` when it does, 1 with the reason when not.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  wasmcell verify --public-key release.pub app.signed.wasm
  wasmcell verify --public-key release.pub --signature app.wasm.sig app.wasm")]
pub struct VerifyCommand {
    /// The public key (from `wasmcell keygen` or `wasmsign2 keygen`).
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// A detached signature of MODULE (from `wasmcell sign --detached`).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// The module or component to check.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
}

impl VerifyCommand {
    /// Verifies.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or the key is not one.
    pub fn execute(self) -> Result<u8> {
        let module = read_bounded(&self.module, MAX_MODULE, "MODULE")?;
        let key = read_small(&self.public_key, "--public-key")?;
        let signature = match &self.signature {
            Some(path) => Some(read_small(path, "--signature")?),
            None => None,
        };
        match signing::verify_module(&module, &key, signature.as_deref()) {
            Ok(()) => {
                println!(
                    "verified: `{}` is signed by `{}`",
                    self.module.display(),
                    self.public_key.display()
                );
                Ok(0)
            }
            Err(err) => {
                let (module, key) = (self.module.display(), self.public_key.display());
                crate::app::eprint_line(format_args!(
                    "wasmcell: `{module}` does not verify with `{key}`: {err:#}"
                ));
                Ok(1)
            }
        }
    }
}

/// A key or signature file named by `flag`: at most 64 KiB.
///
/// # Errors
///
/// When it cannot be read or is larger.
pub(crate) fn read_small(path: &Path, flag: &str) -> Result<Vec<u8>> {
    read_bounded(path, MAX_SMALL, flag)
}

fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let cannot = || format!("cannot read {what} `{}`", path.display());
    // Looked at before it is opened, so that no FIFO or device is ever
    // opened (opening a FIFO blocks until a writer comes), and again once
    // open, without blocking, in case it was swapped in between.
    let irregular = || usage_error(format!("{what} `{}` is not a regular file", path.display()));
    if !std::fs::metadata(path).with_context(cannot)?.is_file() {
        return Err(irregular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(cannot)?;
    if !file.metadata().with_context(cannot)?.is_file() {
        return Err(irregular());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{what} `{}` is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// Writes a new file with `mode`, refusing one that exists (a key is never
/// overwritten).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create `{}` (an existing key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Writes `path` whole: to a temporary file beside it, then renamed over it.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write `{}`", path.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}
