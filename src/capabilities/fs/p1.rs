//! Preview 1 filesystem calls, checked by the run's [`FsGuard`] and then
//! performed by wasmtime-wasi's own implementation (its generated
//! `wasi_snapshot_preview1` functions, which take raw guest arguments).
//! The engine's linker shadows each function with one of these; every one
//! takes a [`Call`]: the guest's memory and the store's WASI context and
//! guard. Each translates its raw arguments and errnos onto the one path
//! [`call`] holds for both previews.
//!
//! Besides the rules, some answers are corrected: `rmdir("dir/")` succeeds as
//! POSIX says (wasmtime-wasi 48 answers `EINVAL`), and in a grant that hides
//! paths a listing leaves out the entries it hides (numbering the rest
//! without gaps) and a stat does not count them.

use super::FsGuard;
use super::call::{self, Answer, Decided, Open, Refuse, Verdict};
use super::guard::{Loc, Refusal};
use super::quota::Growth;
use crate::policy::FsOp;
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

/// What a preview 1 function answers: an errno (0 when done), or a host
/// error that ends the run.
type Errno = wasmtime::Result<i32>;

/// One preview 1 call's host side, as the linker hands it over: the store's
/// WASI context and guard, and the guest's memory.
pub(crate) struct Call<'a> {
    pub(crate) ctx: &'a mut WasiP1Ctx,
    pub(crate) guard: &'a mut FsGuard,
    pub(crate) mem: &'a mut [u8],
}

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

/// What wasmtime-wasi refuses on its own it answers with one of four errnos;
/// any other is a use the policy allowed (a missing file, say).
impl Answer for Errno {
    fn verdict(&self) -> Verdict {
        match self {
            Err(_) => Verdict::Ended,
            Ok(0) => Verdict::Done,
            Ok(errno::ACCES | errno::PERM | errno::ROFS | errno::NOTCAPABLE) => Verdict::Refused,
            Ok(_) => Verdict::Failed,
        }
    }
}

impl Refuse<Refusal> for Errno {
    fn refused(refusal: Refusal) -> Self {
        Ok(errno_of(refusal))
    }
}

impl Refuse<i32> for Errno {
    fn refused(errno: i32) -> Self {
        Ok(errno)
    }
}

/// Decides with `decide` the path read from guest memory; one that could
/// not be read is left to wasmtime-wasi, which refuses the call, and nothing
/// is recorded.
fn decide_read<'a>(
    guard: &'a FsGuard,
    path: &'a Option<String>,
    decide: impl FnOnce(&'a str) -> Result<Decided<'a>, Refusal>,
) -> Result<Decided<'a>, Refusal> {
    path.as_deref().map_or(Ok(Decided::unchecked(guard, None)), decide)
}

/// [`call::decide_move`] on two paths read from guest memory. When one could
/// not be read nothing is decided (wasmtime-wasi refuses the call), and the
/// end recorded (`old` for a rename, `new` for a link) still is if it was read.
fn decide_move_read<'a>(
    guard: &'a FsGuard,
    (base, old, follow): (u32, &'a Option<String>, bool),
    (new_base, new): (u32, &'a Option<String>),
    op: FsOp,
) -> Result<Decided<'a>, Refusal> {
    if let (Some(old), Some(new)) = (old, new) {
        return call::decide_move(guard, (base, old, follow), (new_base, new), op);
    }
    let used = match op {
        FsOp::Link => new.as_deref().map(|new| (new_base, new, op)),
        _ => old.as_deref().map(|old| (base, old, op)),
    };
    Ok(Decided::unchecked(guard, used))
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

pub(crate) async fn path_open(Call { ctx, guard, mem }: Call<'_>, args: OpenArgs) -> Errno {
    let (fd, dirflags, ptr, len, oflags, base, _, fdflags, out) = args;
    let op = open_op(oflags, base, fdflags);
    let path = read_path(mem, ptr, len);
    // A path that cannot be read is opened unchecked (and never stat-ed):
    // wasmtime-wasi refuses it.
    let mut how = OpenHow {
        ctx,
        mem,
        args,
        path: path.as_deref().unwrap_or_default(),
    };
    let (rc, loc) = match path.as_deref() {
        Some(path) => {
            let at = (fd as u32, path, dirflags & LOOKUP_SYMLINK_FOLLOW != 0);
            call::open(guard, at, op, &mut how).await
        }
        None => (how.open(None).await, None),
    };
    if rc.verdict() == Verdict::Done {
        opened(guard, how.mem, out, loc, op, fdflags);
    }
    rc
}

/// wasmtime-wasi's own `path_open` with the guest's raw arguments, as
/// [`call::open`] drives it.
struct OpenHow<'a> {
    ctx: &'a mut WasiP1Ctx,
    mem: &'a mut [u8],
    args: OpenArgs,
    path: &'a str,
}

