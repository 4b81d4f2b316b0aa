//! Preview 1 filesystem calls, checked by the run's [`FsGuard`] and then
//! performed by wasmtime-wasi's own implementation (its generated
//! `wasi_snapshot_preview1` functions, which take raw guest arguments).
//! The engine's linker shadows each function with one of these; every one
//! takes the guest's memory and the store's WASI context and guard.
//!
//! Besides the rules, some answers are corrected: `rmdir("dir/")` succeeds as
//! POSIX says (wasmtime-wasi 48 answers `EINVAL`), and in a grant that hides
//! paths a listing leaves out the entries it hides (numbering the rest
//! without gaps) and a stat does not count them.

use super::FsGuard;
use super::guard::{Checked, Refusal};
use super::quota::Quota;
use crate::policy::FsOp;
use std::sync::Arc;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1 as wasi;
use wiggle::GuestMemory;

/// Errno values of wasi_snapshot_preview1.
mod errno {
    pub(super) const ACCES: i32 = 2;
    pub(super) const FAULT: i32 = 21;
    pub(super) const NAMETOOLONG: i32 = 37;
    pub(super) const NOENT: i32 = 44;
    pub(super) const NOSPC: i32 = 51;
    pub(super) const NOTDIR: i32 = 54;
    pub(super) const PERM: i32 = 63;
    pub(super) const ROFS: i32 = 69;
    pub(super) const XDEV: i32 = 75;
    pub(super) const NOTCAPABLE: i32 = 76;
}

const LOOKUP_SYMLINK_FOLLOW: i32 = 1;
const OFLAGS_CREAT: i32 = 1;
const OFLAGS_EXCL: i32 = 4;
const OFLAGS_TRUNC: i32 = 8;
const RIGHTS_FD_WRITE: i64 = 1 << 6;
const FDFLAGS_APPEND: i32 = 1;
const WHENCE_SET: i32 = 0;
const WHENCE_END: i32 = 2;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_SYMBOLIC_LINK: u8 = 7;
/// A filestat's size in guest memory, and where in it the file type, link
/// count and size are.
const FILESTAT_SIZE: usize = 64;
const FILESTAT_TYPE: usize = 16;
const FILESTAT_NLINK: usize = 24;
const FILESTAT_BYTES: usize = 32;
const FILESTAT_ALIGN: usize = 8;

/// Raw guest arguments: a path is a pointer and a length.
type Ptr = i32;

fn errno_of(refusal: Refusal) -> i32 {
    match refusal {
        Refusal::NotFound => errno::NOENT,
        Refusal::Denied => errno::ACCES,
        Refusal::Full => errno::NOSPC,
        Refusal::TooLong => errno::NAMETOOLONG,
        Refusal::CrossDevice => errno::XDEV,
    }
}

