//! Preview 2 filesystem calls: a view of wasmtime-wasi's own
//! `wasi:filesystem` host ([`Guarded`]) that asks the run's [`FsGuard`]
//! before handing each call to it. The engine's linker registers it over
//! wasmtime-wasi's `wasi:filesystem/types` and `preopens`. Calls that name no
//! path go straight through; descriptors and listings are tracked so a
//! relative path can be placed and hidden entries left out.
//!
//! As in [`p1`](super::p1), `remove-directory-at("dir/")` succeeds as POSIX
//! says, and a stat in a grant that hides paths does not count hidden
//! entries.

use super::FsGuard;
use super::call::{self, Answer, Open, Refuse, Verdict};
use super::guard::Refusal;
use super::quota::{Growth, Quota, QuotaStream, size_of};
use crate::policy::FsOp;
use std::sync::Arc;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{self, HostDescriptor, HostDirectoryEntryStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

/// wasmtime-wasi's filesystem view with the run's guard beside it.
pub(crate) struct Guarded<'a> {
    pub(crate) inner: WasiFilesystemCtxView<'a>,
    pub(crate) guard: &'a mut FsGuard,
}

/// The [`HasData`] marker the linker registers [`Guarded`] with.
pub(crate) struct GuardedFs;

impl HasData for GuardedFs {
    type Data<'a> = Guarded<'a>;
}

/// A file below a grant with a byte quota: the quota, the guest path for
/// its records, and the file, to ask its size at each write.
struct CountedFile {
    quota: Arc<Quota>,
    target: String,
    file: Arc<std::fs::File>,
}

fn code(refusal: Refusal) -> FsError {
    match refusal {
        Refusal::NotFound => types::ErrorCode::NoEntry.into(),
        Refusal::Denied => types::ErrorCode::Access.into(),
        Refusal::Full => types::ErrorCode::InsufficientSpace.into(),
        Refusal::TooLong => types::ErrorCode::NameTooLong.into(),
        Refusal::CrossDevice => types::ErrorCode::CrossDevice.into(),
    }
}

/// Preview 2's answer: what wasmtime-wasi refuses on its own it answers with
/// one of three error codes, any other code is a use the policy allowed (a
/// missing file, say), and an error that is no code is a trap (a full handle
/// table, say).
impl<T> Answer for FsResult<T> {
    fn verdict(&self) -> Verdict {
        use types::ErrorCode as E;
        match self.as_ref().map_err(|e| e.downcast_ref()) {
            Ok(_) => Verdict::Done,
            Err(Some(E::Access | E::NotPermitted | E::ReadOnly)) => Verdict::Refused,
            Err(Some(_)) => Verdict::Failed,
            Err(None) => Verdict::Trapped,
        }
    }
}

impl<T> Refuse<Refusal> for FsResult<T> {
    fn refused(refusal: Refusal) -> Self {
        Err(code(refusal))
    }
}

impl<T> Refuse<FsError> for FsResult<T> {
    fn refused(error: FsError) -> Self {
        Err(error)
    }
}

fn open_op(oflags: types::OpenFlags, flags: types::DescriptorFlags) -> FsOp {
    use types::{DescriptorFlags as D, OpenFlags as O};
    if oflags.contains(O::CREATE) {
        FsOp::Create
    } else if oflags.contains(O::TRUNCATE) || flags.intersects(D::WRITE | D::MUTATE_DIRECTORY) {
        FsOp::Write
    } else {
        FsOp::Read
    }
}

/// `open-at` as [`call::open`] drives it.
struct OpenHow<'v, 'a> {
    inner: &'v mut WasiFilesystemCtxView<'a>,
    rep: u32,
    path: &'v str,
    path_flags: types::PathFlags,
    oflags: types::OpenFlags,
    flags: types::DescriptorFlags,
}

impl Open for OpenHow<'_, '_> {
    type Answer = FsResult<Resource<types::Descriptor>>;

