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

/// `path` as the host calls it ([`FsGuard::host_path`]), when that is not
/// as the guest wrote it: the call is then performed on a scratch memory of
/// our own holding the host's path, never on the guest's bytes.
fn translated(guard: &FsGuard, fd: i32, path: &Option<String>) -> Option<String> {
    match guard.host_path(fd as u32, path.as_deref()?) {
        std::borrow::Cow::Owned(host) => Some(host),
        std::borrow::Cow::Borrowed(_) => None,
    }
}

/// The `len` bytes at `ptr` in guest memory, when in bounds and aligned to
/// `align`, as wasmtime-wasi checks before writing an answer there.
fn out_of(mem: &mut [u8], ptr: Ptr, len: usize, align: usize) -> Option<&mut [u8]> {
    let at = ptr as u32 as usize;
    mem.get_mut(at..at.checked_add(len)?)
        .filter(|_| at.is_multiple_of(align))
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
    let host = translated(guard, fd, &path);
    let mut how = OpenHow {
        ctx,
        mem,
        args,
        path: host.as_deref().or(path.as_deref()).unwrap_or_default(),
        translated: host.is_some(),
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
    /// The path as the host calls it.
    path: &'a str,
    /// Whether that is not the guest's: then it is opened from our own memory.
    translated: bool,
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
        // A path the host names otherwise is opened from our memory, with the
        // new fd, which is then copied to the guest's `out`, checked first as
        // wasmtime-wasi would.
        let mut scratch = Vec::new();
        let (memory, ptr, len, opened) = match self.translated {
            false => (&mut *self.mem, ptr, len, out),
            true => {
                if out_of(self.mem, out, 4, 4).is_none() {
                    return Ok(errno::FAULT);
                }
                scratch.extend_from_slice(self.path.as_bytes());
                let at = scratch.len().next_multiple_of(4);
                scratch.resize(at + 4, 0);
                (&mut scratch[..], 0, self.path.len() as i32, at as i32)
            }
        };
        let mut memory = GuestMemory::Unshared(memory);
        let rc = wasi::path_open(
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
            opened,
        )
        .await?;
        if self.translated
            && rc == 0
            && let Some(out) = out_of(self.mem, out, 4, 4)
        {
            let at = opened as usize;
            out.copy_from_slice(&scratch[at..at + 4]);
        }
        Ok(rc)
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
    let host = translated(guard, fd, &path);
    if let Some(p) = &path
        && let Some(named) = call::named(guard, fd as u32, p, FsOp::Stat)
    {
        // Decided by the name, so stat the name itself (see
        // `FsGuard::check_name`); a link there is followed the full way.
        let tried = stat_name(ctx, guard, mem, (fd, host.as_deref().unwrap_or(p), buf), follow);
        if let Some(rc) = call::by_name(named, follow, tried).await {
            return rc;
        }
    }
    let decided = decide_read(guard, &path, |p| call::decide(guard, fd as u32, p, follow, FsOp::Stat));
    if let Some(host) = host {
        let stat = async {
            if out_of(mem, buf, FILESTAT_SIZE, FILESTAT_ALIGN).is_none() {
                return Errno::Ok(errno::FAULT);
            }
            let stat = match filestat(ctx, fd, flags, &host).await? {
                Ok(stat) => stat,
                Err(rc) => return Ok(rc),
            };
            if let Some(out) = out_of(mem, buf, FILESTAT_SIZE, FILESTAT_ALIGN) {
                out.copy_from_slice(&stat);
            }
            Ok(0)
        };
        let rc = call::perform(decided, stat).await?;
        return Ok(stat_answered(guard, mem, fd, buf, rc));
    }
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

/// Preview 1 functions whose only use of guest memory is one path (at `ptr`,
/// `len`, from `fd`), decided by the guard (`|guard, path| decision`) and
/// then, if allowed, performed by wasmtime-wasi's own function of the same
/// name: on the guest's bytes, or on the host's path in our own memory where
/// the two differ ([`translated`]).
macro_rules! one_path {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) at ($fd:ident, $ptr:ident, $len:ident),
        |$guard:ident, $path:ident| $decide:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) async fn $name(Call { ctx, guard, mem }: Call<'_>, ($($arg,)*): ($($ty,)*)) -> Errno {
            let path = read_path(mem, $ptr, $len);
            let $guard: &FsGuard = guard;
            let host = translated($guard, $fd, &path);
            let decided = decide_read($guard, &path, |$path| $decide);
            match host {
                None => call::perform(decided, wasi::$name(ctx, &mut GuestMemory::Unshared(mem), $($arg),*)).await,
                Some(host) => {
                    let ($ptr, $len) = (0, host.len() as i32);
                    let mut scratch = host.into_bytes();
                    call::perform(decided, wasi::$name(ctx, &mut GuestMemory::Unshared(&mut scratch), $($arg),*)).await
                }
            }
        }
    )*};
}