/// The guest string at `ptr`, or `None` when it is out of bounds or not
/// UTF-8 (wasmtime-wasi then refuses the call itself).
fn read_path(mem: &[u8], ptr: Ptr, len: i32) -> Option<String> {
    let start = ptr as u32 as usize;
    let bytes = mem.get(start..start.checked_add(len as u32 as usize)?)?;
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

fn read_u32(mem: &[u8], ptr: Ptr) -> Option<u32> {
    let at = ptr as u32 as usize;
    Some(u32::from_le_bytes(mem.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Counts and audits a call the guard let through: what wasmtime-wasi
/// refused on its own (by the errno it gave) as a refusal, the rest as uses.
fn after(guard: &FsGuard, rc: i32, base: i32, path: Option<&str>, op: FsOp) -> i32 {
    // Any other answer (a missing file, say) is a use the policy allowed.
    match (rc, path) {
        (errno::ACCES | errno::PERM | errno::ROFS | errno::NOTCAPABLE, Some(path)) => {
            guard.refused_by_wasi(base as u32, path, op);
        }
        (_, Some(path)) => guard.allowed(base as u32, path, op),
        (_, None) => {}
    }
    rc
}

/// Checks `op` on the path at `ptr`, giving the path read, or the errno
/// that refuses the call.
fn check(
    guard: &FsGuard,
    mem: &[u8],
    fd: i32,
    (ptr, len): (Ptr, i32),
    follow: bool,
    op: FsOp,
) -> Result<Option<String>, i32> {
    let Some(path) = read_path(mem, ptr, len) else {
        return Ok(None);
    };
    guard.check(fd as u32, &path, follow, op).map_err(errno_of)?;
    Ok(Some(path))
}

/// As [`check`], for an operation creating what the path names: also
/// charged against the grant's `max-files` (see [`settle`]).
fn check_create(
    guard: &FsGuard,
    mem: &[u8],
    fd: i32,
    path: (Ptr, i32),
    op: FsOp,
) -> Result<(Option<String>, Option<Arc<Quota>>), i32> {
    let Some(text) = read_path(mem, path.0, path.1) else {
        return Ok((None, None));
    };
    let checked = match op {
        FsOp::Symlink => guard.check_symlink(fd as u32, &text),
        op => guard.check(fd as u32, &text, false, op),
    }
    .map_err(errno_of)?;
    // Creating over an existing entry fails (`EEXIST`) and is refunded.
    let charged = guard.charge_create(&checked, false).map_err(errno_of)?;
    Ok((Some(text), charged))
}

/// [`after`], also giving back a creation charged for a call that failed.
fn settle(guard: &FsGuard, rc: i32, charged: Option<Arc<Quota>>, base: i32, path: Option<&str>, op: FsOp) -> i32 {
    if rc != 0 {
        charged.inspect(|q| q.refund_file());
    }
    after(guard, rc, base, path, op)
}

fn open_op(oflags: i32, rights: i64, fdflags: i32) -> FsOp {
    if oflags & OFLAGS_CREAT != 0 {
        FsOp::Create
    } else if oflags & OFLAGS_TRUNC != 0 || rights & RIGHTS_FD_WRITE != 0 || fdflags & FDFLAGS_APPEND != 0 {
        FsOp::Write
    } else {
        FsOp::Read
    }
}

/// `path_open`'s raw arguments: `fd, dirflags, path, path_len, oflags,
/// rights_base, rights_inheriting, fdflags, opened_fd`.
type OpenArgs = (i32, i32, Ptr, i32, i32, i64, i64, i32, Ptr);

pub(crate) async fn path_open(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    args: OpenArgs,
) -> wasmtime::Result<i32> {
    let (fd, dirflags, ptr, len, oflags, base, _, fdflags, out) = args;
    let op = open_op(oflags, base, fdflags);
    let follow = dirflags & LOOKUP_SYMLINK_FOLLOW != 0;
    let path = read_path(mem, ptr, len);
    if let Some(p) = &path
        && let Some(rc) = open_by_name(ctx, guard, mem, args, p, op).await?
    {
        return Ok(rc);
    }
    let checked = match &path {
        Some(p) => match guard.check(fd as u32, p, follow, op) {
            Ok(c) => Some(c),
            Err(r) => return Ok(errno_of(r)),
        },
        None => None,
    };
    let mut charged = None;
    if let (Some(c), Some(p), FsOp::Create) = (&checked, &path, op)
        && guard.counts_files(c)
    {
        let exists = match c.exists {
            Some(exists) => exists,
            None => stat_type(ctx, fd, dirflags, p).await?.is_ok(),
        };
        charged = match guard.charge_create(c, exists) {
            Err(r) => return Ok(errno_of(r)),
            Ok(q) => q,
        };
    }
    let rc = wasi_path_open(ctx, mem, args).await?;
    let rc = after(guard, rc, fd, path.as_deref(), op);
    if rc != 0 {
        charged.inspect(|q| q.refund_file());
        return Ok(rc);
    }
    opened(guard, mem, out, checked, op, fdflags);
    Ok(rc)
}

/// `path_open` of `path` when it is one name its grant's rules decide by
/// the name (see `FsGuard::check_name`): opened without following a link
/// there. `Some` with the answer when that settles it; `None` when the
/// full way must check and open it as the guest asked (a link at the name,
/// an existing name for a counted creation, or any other failure).
async fn open_by_name(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    args: OpenArgs,
    path: &str,
    op: FsOp,
) -> wasmtime::Result<Option<i32>> {
    let (fd, dirflags, ptr, len, oflags, base, inheriting, fdflags, out) = args;
    let Some(named) = guard.open_name(fd as u32, path, op) else {
        return Ok(None);
    };
    let no_follow = dirflags & !LOOKUP_SYMLINK_FOLLOW;
    let oflags_tried = if named.exclusive { oflags | OFLAGS_EXCL } else { oflags };
    let tried = (fd, no_follow, ptr, len, oflags_tried, base, inheriting, fdflags, out);
    let rc = wasi_path_open(ctx, mem, tried).await?;
    if rc == 0 {
        after(guard, rc, fd, Some(path), op);
        opened(guard, mem, out, Some(named.checked), op, fdflags);
        return Ok(Some(rc));
    }
    // Without following, nothing else differs: the answer stands.
    if dirflags & LOOKUP_SYMLINK_FOLLOW == 0 && !named.exclusive {
        return Ok(Some(after(guard, rc, fd, Some(path), op)));
    }
    named.charged.inspect(|q| q.refund_file());
    Ok(None)
}

/// wasmtime-wasi's own `path_open`, on the guest's memory.
async fn wasi_path_open(ctx: &mut WasiP1Ctx, mem: &mut [u8], args: OpenArgs) -> wasmtime::Result<i32> {
    let (fd, dirflags, ptr, len, oflags, base, inheriting, fdflags, out) = args;
    let mut memory = GuestMemory::Unshared(mem);
    wasi::path_open(
        ctx,
        &mut memory,
        fd,
        dirflags,
        ptr,
        len,
        oflags,
        base,
        inheriting,
        fdflags,
        out,
    )
    .await
}

/// After `path_open` opened the fd written at `out` where `checked` says:
/// starts counting its writes below a grant with a byte quota, and keeps
/// where it points.
fn opened(guard: &mut FsGuard, mem: &[u8], out: Ptr, checked: Option<Checked>, op: FsOp, fdflags: i32) {
    if let Some(new) = read_u32(mem, out) {
        let loc = checked.and_then(|c| c.loc);
        if let Some(loc) = loc.as_ref().filter(|_| op != FsOp::Read) {
            guard.track_write(new, loc, fdflags & FDFLAGS_APPEND != 0);
        }
        guard.opened(new, loc);
    }
}

/// A filestat (at the start of `stat`) as a grant that hides paths gives it:
/// no count of a folder's entries, hidden ones included (see
/// `fs::FOLDER_SIZE`).
fn mask_filestat(stat: &mut [u8]) {
    let Some(stat) = stat.get_mut(..FILESTAT_SIZE) else {
        return;
    };
    let field = |stat: &[u8], at: usize| u64::from_le_bytes(stat[at..at + 8].try_into().unwrap_or_default());
    let nlink = field(stat, FILESTAT_NLINK).min(super::MAX_LINK_COUNT);
    stat[FILESTAT_NLINK..FILESTAT_NLINK + 8].copy_from_slice(&nlink.to_le_bytes());
    if stat[FILESTAT_TYPE] == FILETYPE_DIRECTORY {
        stat[FILESTAT_BYTES..FILESTAT_BYTES + 8].copy_from_slice(&super::FOLDER_SIZE.to_le_bytes());
    }
}

/// After a stat that succeeded into the guest's `buf`: masked when `fd`'s
/// grant hides paths (no system call either way).
fn stat_answered(guard: &FsGuard, mem: &mut [u8], fd: i32, buf: Ptr, rc: i32) -> i32 {
    if rc == 0 && guard.hides(fd as u32) {
        let at = buf as u32 as usize;
        if let Some(stat) = mem.get_mut(at..) {
            mask_filestat(stat);
        }
    }
    rc
}

pub(crate) async fn fd_filestat_get(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, buf): (i32, Ptr),
) -> wasmtime::Result<i32> {
    let rc = wasi::fd_filestat_get(ctx, &mut GuestMemory::Unshared(mem), fd, buf).await?;
    Ok(stat_answered(guard, mem, fd, buf, rc))
}

pub(crate) async fn path_filestat_get(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, flags, ptr, len, buf): (i32, i32, Ptr, i32, Ptr),
) -> wasmtime::Result<i32> {
    let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
    if let Some(path) = read_path(mem, ptr, len).filter(|p| guard.check_name(fd as u32, p, FsOp::Stat).is_some()) {
        // Decided by the name, so stat the name itself (see
        // `FsGuard::check_name`); a link there is followed the full way.
        let at = buf as u32 as usize;
        match filestat(ctx, fd, 0, &path).await? {
            Ok(mut stat) if !follow || stat[FILESTAT_TYPE] != FILETYPE_SYMBOLIC_LINK => {
                if guard.hides(fd as u32) {
                    mask_filestat(&mut stat);
                }
                // A buffer out of bounds or misaligned is left to
                // wasmtime-wasi to answer (it traps).
                if let Some(out) = mem
                    .get_mut(at..at.saturating_add(FILESTAT_SIZE))
                    .filter(|_| at.is_multiple_of(FILESTAT_ALIGN))
                {
                    out.copy_from_slice(&stat);
                    return Ok(after(guard, 0, fd, Some(&path), FsOp::Stat));
                }
            }
            Err(rc) if !follow => return Ok(after(guard, rc, fd, Some(&path), FsOp::Stat)),
            _ => {}
        }
    }
    let path = match check(guard, mem, fd, (ptr, len), follow, FsOp::Stat) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let rc = wasi::path_filestat_get(ctx, &mut GuestMemory::Unshared(mem), fd, flags, ptr, len, buf).await?;
    let rc = stat_answered(guard, mem, fd, buf, rc);
    Ok(after(guard, rc, fd, path.as_deref(), FsOp::Stat))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn path_filestat_set_times(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, flags, ptr, len, atim, mtim, fst): (i32, i32, Ptr, i32, i64, i64, i32),
) -> wasmtime::Result<i32> {
    let path = match check(
        guard,
        mem,
        fd,
        (ptr, len),
        flags & LOOKUP_SYMLINK_FOLLOW != 0,
        FsOp::Write,
    ) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let mut memory = GuestMemory::Unshared(mem);
    let rc = wasi::path_filestat_set_times(ctx, &mut memory, fd, flags, ptr, len, atim, mtim, fst).await?;
    Ok(after(guard, rc, fd, path.as_deref(), FsOp::Write))
}

pub(crate) async fn path_readlink(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, ptr, len, buf, buf_len, used): (i32, Ptr, i32, Ptr, i32, Ptr),
) -> wasmtime::Result<i32> {
    let path = match check(guard, mem, fd, (ptr, len), false, FsOp::Read) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let rc = wasi::path_readlink(ctx, &mut GuestMemory::Unshared(mem), fd, ptr, len, buf, buf_len, used).await?;
    Ok(after(guard, rc, fd, path.as_deref(), FsOp::Read))
}

pub(crate) async fn path_create_directory(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, ptr, len): (i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    let (path, charged) = match check_create(guard, mem, fd, (ptr, len), FsOp::Create) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let rc = wasi::path_create_directory(ctx, &mut GuestMemory::Unshared(mem), fd, ptr, len).await?;
    Ok(settle(guard, rc, charged, fd, path.as_deref(), FsOp::Create))
}

pub(crate) async fn path_unlink_file(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, ptr, len): (i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    // A link at the name is removed, not followed: its name decides.
    let path = match read_path(mem, ptr, len).filter(|p| guard.check_name(fd as u32, p, FsOp::Remove).is_some()) {
        Some(p) => Some(p),
        None => match check(guard, mem, fd, (ptr, len), false, FsOp::Remove) {
            Ok(p) => p,
            Err(e) => return Ok(e),
        },
    };
    let rc = wasi::path_unlink_file(ctx, &mut GuestMemory::Unshared(mem), fd, ptr, len).await?;
    Ok(after(guard, rc, fd, path.as_deref(), FsOp::Remove))
}

/// `rmdir`, with POSIX's answer for a trailing slash: `"dir/"` removes the
/// directory, `"file/"` is `ENOTDIR`.
pub(crate) async fn path_remove_directory(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, ptr, len): (i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    let path = match check(guard, mem, fd, (ptr, len), false, FsOp::Remove) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let mut len = len;
    if let Some(p) = path.as_deref().filter(|p| p.len() > 1 && p.ends_with('/')) {
        let trimmed = p.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(after(guard, errno::PERM, fd, Some(p), FsOp::Remove));
        }
        match stat_type(ctx, fd, 0, trimmed).await? {
            Ok(FILETYPE_DIRECTORY) => len = trimmed.len() as i32,
            Ok(_) => return Ok(errno::NOTDIR),
            Err(e) => return Ok(e),
        }
    }
    let rc = wasi::path_remove_directory(ctx, &mut GuestMemory::Unshared(mem), fd, ptr, len).await?;
    Ok(after(guard, rc, fd, path.as_deref(), FsOp::Remove))
}