impl Open for OpenHow<'_> {
    type Answer = Errno;

    async fn open(&mut self, by_name: Option<bool>) -> Errno {
        let (fd, dirflags, ptr, len, oflags, base, inheriting, fdflags, out) = self.args;
        let (dirflags, oflags) = match by_name {
            None => (dirflags, oflags),
            Some(exclusive) => (
                dirflags & !LOOKUP_SYMLINK_FOLLOW,
                if exclusive { oflags | OFLAGS_EXCL } else { oflags },
            ),
        };
        let mut memory = GuestMemory::Unshared(self.mem);
        wasi::path_open(
            self.ctx,
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

    async fn exists(&mut self) -> Result<bool, Errno> {
        let (fd, dirflags, ..) = self.args;
        match stat_type(self.ctx, fd, dirflags, self.path).await {
            Ok(stat) => Ok(stat.is_ok()),
            Err(ended) => Err(Err(ended)),
        }
    }
}

/// After `path_open` opened the fd written at `out`, pointing at `loc`:
/// starts counting its writes below a grant with a byte quota, and keeps
/// where it points.
fn opened(guard: &mut FsGuard, mem: &[u8], out: Ptr, loc: Option<Loc>, op: FsOp, fdflags: i32) {
    if let Some(new) = read_u32(mem, out) {
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

pub(crate) async fn fd_filestat_get(Call { ctx, guard, mem }: Call<'_>, (fd, buf): (i32, Ptr)) -> Errno {
    let rc = wasi::fd_filestat_get(ctx, &mut GuestMemory::Unshared(mem), fd, buf).await?;
    Ok(stat_answered(guard, mem, fd, buf, rc))
}

pub(crate) async fn path_filestat_get(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, flags, ptr, len, buf): (i32, i32, Ptr, i32, Ptr),
) -> Errno {
    let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
    let path = read_path(mem, ptr, len);
    if let Some(p) = &path
        && let Some(named) = call::named(guard, fd as u32, p, FsOp::Stat)
    {
        // Decided by the name, so stat the name itself (see
        // `FsGuard::check_name`); a link there is followed the full way.
        let tried = stat_name(ctx, guard, mem, (fd, p, buf), follow);
        if let Some(rc) = call::by_name(named, follow, tried).await {
            return rc;
        }
    }
    let decided = decide_read(guard, &path, |p| call::decide(guard, fd as u32, p, follow, FsOp::Stat));
    let mut memory = GuestMemory::Unshared(mem);
    let stat = wasi::path_filestat_get(ctx, &mut memory, fd, flags, ptr, len, buf);
    let rc = call::perform(decided, stat).await?;
    Ok(stat_answered(guard, mem, fd, buf, rc))
}

/// `path_filestat_get` of the name `path` itself into the guest's `buf`, its
/// counts masked where the grant hides paths. `None` when that cannot stand
/// for the guest's call: a link it asked to follow, or a buffer out of bounds
/// or misaligned (wasmtime-wasi answers that one: it traps).
async fn stat_name(
    ctx: &mut WasiP1Ctx,
    guard: &FsGuard,
    mem: &mut [u8],
    (fd, path, buf): (i32, &str, Ptr),
    follow: bool,
) -> Option<Errno> {
    let mut stat = match filestat(ctx, fd, 0, path).await {
        Ok(Ok(stat)) => stat,
        Ok(Err(rc)) => return Some(Ok(rc)),
        Err(ended) => return Some(Err(ended)),
    };
    if follow && stat[FILESTAT_TYPE] == FILETYPE_SYMBOLIC_LINK {
        return None;
    }
    if guard.hides(fd as u32) {
        mask_filestat(&mut stat);
    }
    let at = buf as u32 as usize;
    let out = mem
        .get_mut(at..at.saturating_add(FILESTAT_SIZE))
        .filter(|_| at.is_multiple_of(FILESTAT_ALIGN))?;
    out.copy_from_slice(&stat);
    Some(Ok(0))
}

/// Preview 1 functions that name one path (at `ptr`, `len`), decided by the
/// guard (`|guard, path| decision`) and then, if allowed, performed by
/// wasmtime-wasi's own function of the same name.
macro_rules! one_path {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) at ($ptr:ident, $len:ident),
        |$guard:ident, $path:ident| $decide:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) async fn $name(Call { ctx, guard, mem }: Call<'_>, ($($arg,)*): ($($ty,)*)) -> Errno {
            let path = read_path(mem, $ptr, $len);
            let $guard: &FsGuard = guard;
            let decided = decide_read($guard, &path, |$path| $decide);
            call::perform(decided, wasi::$name(ctx, &mut GuestMemory::Unshared(mem), $($arg),*)).await
        }
    )*};
}