one_path! {
    fn path_filestat_set_times(fd: i32, flags: i32, ptr: Ptr, len: i32, atim: i64, mtim: i64, fst: i32) at (fd, ptr, len),
        |guard, path| call::decide(guard, fd as u32, path, flags & LOOKUP_SYMLINK_FOLLOW != 0, FsOp::Write);
    fn path_create_directory(fd: i32, ptr: Ptr, len: i32) at (fd, ptr, len),
        |guard, path| call::decide_create(guard, fd as u32, path, FsOp::Create);
    fn path_unlink_file(fd: i32, ptr: Ptr, len: i32) at (fd, ptr, len),
        |guard, path| call::decide_unlink(guard, fd as u32, path);
}

/// A symbolic link is checked where it is created; what it points to is
/// only text until a later call follows it, and is checked then.
pub(crate) async fn path_symlink(
    Call { ctx, guard, mem }: Call<'_>,
    (old_ptr, old_len, fd, new_ptr, new_len): (Ptr, i32, i32, Ptr, i32),
) -> Errno {
    let path = read_path(mem, new_ptr, new_len);
    let host = translated(guard, fd, &path);
    let decided = decide_read(guard, &path, |p| {
        call::decide_create(guard, fd as u32, p, FsOp::Symlink)
    });
    let Some(host) = host else {
        let mut memory = GuestMemory::Unshared(mem);
        let symlink = wasi::path_symlink(ctx, &mut memory, old_ptr, old_len, fd, new_ptr, new_len);
        return call::perform(decided, symlink).await;
    };
    // The link's text and the host's path, in our own memory.
    let Some(text) = read_path(mem, old_ptr, old_len) else {
        return Ok(errno::FAULT);
    };
    let (paths, [(old_ptr, old_len), (new_ptr, new_len)]) = scratch_paths([&text, &host]);
    let mut scratch = paths;
    let mut memory = GuestMemory::Unshared(&mut scratch);
    let symlink = wasi::path_symlink(ctx, &mut memory, old_ptr, old_len, fd, new_ptr, new_len);
    call::perform(decided, symlink).await
}

/// Paths laid out one after another in a scratch memory, with where each is.
fn scratch_paths<const N: usize>(paths: [&str; N]) -> (Vec<u8>, [(Ptr, i32); N]) {
    let mut memory = Vec::new();
    let at = paths.map(|p| {
        let at = (memory.len() as Ptr, p.len() as i32);
        memory.extend_from_slice(p.as_bytes());
        at
    });
    (memory, at)
}

/// Longest link text `path_readlink` answers from our own memory: Linux's
/// `PATH_MAX`, which no link's text exceeds.
const MAX_LINK_TEXT: usize = 4096;

pub(crate) async fn path_readlink(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, ptr, len, buf, buf_len, used): (i32, Ptr, i32, Ptr, i32, Ptr),
) -> Errno {
    let path = read_path(mem, ptr, len);
    let host = translated(guard, fd, &path);
    let decided = decide_read(guard, &path, |p| call::decide(guard, fd as u32, p, false, FsOp::Read));
    let Some(host) = host else {
        let mut memory = GuestMemory::Unshared(mem);
        let readlink = wasi::path_readlink(ctx, &mut memory, fd, ptr, len, buf, buf_len, used);
        return call::perform(decided, readlink).await;
    };
    // The host's path, then the text read and its length, in our memory;
    // both copied to the guest's, checked first as wasmtime-wasi would.
    let room = (buf_len as u32 as usize).min(MAX_LINK_TEXT);
    let readlink = async {
        if out_of(mem, buf, buf_len as u32 as usize, 1).is_none() || out_of(mem, used, 4, 4).is_none() {
            return Errno::Ok(errno::FAULT);
        }
        let text_at = host.len().next_multiple_of(4);
        let used_at = text_at + room.next_multiple_of(4);
        let mut scratch = host.as_bytes().to_vec();
        scratch.resize(used_at + 4, 0);
        let mut memory = GuestMemory::Unshared(&mut scratch);
        let (p, l, t, r, u) = (0, host.len() as i32, text_at as Ptr, room as i32, used_at as Ptr);
        let rc = wasi::path_readlink(ctx, &mut memory, fd, p, l, t, r, u).await?;
        if rc == 0 {
            let n = (read_u32(&scratch, u).unwrap_or(0) as usize).min(room);
            if let Some(out) = out_of(mem, buf, n, 1) {
                out.copy_from_slice(&scratch[text_at..text_at + n]);
            }
            if let Some(out) = out_of(mem, used, 4, 4) {
                out.copy_from_slice(&(n as u32).to_le_bytes());
            }
        }
        Ok(rc)
    };
    call::perform(decided, readlink).await
}