    async fn open(&mut self, by_name: Option<bool>) -> Self::Answer {
        // `symlink-follow` is the only path flag.
        let (path_flags, oflags) = match by_name {
            None => (self.path_flags, self.oflags),
            Some(true) => (types::PathFlags::empty(), self.oflags | types::OpenFlags::EXCLUSIVE),
            Some(false) => (types::PathFlags::empty(), self.oflags),
        };
        let at = Resource::new_borrow(self.rep);
        HostDescriptor::open_at(self.inner, at, path_flags, self.path.to_string(), oflags, self.flags).await
    }

    async fn exists(&mut self) -> Result<bool, Self::Answer> {
        let at = Resource::new_borrow(self.rep);
        let stat = HostDescriptor::stat_at(self.inner, at, self.path_flags, self.path.to_string()).await;
        Ok(stat.is_ok())
    }
}

/// `stat-at` of the name `path` itself, not following a link there; `None`
/// when it found a link the guest asked to follow.
async fn stat_name(
    inner: &mut WasiFilesystemCtxView<'_>,
    rep: u32,
    path: &str,
    follow: bool,
) -> Option<FsResult<types::DescriptorStat>> {
    let at = Resource::new_borrow(rep);
    match HostDescriptor::stat_at(inner, at, types::PathFlags::empty(), path.to_string()).await {
        Ok(stat) if follow && stat.type_ == types::DescriptorType::SymbolicLink => None,
        stat => Some(stat),
    }
}

/// A stat of something `rep`'s grant holds, as a grant that hides paths
/// gives it: no count of a folder's entries, hidden ones included (see
/// `fs::FOLDER_SIZE`).
fn masked(guard: &FsGuard, rep: u32, mut stat: types::DescriptorStat) -> types::DescriptorStat {
    if guard.hides(rep) {
        stat.link_count = stat.link_count.min(super::MAX_LINK_COUNT);
        if stat.type_ == types::DescriptorType::Directory {
            stat.size = super::FOLDER_SIZE;
        }
    }
    stat
}

impl Guarded<'_> {
    /// The file `fd` is, when it is a file below a grant with a byte quota.
    fn counted_file(&self, fd: &Resource<types::Descriptor>) -> FsResult<Option<CountedFile>> {
        let Some((quota, target)) = self.guard.handle_quota(fd.rep()) else {
            return Ok(None);
        };
        let file = match self.inner.table.get(fd)? {
            Descriptor::File(f) => f.file.clone(),
            Descriptor::Dir(_) => return Ok(None),
        };
        Ok(Some(CountedFile { quota, target, file }))
    }

    /// Charges a write of `len` bytes at `at` (or a resize to `at` when
    /// `len` is 0) for what it adds past the file's size, before it happens.
    fn charge_write(&self, fd: &Resource<types::Descriptor>, at: u64, len: u64) -> FsResult<Option<Growth>> {
        let Some(CountedFile { quota, target, file }) = self.counted_file(fd)? else {
            return Ok(None);
        };
        match quota.charge_growth(&target, size_of(&file), (at, len)) {
            Some(growth) => Ok(Some(growth)),
            None => Err(code(Refusal::Full)),
        }
    }

    /// Wraps an output stream on a file below a grant with a byte quota so
    /// that each of its writes is charged first; `at` is `None` to append.
    fn counted(
        &mut self,
        stream: Resource<DynOutputStream>,
        fd: u32,
        at: Option<u64>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(CountedFile { quota, target, file }) = self.counted_file(&Resource::new_borrow(fd))? else {
            return Ok(stream);
        };
        let inner = self.inner.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaStream {
            inner,
            quota,
            target,
            file,
            position: at.unwrap_or(0),
            append: at.is_none(),
        });
        Ok(self.inner.table.push(wrapped)?)
    }
}

impl preopens::Host for Guarded<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (dir, name) in &dirs {
            self.guard.preopened(dir.rep(), name);
        }
        Ok(dirs)
    }
}

impl types::Host for Guarded<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }
    fn filesystem_error_code(&mut self, err: Resource<wasmtime::Error>) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}
