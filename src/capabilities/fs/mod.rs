//! The guest's files: preopened directories (exactly the policy's grants,
//! opened without following links) and the interposition every filesystem
//! operation passes through before wasmtime-wasi performs it: the rules
//! inside grants, decided by one [`FsGuard`] and carried through one call
//! path ([`call`]: decide, perform, settle) for preview 1 ([`p1`], shadowed
//! linker functions) and preview 2 ([`p2`], a wrapping view of wasmtime-wasi's
//! `wasi:filesystem` host), which only translate their arguments and answers.

mod call;
mod guard;
pub(crate) mod p1;
pub(crate) mod p2;
mod quota;
mod resolve;

pub(crate) use guard::FsGuard;

/// What a stat in a grant that hides paths answers for a folder's size and
/// any entry's link count. Both count a folder's entries, hidden ones too
/// (a hidden subfolder's `..` adds a link, a hidden name adds bytes on
/// tmpfs, a hidden hard link makes a visible file's count 2), so one fixed
/// answer is given whatever the disk says: a link count of 1 is what
/// filesystems without link counts report and what `find`/`fts` take as
/// "unknown", and 4096 bytes is the size a small folder has on ext4.
/// An open file already unlinked keeps its count of 0.
const FOLDER_SIZE: u64 = 4096;
const MAX_LINK_COUNT: u64 = 1;

use super::denial::Records;
use crate::policy::{Access, Policy};
use anyhow::{Context as _, Result};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub(super) fn add_preopens(builder: &mut WasiCtxBuilder, policy: &Policy, denials: &Records) -> Result<FsGuard> {
    let mut guard = FsGuard::new(denials.clone());
    for dir in policy.dirs() {
        let perms = match dir.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        // wasmtime-wasi only takes a path, which it opens following links. A
        // guest with a read-write grant around this one (or in an earlier
        // run) may have replaced a folder on the way with a link, so open
        // the canonical path ourselves without following any, then hand
        // wasmtime-wasi the descriptor's own path: reopening
        // `/proc/self/fd/N` yields that same directory, not whatever the
        // name points to now. From here on the guest reaches files only
        // through wasmtime-wasi's handle. The guard keeps ours to follow
        // links itself, inside that same directory.
        let fd = crate::hostfs::open_dir(&dir.host, &format!("directory granted at `{}`", dir.guest))?;
        builder
            .preopened_dir(crate::hostfs::reopen_path(&fd, &dir.host), &dir.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to open preopen `{}`", dir.host.display()))?;
        guard.add_grant(dir, cap_std::fs::Dir::from_std_file(std::fs::File::from(fd)));
    }
    Ok(guard)
}