/// `rmdir`, with POSIX's answer for a trailing slash: `"dir/"` removes the
/// directory, `"file/"` is `ENOTDIR`.
pub(crate) async fn path_remove_directory(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, ptr, len): (i32, Ptr, i32),
) -> Errno {
    let path = read_path(mem, ptr, len);
    let host = translated(guard, fd, &path);
    let decided = match decide_read(guard, &path, |p| call::decide(guard, fd as u32, p, false, FsOp::Remove)) {
        Ok(decided) => decided,
        Err(refusal) => return Ok(errno_of(refusal)),
    };
    if let Some(host) = host {
        // The guard refuses removing a granted file or its folder, the only
        // paths the host names otherwise; this is what it would be told.
        let mut scratch = host.trim_end_matches('/').as_bytes().to_vec();
        let len = scratch.len() as i32;
        let mut memory = GuestMemory::Unshared(&mut scratch);
        let remove = wasi::path_remove_directory(ctx, &mut memory, fd, 0, len);
        return call::settled(decided, remove).await;
    }
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

/// Both paths of a rename or link as the host calls them, when either is
/// not as the guest wrote it ([`translated`]); inside, `None` when the other
/// could not be read (the call is then refused, as wasmtime-wasi would).
#[expect(
    clippy::option_option,
    reason = "whether to translate, then whether both paths were read"
)]
fn two_translated(
    guard: &FsGuard,
    (fd, old): (i32, &Option<String>),
    (new_fd, new): (i32, &Option<String>),
) -> Option<Option<(String, String)>> {
    let (old_host, new_host) = (translated(guard, fd, old), translated(guard, new_fd, new));
    if old_host.is_none() && new_host.is_none() {
        return None;
    }
    let old = old_host.or_else(|| old.clone());
    let new = new_host.or_else(|| new.clone());
    Some(old.zip(new))
}

pub(crate) async fn path_rename(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, Ptr, i32, i32, Ptr, i32),
) -> Errno {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    let hosts = two_translated(guard, (fd, &old), (new_fd, &new));
    let decided = decide_move_read(guard, (fd as u32, &old, false), (new_fd as u32, &new), FsOp::Rename);
    let Some(hosts) = hosts else {
        let mut memory = GuestMemory::Unshared(mem);
        let rename = wasi::path_rename(ctx, &mut memory, fd, old_ptr, old_len, new_fd, new_ptr, new_len);
        return call::perform(decided, rename).await;
    };
    let Some((old, new)) = hosts else {
        return Ok(errno::FAULT);
    };
    let (mut scratch, [(old_ptr, old_len), (new_ptr, new_len)]) = scratch_paths([&old, &new]);
    let mut memory = GuestMemory::Unshared(&mut scratch);
    let rename = wasi::path_rename(ctx, &mut memory, fd, old_ptr, old_len, new_fd, new_ptr, new_len);
    call::perform(decided, rename).await
}

pub(crate) async fn path_link(
    Call { ctx, guard, mem }: Call<'_>,
    (fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len): (i32, i32, Ptr, i32, i32, Ptr, i32),
) -> Errno {
    let (old, new) = (read_path(mem, old_ptr, old_len), read_path(mem, new_ptr, new_len));
    let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
    let hosts = two_translated(guard, (fd, &old), (new_fd, &new));
    let decided = decide_move_read(guard, (fd as u32, &old, follow), (new_fd as u32, &new), FsOp::Link);
    let Some(hosts) = hosts else {
        let mut memory = GuestMemory::Unshared(mem);
        let link = wasi::path_link(ctx, &mut memory, fd, flags, old_ptr, old_len, new_fd, new_ptr, new_len);
        return call::perform(decided, link).await;
    };
    let Some((old, new)) = hosts else {
        return Ok(errno::FAULT);
    };
    let (mut scratch, [(old_ptr, old_len), (new_ptr, new_len)]) = scratch_paths([&old, &new]);
    let mut memory = GuestMemory::Unshared(&mut scratch);
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
    guard.note_listing(fd as u32);
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
            // wasmtime-wasi lists names in UTF-8 only; anything else is left
            // out rather than shown unruled.
            let name = std::str::from_utf8(&scratch[at + DIRENT..end]).ok();
            let shown = name.and_then(|n| guard.shown(&dir, n));
            kept += u64::from(shown.is_some());
            if let Some(name) = shown
                && kept > skip
            {
                let entry = dirent_shown(&scratch[at..end], kept, name);
                let take = entry.len().min(want - filled);
                mem[start + filled..start + filled + take].copy_from_slice(&entry[..take]);
                filled += take;
                if take < entry.len() {
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

/// The dirent `raw` (its header as wasmtime-wasi listed it) as the guest
/// sees it: our cookie `kept`, and the name the grant shows (a granted
/// file's guest name).
fn dirent_shown(raw: &[u8], kept: u64, name: &str) -> Vec<u8> {
    let mut entry = raw[..DIRENT].to_vec();
    entry[..8].copy_from_slice(&kept.to_le_bytes());
    entry[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
    entry.extend_from_slice(name.as_bytes());
    entry
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