/// The size of open file `fd`, through wasmtime-wasi with a scratch memory.
async fn fd_size(ctx: &mut WasiP1Ctx, fd: u32) -> wasmtime::Result<Option<u64>> {
    let mut scratch = [0u8; 64];
    let rc = wasi::fd_filestat_get(ctx, &mut GuestMemory::Unshared(&mut scratch), fd as i32, 0).await?;
    Ok((rc == 0).then(|| u64::from_le_bytes(scratch[32..40].try_into().unwrap_or_default())))
}

/// The filestat of `path` (links followed as `lookup` says), through
/// wasmtime-wasi with a scratch memory of our own.
async fn filestat(
    ctx: &mut WasiP1Ctx,
    fd: i32,
    lookup: i32,
    path: &str,
) -> wasmtime::Result<Result<[u8; FILESTAT_SIZE], i32>> {
    // The filestat first, then the path.
    let mut scratch = vec![0u8; FILESTAT_SIZE + path.len()];
    scratch[FILESTAT_SIZE..].copy_from_slice(path.as_bytes());
    let mut memory = GuestMemory::Unshared(&mut scratch);
    let (at, len) = (FILESTAT_SIZE as i32, path.len() as i32);
    let rc = wasi::path_filestat_get(ctx, &mut memory, fd, lookup, at, len, 0).await?;
    let mut stat = [0u8; FILESTAT_SIZE];
    stat.copy_from_slice(&scratch[..FILESTAT_SIZE]);
    Ok(if rc == 0 { Ok(stat) } else { Err(rc) })
}

