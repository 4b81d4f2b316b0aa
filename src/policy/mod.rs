//! Policy files: what a guest may touch and how much it may use.
//!
//! Policies are processed in two stages, like ripgrep's `LowArgs` → `HiArgs`:
//!
//! 1. `PolicyFile` (private) is the TOML as written. It only deserializes; every struct
//!    rejects unknown keys, and values that carry units (sizes, durations) are
//!    parsed here so that a bad value is reported with its line.
//! 2. [`Policy`] is the validated, resolved form: host paths are canonicalized
//!    relative to the file that named them, `extends` chains are merged, defaults
//!    are filled in and contradictions rejected. Only a `Policy` reaches the code
//!    that builds a WASI context or store limits.
//!
//! Between the two, a [`PolicyBuilder`] stacks layers: files first, then the
//! values a program sets in code (or from its command-line flags), as ripgrep
//! overlays flags on its config file. Each value is refused by one check
//! whichever layer it comes from, and the merged layers are resolved once.
//!
//! Everything is denied unless granted. An absent table grants nothing, and every
//! limit except fuel has a finite default (see [`Limits`]).

mod builder;
mod check;
mod cwd;
mod digest;
mod error;
mod file;
mod fs;
mod http;
mod load;
mod model;
mod module;
mod net;
mod overlap;
mod resolve;
mod settings;
mod summary;
mod tls;
mod wall;
mod wasm;

pub use builder::PolicyBuilder;
pub use digest::POLICY_FORMAT;
pub use error::{PolicyError, PolicyErrorKind};
pub use summary::summarize;
// The TOML as written (`PolicyFile` and its tables) stays inside: it is how
// a file is read, not what an embedder holds; `Policy`, `PolicyBuilder` and
// `SETTINGS` are the model.
use file::ClockMode;
pub use file::{Access, ByteSize};
pub use fs::{FileRule, FsDecision, FsOp, FsRules, PathGlob};
pub use http::{
    HttpEntry, HttpPathGlob, InjectedHeader, MAX_SECRET_BYTES, PlaceholderIn, RequestPath, SecretSource, Secrets,
    TemplatePart, template_text,
};
pub use module::{MAX_MODULE_KEYS, MAX_MODULE_PINS, ModuleKey};
pub use net::{HttpAdmit, HttpRule, NetGrants, NetKind, NetRule};
use settings::LimitsFile;
pub use settings::{Flag, Limits, SETTINGS, SettingInfo};
pub use tls::CaFile;
pub use wall::{MAX_LANDLOCK_ABI, WallMode, WallSettings};
pub use wasm::{Proposal, Proposals, UnknownImports};

pub use model::{Clocks, DEFAULT_FROZEN_START, DirGrant, Input, Origin, Output, Policy, Setting};

/// Reads a policy file that must stand alone, to be resolved later and
/// perhaps elsewhere (the containerd shim reads a node's policy before the
/// container it is for exists): a regular file of at most 1 MiB whose own
/// name is not a symbolic link, opened without blocking, that parses as a
/// policy and extends no other file. Resolve the text with
/// [`PolicyBuilder::toml`].
///
/// # Errors
///
/// A [`PolicyError`] naming the path: unreadable, a link or a special
/// file, too large, not a policy (with its line), or a key `extends`.
pub fn read_standalone(path: impl AsRef<std::path::Path>) -> Result<String, PolicyError> {
    load::read_standalone(path.as_ref())
}

pub(crate) use fs::name_regex;

/// Reads a regular file of at most `max` bytes (a link to one is followed),
/// never opening a device or FIFO and never blocking; `what` ends the
/// message for a larger file ("a module may have").
pub(crate) fn read_regular_file(path: &std::path::Path, max: u64, what: &str) -> std::io::Result<Vec<u8>> {
    load::read_bounded_bytes(path, load::Links::Follow, max, what)
}
use model::key_for;
pub(crate) use overlap::DirSite;
