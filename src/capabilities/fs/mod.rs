//! The guest's files: preopened directories (exactly the policy's grants,
//! opened without following links) and the interposition every filesystem
//! operation passes through before wasmtime-wasi performs it: the rules
//! inside grants, decided by one [`FsGuard`] for preview 1 ([`p1`], shadowed
//! linker functions) and preview 2 ([`p2`], a wrapping view of wasmtime-wasi's
//! `wasi:filesystem` host).

mod guard;
pub(crate) mod p1;
pub(crate) mod p2;
mod quota;
mod resolve;

pub(crate) use guard::FsGuard;

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