/// The file type of `path` (links followed as `lookup` says).
async fn stat_type(ctx: &mut WasiP1Ctx, fd: i32, lookup: i32, path: &str) -> wasmtime::Result<Result<u8, i32>> {
    Ok(filestat(ctx, fd, lookup, path).await?.map(|stat| stat[FILESTAT_TYPE]))
}

pub(crate) async fn path_rename(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, Ptr, i32, i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    if let (Some(o), Some(n)) = (&old, &new)
        && let Err(r) = guard.check_move((fd as u32, o, false), (new_fd as u32, n), FsOp::Rename)
    {
        return Ok(errno_of(r));
    }
    let mut memory = GuestMemory::Unshared(mem);
    let rc = wasi::path_rename(ctx, &mut memory, fd, old_ptr, old_len, new_fd, new_ptr, new_len).await?;
    Ok(after(guard, rc, fd, old.as_deref(), FsOp::Rename))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn path_link(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, i32, Ptr, i32, i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
    let mut charged = None;
    if let (Some(o), Some(n)) = (&old, &new) {
        let checked = guard.check_move((fd as u32, o, follow), (new_fd as u32, n), FsOp::Link);
        match checked.and_then(|to| guard.charge_create(&to, false)) {
            Ok(q) => charged = q,
            Err(r) => return Ok(errno_of(r)),
        }
    }
    let mut memory = GuestMemory::Unshared(mem);
    let rc = wasi::path_link(ctx, &mut memory, fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len).await?;
    Ok(settle(guard, rc, charged, new_fd, new.as_deref(), FsOp::Link))
}

/// A symbolic link is checked where it is created; what it points to is
/// only text until a later call follows it, and is checked then.
pub(crate) async fn path_symlink(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (old_ptr, old_len, fd, new_ptr, new_len): (Ptr, i32, i32, Ptr, i32),
) -> wasmtime::Result<i32> {
    let (new, charged) = match check_create(guard, mem, fd, (new_ptr, new_len), FsOp::Symlink) {
        Ok(p) => p,
        Err(e) => return Ok(e),
    };
    let mut memory = GuestMemory::Unshared(mem);
    let rc = wasi::path_symlink(ctx, &mut memory, old_ptr, old_len, fd, new_ptr, new_len).await?;
    Ok(settle(guard, rc, charged, fd, new.as_deref(), FsOp::Symlink))
}

pub(crate) async fn fd_filestat_set_times(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, atim, mtim, fst): (i32, i64, i64, i32),
) -> wasmtime::Result<i32> {
    if let Err(r) = guard.check_handle(fd as u32, FsOp::Write) {
        return Ok(errno_of(r));
    }
    wasi::fd_filestat_set_times(ctx, &mut GuestMemory::Unshared(mem), fd, atim, mtim, fst).await
}

