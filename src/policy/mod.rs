//! Policy files: what a guest may touch and how much it may use.
//!
//! Policies are processed in two stages, like ripgrep's `LowArgs` → `HiArgs`:
//!
//! 1. [`PolicyFile`] is the TOML as written. It only deserializes; every struct
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
mod describe;
mod error;
mod file;
mod fs;
mod load;
mod model;
mod net;
mod overlap;
mod resolve;
mod settings;
mod wall;
mod wasm;

pub use builder::PolicyBuilder;
pub use describe::describe;
pub use error::{PolicyError, PolicyErrorKind};
pub use file::{
    Access, ByteSize, ClockMode, ClocksFile, DirFile, EnvFile, FsFile, HumanDuration, InputSpec, OutputSpec,
    PolicyFile, RandomFile, StdioFile, WallFile, WasmFile,
};
pub use fs::{FileRule, FsDecision, FsOp, FsRules, PathGlob};
pub use net::{HttpRule, NetGrants, NetKind, NetRule};
pub use settings::{Flag, Limits, LimitsFile, SETTINGS, SettingInfo};
pub use wall::{MAX_LANDLOCK_ABI, WallMode, WallSettings};
pub use wasm::{Proposal, Proposals};

pub use model::{Clocks, DEFAULT_FROZEN_START, DirGrant, Input, Origin, Output, Policy, Setting};

pub(crate) use fs::name_regex;
use model::key_for;
pub(crate) use overlap::DirSite;
