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
use super::guard::{Checked, Refusal};
use super::quota::{Quota, QuotaStream, size_of};
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

/// Whether `e` ends the run (a trap, such as a full handle table) rather
/// than answering the guest with an error code.
fn is_trap(e: &FsError) -> bool {
    e.downcast_ref().is_none()
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

impl Guarded<'_> {
    fn check(&self, fd: &Resource<types::Descriptor>, path: &str, follow: bool, op: FsOp) -> FsResult<Checked> {
        self.guard.check(fd.rep(), path, follow, op).map_err(code)
    }

    /// Counts and audits a call the guard let through: what wasmtime-wasi
    /// refused on its own as a refusal, the rest as uses.
    fn after<T>(&self, result: FsResult<T>, base: u32, path: &str, op: FsOp) -> FsResult<T> {
        use types::ErrorCode as E;
        // Any other answer (a missing file, say) is a use the policy allowed.
        match &result {
            Err(e) if matches!(e.downcast_ref(), Some(E::Access | E::NotPermitted | E::ReadOnly)) => {
                self.guard.refused_by_wasi(base, path, op);
            }
            _ => self.guard.allowed(base, path, op),
        }
        result
    }
}

impl Guarded<'_> {
    /// [`after`](Self::after), also giving back a creation charged for a
    /// call that failed.
    fn settle<T>(
        &self,
        result: FsResult<T>,
        charged: Option<Arc<Quota>>,
        base: u32,
        path: &str,
        op: FsOp,
    ) -> FsResult<T> {
        if result.is_err() {
            charged.inspect(|q| q.refund_file());
        }
        self.after(result, base, path, op)
    }

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
    fn charge_write(
        &self,
        fd: &Resource<types::Descriptor>,
        at: Option<u64>,
        len: u64,
    ) -> FsResult<Option<(Arc<Quota>, u64)>> {
        let Some(CountedFile { quota, target, file }) = self.counted_file(fd)? else {
            return Ok(None);
        };
        let size = size_of(&file);
        let growth = at.unwrap_or(size).saturating_add(len).saturating_sub(size);
        if !quota.charge_bytes(&target, growth) {
            return Err(code(Refusal::Full));
        }
        Ok(Some((quota, growth)))
    }

    fn refund_failed<T>(result: &FsResult<T>, charged: Option<(Arc<Quota>, u64)>) {
        if let (Err(_), Some((quota, growth))) = (result, charged) {
            quota.refund_bytes(growth);
        }
    }

    /// A stat of something `rep`'s grant holds, as a grant that hides paths
    /// gives it: no count of a folder's entries, hidden ones included (see
    /// `fs::FOLDER_SIZE`).
    fn masked(&self, rep: u32, mut stat: types::DescriptorStat) -> types::DescriptorStat {
        if self.guard.hides(rep) {
            stat.link_count = stat.link_count.min(super::MAX_LINK_COUNT);
            if stat.type_ == types::DescriptorType::Directory {
                stat.size = super::FOLDER_SIZE;
            }
        }
        stat
    }

    /// `stat-at` of `path` decided by its name alone, not following a link
    /// there (see [`FsGuard::check_name`]). `None` when the name does not
    /// decide, or when `follow` asks to follow and the stat failed or found
    /// a link: then the caller checks and stats the full way.
    async fn stat_by_name(&mut self, rep: u32, path: &str, follow: bool) -> Option<FsResult<types::DescriptorStat>> {
        self.guard.check_name(rep, path, FsOp::Stat)?;
        let at = Resource::new_borrow(rep);
        let stat = HostDescriptor::stat_at(&mut self.inner, at, types::PathFlags::empty(), path.to_string()).await;
        match stat {
            Ok(s) if follow && s.type_ == types::DescriptorType::SymbolicLink => None,
            Err(e) if follow && !is_trap(&e) => None,
            r => Some(r),
        }
    }

    /// `open-at` of `path` decided by its name ([`FsGuard::open_name`]),
    /// not following a link there. `None` when the name does not decide, or
    /// when the open failed with an error code and the full way must check
    /// and open it as the guest asked (a link at the name, an existing name
    /// for a counted creation); a trap ends the run.
    async fn open_by_name(
        &mut self,
        rep: u32,
        path: &str,
        follow: bool,
        (op, oflags, flags): (FsOp, types::OpenFlags, types::DescriptorFlags),
    ) -> Option<FsResult<Resource<types::Descriptor>>> {
        let named = self.guard.open_name(rep, path, op)?;
        let at = Resource::new_borrow(rep);
        // `symlink-follow` is the only path flag.
        let no_follow = types::PathFlags::empty();
        let oflags = match named.exclusive {
            true => oflags | types::OpenFlags::EXCLUSIVE,
            false => oflags,
        };
        match HostDescriptor::open_at(&mut self.inner, at, no_follow, path.to_string(), oflags, flags).await {
            Ok(opened) => {
                self.guard.allowed(rep, path, op);
                self.guard.opened(opened.rep(), named.checked.loc);
                Some(Ok(opened))
            }
            // Without following, nothing else differs: the answer stands.
            Err(e) if is_trap(&e) || !follow && !named.exclusive => {
                Some(self.settle(Err(e), named.charged, rep, path, op))
            }
            Err(_) => {
                named.charged.inspect(|q| q.refund_file());
                None
            }
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
        let charged = self.charge_write(&fd, Some(size), 0)?;
        let r = HostDescriptor::set_size(&mut self.inner, fd, size).await;
        Self::refund_failed(&r, charged);
        r
    }
    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.guard.check_handle(fd.rep(), FsOp::Write).map_err(code)?;
        HostDescriptor::set_times(&mut self.inner, fd, atim, mtim).await
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
        let charged = self.charge_write(&fd, Some(offset), buf.len() as u64)?;
        let r = HostDescriptor::write(&mut self.inner, fd, buf, offset).await;
        Self::refund_failed(&r, charged);
        r
    }
    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let hiding = self.guard.hiding_in(fd.rep());
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
        let rep = fd.rep();
        let checked = self.check(&fd, &path, false, FsOp::Create)?;
        let charged = self.guard.charge_create(&checked, false).map_err(code)?;
        let r = HostDescriptor::create_directory_at(&mut self.inner, fd, path.clone()).await;
        self.settle(r, charged, rep, &path, FsOp::Create)
    }
    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        let rep = fd.rep();
        let r = HostDescriptor::stat(&mut self.inner, fd).await;
        Ok(self.masked(rep, r?))
    }
    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let (rep, follow) = (fd.rep(), path_flags.contains(types::PathFlags::SYMLINK_FOLLOW));
        if let Some(r) = self.stat_by_name(rep, &path, follow).await {
            return self.after(r, rep, &path, FsOp::Stat).map(|s| self.masked(rep, s));
        }
        self.check(&fd, &path, follow, FsOp::Stat)?;
        let r = HostDescriptor::stat_at(&mut self.inner, fd, path_flags, path.clone()).await;
        self.after(r, rep, &path, FsOp::Stat).map(|s| self.masked(rep, s))
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
        self.check(&fd, &path, follow, FsOp::Write)?;
        let r = HostDescriptor::set_times_at(&mut self.inner, fd, path_flags, path.clone(), atim, mtim).await;
        self.after(r, rep, &path, FsOp::Write)
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
        let (rep, new_rep) = (fd.rep(), new_descriptor.rep());
        let to = self
            .guard
            .check_move((rep, &old_path, follow), (new_rep, &new_path), FsOp::Link)
            .map_err(code)?;
        let charged = self.guard.charge_create(&to, false).map_err(code)?;
        let r = HostDescriptor::link_at(
            &mut self.inner,
            fd,
            old_path_flags,
            old_path,
            new_descriptor,
            new_path.clone(),
        )
        .await;
        self.settle(r, charged, new_rep, &new_path, FsOp::Link)
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
        if let Some(opened) = self.open_by_name(rep, &path, follow, (op, oflags, flags)).await {
            return opened;
        }
        let checked = self.check(&fd, &path, follow, op)?;
        let mut charged = None;
        if op == FsOp::Create && self.guard.counts_files(&checked) {
            let exists = match checked.exists {
                Some(exists) => exists,
                None => {
                    let at = Resource::new_borrow(rep);
                    let stat = HostDescriptor::stat_at(&mut self.inner, at, path_flags, path.clone()).await;
                    stat.is_ok()
                }
            };
            charged = self.guard.charge_create(&checked, exists).map_err(code)?;
        }
        let opened = HostDescriptor::open_at(&mut self.inner, fd, path_flags, path.clone(), oflags, flags).await;
        let opened = self.settle(opened, charged, rep, &path, op)?;
        self.guard.opened(opened.rep(), checked.loc);
        Ok(opened)
    }
    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.guard.closed(fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }
    async fn readlink_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<String> {
        let rep = fd.rep();
        self.check(&fd, &path, false, FsOp::Read)?;
        let r = HostDescriptor::readlink_at(&mut self.inner, fd, path.clone()).await;
        self.after(r, rep, &path, FsOp::Read)
    }
    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let rep = fd.rep();
        self.check(&fd, &path, false, FsOp::Remove)?;
        let mut target = path.clone();
        if path.len() > 1 && path.ends_with('/') {
            // POSIX: `rmdir("dir/")` removes the directory (wasmtime-wasi 48
            // answers `EINVAL`), `rmdir("file/")` is `ENOTDIR`.
            target = path.trim_end_matches('/').to_string();
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
        let r = HostDescriptor::remove_directory_at(&mut self.inner, fd, target).await;
        self.after(r, rep, &path, FsOp::Remove)
    }
    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let (rep, new_rep) = (fd.rep(), new_fd.rep());
        self.guard
            .check_move((rep, &old_path, false), (new_rep, &new_path), FsOp::Rename)
            .map_err(code)?;
        let r = HostDescriptor::rename_at(&mut self.inner, fd, old_path.clone(), new_fd, new_path).await;
        self.after(r, rep, &old_path, FsOp::Rename)
    }
    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let rep = fd.rep();
        let checked = self.guard.check_symlink(fd.rep(), &dest_path).map_err(code)?;
        let charged = self.guard.charge_create(&checked, false).map_err(code)?;
        let r = HostDescriptor::symlink_at(&mut self.inner, fd, src_path, dest_path.clone()).await;
        self.settle(r, charged, rep, &dest_path, FsOp::Symlink)
    }
    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let rep = fd.rep();
        // A link at the name is removed, not followed: its name decides.
        if self.guard.check_name(rep, &path, FsOp::Remove).is_none() {
            self.check(&fd, &path, false, FsOp::Remove)?;
        }
        let r = HostDescriptor::unlink_file_at(&mut self.inner, fd, path.clone()).await;
        self.after(r, rep, &path, FsOp::Remove)
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
        // wasi-libc asks this of every entry it lists (for `d_ino`): for
        // an entry of a directory the guest holds (one name, no link
        // followed: it is where it leads) only a hidden name is refused, so
        // that a listing shows visible denied names; any other path is
        // decided as `stat` is.
        let (rep, follow) = (fd.rep(), path_flags.contains(types::PathFlags::SYMLINK_FOLLOW));
        let entry = !follow && !path.is_empty() && !path.contains('/') && path != "." && path != "..";
        if entry {
            self.guard.check_entry(rep, &path).map_err(code)?;
        } else {
            self.check(&fd, &path, follow, FsOp::Stat)?;
        }
        let r = HostDescriptor::metadata_hash_at(&mut self.inner, fd, path_flags, path.clone()).await;
        self.after(r, rep, &path, FsOp::Stat)
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
            match (entry, self.guard.listing_of(rep)) {
                (Some(e), Some(dir)) if self.guard.hidden(dir, &e.name) => continue,
                (entry, _) => return Ok(entry),
            }
        }
    }
    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.guard.closed(stream.rep());
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