pub(crate) async fn fd_close(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd,): (i32,),
) -> wasmtime::Result<i32> {
    let rc = wasi::fd_close(ctx, &mut GuestMemory::Unshared(mem), fd).await?;
    if rc == 0 {
        guard.closed(fd as u32);
    }
    Ok(rc)
}

pub(crate) async fn fd_renumber(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (from, to): (i32, i32),
) -> wasmtime::Result<i32> {
    let rc = wasi::fd_renumber(ctx, &mut GuestMemory::Unshared(mem), from, to).await?;
    if rc == 0 && from != to {
        guard.renumbered(from as u32, to as u32);
    }
    Ok(rc)
}

/// Host memory one listing call uses at most; far above a name's 255 bytes.
const LISTING_CHUNK: usize = 64 * 1024;
/// A `dirent`: next cookie (u64), inode (u64), name length (u32), type (u8), padding.
const DIRENT: usize = 24;

/// `fd_readdir`, leaving out the entries a grant hides. wasmtime-wasi lists
/// into our own buffer; the kept entries are copied to the guest's, refilled
/// until it is full, since a short buffer means "end of directory" to the
/// guest. A full buffer ends with a cut entry, as wasmtime-wasi's does, and
/// the guest asks again from the last whole entry's cookie.
///
/// Cookies are our own: the kept entries are numbered without gaps (entry
/// `n` of the filtered listing has `d_next` `n`), since wasmtime-wasi's
/// positions count the hidden entries between them. Given cookie `n`, the
/// listing goes on from where the fd's last call ended when that was `n`
/// (one position per fd is kept), or else is read again from its start
/// with `n` kept entries skipped.
pub(crate) async fn fd_readdir(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, buf, len, cookie, used_ptr): (i32, Ptr, i32, i64, Ptr),
) -> wasmtime::Result<i32> {
    let (start, want, used_at) = (buf as u32 as usize, len as u32 as usize, used_ptr as u32 as usize);
    let in_bounds = start.checked_add(want).is_some_and(|end| end <= mem.len())
        && used_at.checked_add(4).is_some_and(|end| end <= mem.len());
    let Some(dir) = guard.hiding_in(fd as u32) else {
        return wasi::fd_readdir(ctx, &mut GuestMemory::Unshared(mem), fd, buf, len, cookie, used_ptr).await;
    };
    if !in_bounds {
        // wasmtime-wasi would list into what is in bounds before refusing,
        // hidden entries too.
        return Ok(errno::FAULT);
    }
    let mut scratch = vec![0u8; LISTING_CHUNK + 4];
    let chunk = LISTING_CHUNK as i32;
    // Kept entries to pass over, kept entries seen, and wasmtime-wasi's
    // cookie to list on from: where the last call ended, when the guest
    // goes on from there.
    let skip = cookie as u64;
    let (mut kept, mut theirs) = guard.listed_to(fd as u32, skip).map_or((0, 0), |at| (skip, at));
    let (mut filled, mut last) = (0usize, None);
    'refill: loop {
        let mut memory = GuestMemory::Unshared(&mut scratch);
        let rc = wasi::fd_readdir(ctx, &mut memory, fd, 0, chunk, theirs, chunk).await?;
        if rc != 0 {
            return Ok(rc);
        }
        let used = read_u32(&scratch, chunk).unwrap_or(0) as usize;
        let mut at = 0;
        while at + DIRENT <= used {
            let namlen = read_u32(&scratch, (at + 16) as i32).unwrap_or(0) as usize;
            let end = at + DIRENT + namlen;
            if end > used {
                break;
            }
            theirs = i64::from_le_bytes(scratch[at..at + 8].try_into().unwrap_or_default());
            let name = std::str::from_utf8(&scratch[at + DIRENT..end]);
            let shown = !name.is_ok_and(|n| guard.hidden(&dir, n));
            kept += u64::from(shown);
            if shown && kept > skip {
                scratch[at..at + 8].copy_from_slice(&kept.to_le_bytes());
                let take = (end - at).min(want - filled);
                mem[start + filled..start + filled + take].copy_from_slice(&scratch[at..at + take]);
                filled += take;
                if take < end - at {
                    break 'refill;
                }
                last = Some((kept, theirs));
            }
            at = end;
        }
        // wasmtime-wasi filled less than the chunk: the directory ended. An
        // entry that did not fit a whole chunk cannot be: names are short.
        if used < LISTING_CHUNK || at == 0 || filled == want {
            break;
        }
    }
    if let Some((ours, at)) = last {
        guard.listed(fd as u32, ours, at);
    }
    mem[used_at..used_at + 4].copy_from_slice(&(filled as u32).to_le_bytes());
    Ok(0)
}