one_path! {
    fn path_filestat_set_times(fd: i32, flags: i32, ptr: Ptr, len: i32, atim: i64, mtim: i64, fst: i32) at (ptr, len),
        |guard, path| call::decide(guard, fd as u32, path, flags & LOOKUP_SYMLINK_FOLLOW != 0, FsOp::Write);
    fn path_readlink(fd: i32, ptr: Ptr, len: i32, buf: Ptr, buf_len: i32, used: Ptr) at (ptr, len),
        |guard, path| call::decide(guard, fd as u32, path, false, FsOp::Read);
    fn path_create_directory(fd: i32, ptr: Ptr, len: i32) at (ptr, len),
        |guard, path| call::decide_create(guard, fd as u32, path, FsOp::Create);
    fn path_unlink_file(fd: i32, ptr: Ptr, len: i32) at (ptr, len),
        |guard, path| call::decide_unlink(guard, fd as u32, path);
    /// A symbolic link is checked where it is created; what it points to is
    /// only text until a later call follows it, and is checked then.
    fn path_symlink(old_ptr: Ptr, old_len: i32, fd: i32, new_ptr: Ptr, new_len: i32) at (new_ptr, new_len),
        |guard, path| call::decide_create(guard, fd as u32, path, FsOp::Symlink);
}

/// `rmdir`, with POSIX's answer for a trailing slash: `"dir/"` removes the
/// directory, `"file/"` is `ENOTDIR`.
pub(crate) async fn path_remove_directory(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, ptr, len): (i32, Ptr, i32),
) -> Errno {
    let path = read_path(mem, ptr, len);
    let decided = match decide_read(guard, &path, |p| call::decide(guard, fd as u32, p, false, FsOp::Remove)) {
        Ok(decided) => decided,
        Err(refusal) => return Ok(errno_of(refusal)),
    };
    let mut len = len;
    if let Some(p) = path.as_deref().filter(|p| p.len() > 1 && p.ends_with('/')) {
        let trimmed = p.trim_end_matches('/');
        if trimmed.is_empty() {
            return call::settled(decided, async { Ok(errno::PERM) }).await;
        }
        match stat_type(ctx, fd, 0, trimmed).await? {
            Ok(FILETYPE_DIRECTORY) => len = trimmed.len() as i32,
            Ok(_) => return Ok(errno::NOTDIR),
            Err(e) => return Ok(e),
        }
    }
    let mut memory = GuestMemory::Unshared(mem);
    let remove = wasi::path_remove_directory(ctx, &mut memory, fd, ptr, len);
    call::settled(decided, remove).await
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
    Call { ctx, guard, mem }: Call<'_>,
    (fd, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, Ptr, i32, i32, Ptr, i32),
) -> Errno {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    let decided = decide_move_read(guard, (fd as u32, &old, false), (new_fd as u32, &new), FsOp::Rename);
    let mut memory = GuestMemory::Unshared(mem);
    let rename = wasi::path_rename(ctx, &mut memory, fd, old_ptr, old_len, new_fd, new_ptr, new_len);
    call::perform(decided, rename).await
}

pub(crate) async fn path_link(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, i32, Ptr, i32, i32, Ptr, i32),
) -> Errno {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
    let decided = decide_move_read(guard, (fd as u32, &old, follow), (new_fd as u32, &new), FsOp::Link);
    let mut memory = GuestMemory::Unshared(mem);
    let link = wasi::path_link(ctx, &mut memory, fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len);
    call::perform(decided, link).await
}