impl HostDescriptor for Guarded<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.inner, fd, offset, len, advice).await
    }
    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.inner, fd).await
    }
    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.inner, fd).await
    }
    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorType> {
        HostDescriptor::get_type(&mut self.inner, fd).await
    }
    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: types::Filesize) -> FsResult<()> {
        let charged = self.charge_write(&fd, size, 0);
        call::perform(charged, HostDescriptor::set_size(&mut self.inner, fd, size)).await
    }
    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let decided = call::decide_handle(self.guard, fd.rep(), FsOp::Write);
        call::perform(decided, HostDescriptor::set_times(&mut self.inner, fd, atim, mtim)).await
    }
    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.inner, fd, len, offset).await
    }
    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let charged = self.charge_write(&fd, offset, buf.len() as u64);
        call::perform(charged, HostDescriptor::write(&mut self.inner, fd, buf, offset)).await
    }
    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let hiding = self.guard.hiding_in(fd.rep());
        self.guard.note_listing(fd.rep());
        let stream = HostDescriptor::read_directory(&mut self.inner, fd).await?;
        if let Some(dir) = hiding {
            self.guard.listing(stream.rep(), dir);
        }
        Ok(stream)
    }
    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.inner, fd).await
    }
    async fn create_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let host = self.guard.host_path(fd.rep(), &path).into_owned();
        let decided = call::decide_create(self.guard, fd.rep(), &path, FsOp::Create);
        call::perform(decided, HostDescriptor::create_directory_at(&mut self.inner, fd, host)).await
    }
    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        let rep = fd.rep();
        let r = HostDescriptor::stat(&mut self.inner, fd).await;
        Ok(masked(self.guard, rep, r?))
    }
    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let (rep, follow) = (fd.rep(), path_flags.contains(types::PathFlags::SYMLINK_FOLLOW));
        let host = self.guard.host_path(rep, &path).into_owned();
        // Decided by the name, so stat the name itself (see
        // `FsGuard::check_name`); a link there is followed the full way.
        let by_name = match call::named(self.guard, rep, &path, FsOp::Stat) {
            Some(named) => call::by_name(named, follow, stat_name(&mut self.inner, rep, &host, follow)).await,
            None => None,
        };
        let stat = match by_name {
            Some(stat) => stat,
            None => {
                let decided = call::decide(self.guard, rep, &path, follow, FsOp::Stat);
                let stat = HostDescriptor::stat_at(&mut self.inner, fd, path_flags, host);
                call::perform(decided, stat).await
            }
        };
        stat.map(|s| masked(self.guard, rep, s))
    }
    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let (rep, follow) = (fd.rep(), path_flags.contains(types::PathFlags::SYMLINK_FOLLOW));
        let host = self.guard.host_path(rep, &path).into_owned();
        let decided = call::decide(self.guard, rep, &path, follow, FsOp::Write);
        let set = HostDescriptor::set_times_at(&mut self.inner, fd, path_flags, host, atim, mtim);
        call::perform(decided, set).await
    }
    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let follow = old_path_flags.contains(types::PathFlags::SYMLINK_FOLLOW);
        let (old, new) = ((fd.rep(), &*old_path, follow), (new_descriptor.rep(), &*new_path));
        let old_host = self.guard.host_path(fd.rep(), &old_path).into_owned();
        let new_host = self.guard.host_path(new_descriptor.rep(), &new_path).into_owned();
        let decided = call::decide_move(self.guard, old, new, FsOp::Link);
        let link = HostDescriptor::link_at(&mut self.inner, fd, old_path_flags, old_host, new_descriptor, new_host);
        call::perform(decided, link).await
    }
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let op = open_op(oflags, flags);
        let (rep, follow) = (fd.rep(), path_flags.contains(types::PathFlags::SYMLINK_FOLLOW));
        let host = self.guard.host_path(rep, &path).into_owned();
        let mut how = OpenHow {
            inner: &mut self.inner,
            rep,
            path: &host,
            path_flags,
            oflags,
            flags,
        };
        let (opened, loc) = call::open(self.guard, (rep, &path, follow), op, &mut how).await;
        let opened = opened?;
        self.guard.opened(opened.rep(), loc);
        Ok(opened)
    }
    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.guard.closed(fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }
    async fn readlink_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<String> {
        let host = self.guard.host_path(fd.rep(), &path).into_owned();
        let decided = call::decide(self.guard, fd.rep(), &path, false, FsOp::Read);
        call::perform(decided, HostDescriptor::readlink_at(&mut self.inner, fd, host)).await
    }
    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let rep = fd.rep();
        let decided = call::decide(self.guard, rep, &path, false, FsOp::Remove).map_err(code)?;
        let host = self.guard.host_path(rep, &path).into_owned();
        let mut target = host.clone();
        if host.len() > 1 && host.ends_with('/') {
            // POSIX: `rmdir("dir/")` removes the directory (wasmtime-wasi 48
            // answers `EINVAL`), `rmdir("file/")` is `ENOTDIR`.
            target = host.trim_end_matches('/').to_string();
            if !target.is_empty() {
                let stat = HostDescriptor::stat_at(
                    &mut self.inner,
                    Resource::new_borrow(rep),
                    types::PathFlags::empty(),
                    target.clone(),
                )
                .await?;
                if stat.type_ != types::DescriptorType::Directory {
                    return Err(types::ErrorCode::NotDirectory.into());
                }
            }
        }
        let remove = HostDescriptor::remove_directory_at(&mut self.inner, fd, target);
        call::settled(decided, remove).await
    }
    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let (old, new) = ((fd.rep(), &*old_path, false), (new_fd.rep(), &*new_path));
        let old_host = self.guard.host_path(fd.rep(), &old_path).into_owned();
        let new_host = self.guard.host_path(new_fd.rep(), &new_path).into_owned();
        let decided = call::decide_move(self.guard, old, new, FsOp::Rename);
        let rename = HostDescriptor::rename_at(&mut self.inner, fd, old_host, new_fd, new_host);
        call::perform(decided, rename).await
    }
    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let host = self.guard.host_path(fd.rep(), &dest_path).into_owned();
        let decided = call::decide_create(self.guard, fd.rep(), &dest_path, FsOp::Symlink);
        let symlink = HostDescriptor::symlink_at(&mut self.inner, fd, src_path, host);
        call::perform(decided, symlink).await
    }
    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let host = self.guard.host_path(fd.rep(), &path).into_owned();
        let decided = call::decide_unlink(self.guard, fd.rep(), &path);
        call::perform(decided, HostDescriptor::unlink_file_at(&mut self.inner, fd, host)).await
    }
    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }
    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let rep = fd.rep();
        let stream = HostDescriptor::write_via_stream(&mut self.inner, fd, offset)?;
        self.counted(stream, rep, Some(offset))
    }
    fn append_via_stream(&mut self, fd: Resource<types::Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        let rep = fd.rep();
        let stream = HostDescriptor::append_via_stream(&mut self.inner, fd)?;
        self.counted(stream, rep, None)
    }
    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.inner, a, b).await
    }
    async fn metadata_hash(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.inner, fd).await
    }
    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        // wasi-libc asks this of every entry it lists (for `d_ino`), so an
        // entry of a folder the guest holds is refused only when hidden.
        let follow = path_flags.contains(types::PathFlags::SYMLINK_FOLLOW);
        let host = self.guard.host_path(fd.rep(), &path).into_owned();
        let decided = call::decide_entry(self.guard, fd.rep(), &path, follow);
        let hash = HostDescriptor::metadata_hash_at(&mut self.inner, fd, path_flags, host);
        call::perform(decided, hash).await
    }
}
impl HostDirectoryEntryStream for Guarded<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        let rep = stream.rep();
        let mut stream = stream;
        loop {
            let entry = HostDirectoryEntryStream::read_directory_entry(&mut self.inner, stream).await?;
            stream = Resource::new_borrow(rep);
            let (Some(mut e), Some(dir)) = (entry.clone(), self.guard.listing_of(rep)) else {
                return Ok(entry);
            };
            match self.guard.shown(dir, &e.name) {
                Some(name) if name == e.name => return Ok(Some(e)),
                Some(name) => {
                    e.name = name.to_string();
                    return Ok(Some(e));
                }
                None => continue,
            }
        }
    }
    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.guard.closed(stream.rep());
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