/// Bytes the iovecs at `iovs` (`{buf: u32, len: u32}` each) hold, or `None`
/// when the list is out of bounds (wasmtime-wasi then refuses the call).
fn iovecs_len(mem: &[u8], iovs: Ptr, count: i32) -> Option<u64> {
    let count = count as u32 as usize;
    let start = iovs as u32 as usize;
    let bytes = mem.get(start..start.checked_add(count.checked_mul(8)?)?)?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|iov| u64::from(u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]])))
            .sum(),
    )
}

/// A change to a counted file: a write of `len` bytes at `at` (at the end
/// of the file when the fd appends, wherever `at` says), or a resize.
#[derive(Clone, Copy)]
enum Change {
    Write { at: u64, len: u64 },
    Resize(u64),
}

/// A counted change about to happen: what was charged for it, and the
/// file's size it was charged against.
#[derive(Clone, Copy)]
struct Charge {
    charged: u64,
    size: u64,
}

/// Charges `change` to a tracked fd for what it adds past the file's size
/// *now*, before it happens. The size is asked of the file each time, never
/// remembered: another handle (or another process) may have truncated it
/// since, and a remembered size would let a rewrite of the lost bytes go
/// uncharged. `None` when the fd is not counted; `Err` with the errno when
/// the quota refuses.
async fn charge(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    fd: i32,
    change: Change,
) -> wasmtime::Result<Result<Option<Charge>, i32>> {
    if guard.written(fd as u32).is_none() {
        return Ok(Ok(None));
    }
    // A size that cannot be read counts as empty: the change is charged in
    // full (and fails anyway on a descriptor that cannot be stat-ed).
    let size = counted_size(ctx, fd).await?.unwrap_or(0);
    let Some(w) = guard.written(fd as u32) else {
        return Ok(Ok(None));
    };
    let end = match change {
        Change::Write { len, .. } if w.append => size.saturating_add(len),
        Change::Write { at, len } => at.saturating_add(len),
        Change::Resize(to) => to,
    };
    let growth = end.saturating_sub(size);
    if !w.quota.charge_bytes(&w.target, growth) {
        return Ok(Err(errno::NOSPC));
    }
    Ok(Ok(Some(Charge { charged: growth, size })))
}