pub(crate) async fn fd_filestat_set_times(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, atim, mtim, fst): (i32, i64, i64, i32),
) -> Errno {
    let decided = call::decide_handle(guard, fd as u32, FsOp::Write);
    let mut memory = GuestMemory::Unshared(mem);
    call::perform(
        decided,
        wasi::fd_filestat_set_times(ctx, &mut memory, fd, atim, mtim, fst),
    )
    .await
}

pub(crate) async fn fd_close(Call { ctx, guard, mem }: Call<'_>, (fd,): (i32,)) -> Errno {
    let rc = wasi::fd_close(ctx, &mut GuestMemory::Unshared(mem), fd).await?;
    if rc == 0 {
        guard.closed(fd as u32);
    }
    Ok(rc)
}

pub(crate) async fn fd_renumber(Call { ctx, guard, mem }: Call<'_>, (from, to): (i32, i32)) -> Errno {
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
    Call { ctx, guard, mem }: Call<'_>,
    (fd, buf, len, cookie, used_ptr): (i32, Ptr, i32, i64, Ptr),
) -> Errno {
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
) -> wasmtime::Result<Result<Option<Growth>, i32>> {
    if guard.written(fd as u32).is_none() {
        return Ok(Ok(None));
    }
    // A size that cannot be read counts as empty: the change is charged in
    // full (and fails anyway on a descriptor that cannot be stat-ed).
    let size = counted_size(ctx, fd).await?.unwrap_or(0);
    let Some(w) = guard.written(fd as u32) else {
        return Ok(Ok(None));
    };
    let written = match change {
        Change::Write { len, .. } if w.append => (size, len),
        Change::Write { at, len } => (at, len),
        Change::Resize(to) => (to, 0),
    };
    match w.quota.charge_growth(&w.target, size, written) {
        Some(growth) => Ok(Ok(Some(growth))),
        None => Ok(Err(errno::NOSPC)),
    }
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

pub(crate) async fn fd_write(call: Call<'_>, (fd, iovs, count, nwritten): (i32, Ptr, i32, Ptr)) -> Errno {
    write(call, (fd, iovs, count, nwritten), None).await
}

pub(crate) async fn fd_pwrite(call: Call<'_>, (fd, iovs, count, offset, nwritten): (i32, Ptr, i32, i64, Ptr)) -> Errno {
    write(call, (fd, iovs, count, nwritten), Some(offset)).await
}

/// A write of the iovecs at `iovs` to `fd`, at `offset` (`fd_pwrite`) or at
/// the fd's position (`fd_write`). A counted fd's write is charged first, and
/// what it did not add (by the count written at `nwritten`) given back after.
async fn write(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, iovs, count, nwritten): (i32, Ptr, i32, Ptr),
    offset: Option<i64>,
) -> Errno {
    let mut charged = None;
    if let Some(len) = iovecs_len(mem, iovs, count) {
        let at = match offset {
            Some(offset) => Some(offset as u64),
            None if guard.written(fd as u32).is_some() => fd_position(ctx, fd)?,
            None => None,
        };
        if let Some(at) = at {
            match charge(ctx, guard, fd, Change::Write { at, len }).await? {
                Err(e) => return Ok(e),
                Ok(c) => charged = c,
            }
        }
    }
    let mut memory = GuestMemory::Unshared(mem);
    let rc = match offset {
        Some(offset) => wasi::fd_pwrite(ctx, &mut memory, fd, iovs, count, offset, nwritten).await?,
        None => wasi::fd_write(ctx, &mut memory, fd, iovs, count, nwritten).await?,
    };
    if let Some(growth) = charged {
        growth.wrote((rc == 0).then(|| read_u32(mem, nwritten)).flatten().map(u64::from));
    }
    Ok(rc)
}

/// Turning `O_APPEND` on or off changes where a counted fd's writes land.
pub(crate) async fn fd_fdstat_set_flags(Call { ctx, guard, mem }: Call<'_>, (fd, flags): (i32, i32)) -> Errno {
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
pub(crate) async fn fd_filestat_set_size(Call { ctx, guard, mem }: Call<'_>, (fd, size): (i32, i64)) -> Errno {
    let charged = charge(ctx, guard, fd, Change::Resize(size as u64)).await?;
    let mut memory = GuestMemory::Unshared(mem);
    call::perform(charged, wasi::fd_filestat_set_size(ctx, &mut memory, fd, size)).await
}