/// After a counted write of `n` bytes at `at` (`None`: it failed), gives
/// back what a short or failed write did not add.
fn wrote(guard: &mut FsGuard, fd: i32, at: u64, n: Option<u64>, charge: Charge) {
    let Some(w) = guard.written(fd as u32) else {
        return;
    };
    let added = match n {
        Some(n) => {
            let start = if w.append { charge.size } else { at };
            start.saturating_add(n).saturating_sub(charge.size)
        }
        None => 0,
    };
    w.quota.refund_bytes(charge.charged.saturating_sub(added));
}

/// The size of counted file `fd` now, from one `fstat`: wasmtime-wasi
/// answers a seek to the end with one stat (one hand-off to its blocking
/// pool, where `fd_filestat_get` makes two), and the position that seek
/// moves is put back at once, before the guest runs again.
async fn counted_size(ctx: &mut WasiP1Ctx, fd: i32) -> wasmtime::Result<Option<u64>> {
    let Some(back) = fd_position(ctx, fd)?.and_then(|p| i64::try_from(p).ok()) else {
        return fd_size(ctx, fd as u32).await;
    };
    let mut scratch = [0u8; 8];
    let rc = wasi::fd_seek(ctx, &mut GuestMemory::Unshared(&mut scratch), fd, 0, WHENCE_END, 0).await?;
    if rc != 0 {
        return fd_size(ctx, fd as u32).await;
    }
    let size = u64::from_le_bytes(scratch);
    let rc = wasi::fd_seek(ctx, &mut GuestMemory::Unshared(&mut scratch), fd, back, WHENCE_SET, 0).await?;
    // Setting a position the file had cannot fail; if it did, the guest
    // must not go on writing where it did not mean to.
    if rc != 0 {
        return Err(wasmtime::Error::msg(format!(
            "failed to restore the position of fd {fd} after asking its size"
        )));
    }
    Ok(Some(size))
}

/// The position of `fd` as wasmtime-wasi keeps it (reads, seeks and writes
/// all move it; asking costs no system call).
fn fd_position(ctx: &mut WasiP1Ctx, fd: i32) -> wasmtime::Result<Option<u64>> {
    let mut scratch = [0u8; 8];
    let rc = wasi::fd_tell(ctx, &mut GuestMemory::Unshared(&mut scratch), fd, 0)?;
    Ok((rc == 0).then(|| u64::from_le_bytes(scratch)))
}

pub(crate) async fn fd_write(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, iovs, count, nwritten): (i32, Ptr, i32, Ptr),
) -> wasmtime::Result<i32> {
    let mut charged = None;
    if guard.written(fd as u32).is_some()
        && let Some(len) = iovecs_len(mem, iovs, count)
        && let Some(at) = fd_position(ctx, fd)?
    {
        match charge(ctx, guard, fd, Change::Write { at, len }).await? {
            Err(e) => return Ok(e),
            Ok(c) => charged = c.map(|c| (at, c)),
        }
    }
    let rc = wasi::fd_write(ctx, &mut GuestMemory::Unshared(mem), fd, iovs, count, nwritten).await?;
    if let Some((at, charge)) = charged {
        let n = (rc == 0).then(|| read_u32(mem, nwritten)).flatten().map(u64::from);
        wrote(guard, fd, at, n, charge);
    }
    Ok(rc)
}

pub(crate) async fn fd_pwrite(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, iovs, count, offset, nwritten): (i32, Ptr, i32, i64, Ptr),
) -> wasmtime::Result<i32> {
    let at = offset as u64;
    let charged = match iovecs_len(mem, iovs, count) {
        Some(len) => match charge(ctx, guard, fd, Change::Write { at, len }).await? {
            Err(e) => return Ok(e),
            Ok(c) => c,
        },
        None => None,
    };
    let mut memory = GuestMemory::Unshared(mem);
    let rc = wasi::fd_pwrite(ctx, &mut memory, fd, iovs, count, offset, nwritten).await?;
    if let Some(charge) = charged {
        let n = (rc == 0).then(|| read_u32(mem, nwritten)).flatten().map(u64::from);
        wrote(guard, fd, at, n, charge);
    }
    Ok(rc)
}

/// Turning `O_APPEND` on or off changes where a counted fd's writes land.
pub(crate) async fn fd_fdstat_set_flags(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, flags): (i32, i32),
) -> wasmtime::Result<i32> {
    let rc = wasi::fd_fdstat_set_flags(ctx, &mut GuestMemory::Unshared(mem), fd, flags)?;
    if rc == 0
        && let Some(w) = guard.written(fd as u32)
    {
        w.append = flags & FDFLAGS_APPEND != 0;
    }
    Ok(rc)
}

/// Growing a file by resizing it is charged like a write: for what it adds
/// past the file's size now.
pub(crate) async fn fd_filestat_set_size(
    ctx: &mut WasiP1Ctx,
    guard: &mut FsGuard,
    mem: &mut [u8],
    (fd, size): (i32, i64),
) -> wasmtime::Result<i32> {
    let size = size as u64;
    let charged = match charge(ctx, guard, fd, Change::Resize(size)).await? {
        Err(e) => return Ok(e),
        Ok(c) => c,
    };
    let rc = wasi::fd_filestat_set_size(ctx, &mut GuestMemory::Unshared(mem), fd, size as i64).await?;
    if let (Some(charge), Some(w)) = (charged, guard.written(fd as u32))
        && rc != 0
    {
        w.quota.refund_bytes(charge.charged);
    }
    Ok(rc)
}
