//! Compiling each guest once: an in-memory cache of linked programs keyed by
//! the content hash of the guest's bytes, and an optional on-disk cache of
//! precompiled native code keyed by that hash and the engine's configuration.
//!
//! Precompiled code is native code that wasmtime maps and runs without
//! validating it again, so nothing read from the disk cache is trusted for
//! where it lies or who owns it: every entry and every stamp carries a MAC
//! (HMAC-SHA256) made with a key kept in the kernel's user keyring (`key`),
//! and is used only when the MAC proves wasmcell wrote exactly those bytes
//! under exactly that name. [`DiskCache::open`] also accepts only a directory
//! owned by the current user and writable by nobody else.

mod key;

pub use key::CacheKeyError;

use crate::policy::Policy;
use anyhow::{Context as _, Result, bail};
use key::{CacheKey, Domain, TAG_LEN};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::hash::Hash as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The SHA-256 of a guest's bytes, as given to the engine (before any WAT
/// translation).
pub(crate) type ContentHash = [u8; 32];

pub(crate) fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

/// `bytes` in lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// How many compiled programs an engine keeps in memory. Loading a program
/// already in the cache costs a hash of its bytes; past this many distinct
/// programs the least recently loaded one is dropped (programs still in use
/// stay alive through their own handles).
pub const MEMORY_CACHE_CAPACITY: usize = 128;

/// The in-memory cache: one slot per content hash. A slot is locked while its
/// program compiles, so two threads loading the same bytes compile them once.
pub(crate) struct MemoryCache<T> {
    slots: Mutex<Slots<T>>,
}

struct Slots<T> {
    map: HashMap<ContentHash, Arc<Mutex<Option<T>>>>,
    /// Least recently used first.
    order: VecDeque<ContentHash>,
}

impl<T: Clone> MemoryCache<T> {
    pub(crate) fn new() -> Self {
        MemoryCache {
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The cached value for `hash`, or the one `make` produces, which is
    /// cached when it succeeds. Concurrent callers with the same hash wait for
    /// the first; callers with other hashes do not.
    pub(crate) fn get_or_try_insert<E>(&self, hash: ContentHash, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.map.entry(hash).or_default().clone();
            slots.order.retain(|h| *h != hash);
            slots.order.push_back(hash);
            while slots.order.len() > MEMORY_CACHE_CAPACITY {
                if let Some(old) = slots.order.pop_front() {
                    slots.map.remove(&old);
                }
            }
            slot
        };
        let mut value = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = &*value {
            return Ok(value.clone());
        }
        let made = make()?;
        *value = Some(made.clone());
        Ok(made)
    }
}

/// Counts of how programs were obtained, for tests, benchmarks and hosts that
/// want to know whether their caches work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Programs compiled from Wasm (cache misses everywhere).
    pub compiled: u64,
    /// Loads answered from the in-memory cache.
    pub memory_hits: u64,
    /// Loads answered from the on-disk cache.
    pub disk_hits: u64,
    /// Cache files that could not be written or read back (the program was
    /// compiled and ran regardless).
    pub disk_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) compiled: AtomicU64,
    pub(crate) memory_hits: AtomicU64,
    pub(crate) disk_hits: AtomicU64,
    pub(crate) disk_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            disk_errors: self.disk_errors.load(Ordering::Relaxed),
        }
    }
}

/// A directory of precompiled guests, shared by every process of one user.
///
/// Entries are named by the SHA-256 of the guest and of the engine's
/// compatibility fingerprint (wasmtime version, target, compiler flags, fuel,
/// stack size and allocator), so an engine only ever finds code compiled for
/// exactly its configuration. Entries are written to a temporary file and
/// renamed into place, so concurrent processes never see half a file.
/// Deleting the directory, or any file in it, at any time is safe.
///
/// Beside the code, the cache keeps a small record per guest file: its
/// device, inode, size and modification and status-change times, and the
/// SHA-256 of the bytes it held. A later load of the same unchanged file
/// takes the hash from the record instead of reading and hashing the file,
/// which is most of a warm start for a large guest. Any write to the file
/// changes its status-change time, so a changed file is always read again;
/// a file is recorded only once it has been unchanged for 2 seconds, longer
/// than the file-time clock's granularity.
///
/// # Security
///
/// The code in an entry runs unvalidated, and a guest whose read-write grant
/// covers the directory (in any run) can write files there that look just
/// like wasmcell's. So each entry and each record ends with a MAC
/// (HMAC-SHA256) over its name and contents, made with a 32-byte key that
/// [`DiskCache::open`] takes from the kernel's user keyring, where no guest
/// reaches; an entry or record without a valid MAC is ignored (the guest is
/// compiled again and the entry rewritten). The code is read into memory,
/// checked there, and deserialized from those same bytes, so a file changed
/// after the check changes nothing. Any process of the same user can read the
/// key, as it could change the wasmcell binary itself. A run whose own
/// read-write grants reach the directory does not use it at all (see
/// [`CacheInGrant`]).
///
/// # Example
///
/// ```
/// use wasmcell::{DiskCache, Engine, EngineConfig};
///
/// let dir = tempfile::tempdir()?;
/// let hello = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
///
/// let first = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(dir.path().join("cache"))?)?;
/// first.load_bytes("hello.wasm", hello.as_bytes())?;
/// assert_eq!(first.cache_stats().compiled, 1);
///
/// // A later engine (say, in the next process) finds the code on disk.
/// let second = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(dir.path().join("cache"))?)?;
/// second.load_bytes("hello.wasm", hello.as_bytes())?;
/// assert_eq!((second.cache_stats().compiled, second.cache_stats().disk_hits), (0, 1));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    key: CacheKey,
}

impl DiskCache {
    /// The directory `wasmcell run` uses unless told otherwise:
    /// `$WASMCELL_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmcell`, else
    /// `$HOME/.cache/wasmcell`. `None` when none of these is set.
    pub fn default_dir() -> Option<PathBuf> {
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        env("WASMCELL_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wasmcell")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("wasmcell")))
    }

    /// Opens (creating it, owner-only, if needed) the cache directory `dir`,
    /// with this user's cache key from the kernel's user keyring (created on
    /// first use).
    ///
    /// # Errors
    ///
    /// A [`CacheKeyError`] (find it with `downcast_ref`) when the keyring
    /// cannot give the key: no entry could then prove where it came from, so
    /// there is no disk cache without it. Otherwise, when the directory cannot
    /// be created, is not a directory, or (on Unix) is owned by another user
    /// or writable by group or others.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DiskCache> {
        let key = CacheKey::from_keyring()?;
        DiskCache::open_dir(dir.into(), key)
    }

    /// Like [`DiskCache::open`], with a key the host keeps itself instead of
    /// the kernel keyring's (for a system without it, or a container whose
    /// seccomp profile refuses `keyctl`).
    ///
    /// # Security
    ///
    /// The key is what makes cached native code trustworthy: whoever can read
    /// it can make the host run code of their choice. Keep it where no guest
    /// can read it in any run (never in a folder a policy grants), make it 32
    /// random bytes, and use one key per user and cache.
    ///
    /// # Errors
    ///
    /// As [`DiskCache::open`], except that there is no keyring to fail.
    pub fn open_with_key(dir: impl Into<PathBuf>, key: [u8; 32]) -> Result<DiskCache> {
        DiskCache::open_dir(dir.into(), CacheKey::from_bytes(key))
    }

    fn open_dir(dir: PathBuf, key: CacheKey) -> Result<DiskCache> {
        create_private_dir(&dir)
            .with_context(|| format!("failed to create the compile cache directory `{}`", dir.display()))?;
        let meta = std::fs::metadata(&dir)
            .with_context(|| format!("failed to open the compile cache directory `{}`", dir.display()))?;
        if !meta.is_dir() {
            bail!(
                "the compile cache `{}` is not a directory; remove it, or open the cache in another directory",
                dir.display()
            );
        }
        check_private(&meta).map_err(|why| {
            anyhow::anyhow!(
                "refusing the compile cache directory `{}`: {why}; run `chmod 700` on it, or open the cache in another directory",
                dir.display()
            )
        })?;
        Ok(DiskCache { dir, key })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the code for `hash` compiled by an engine with fingerprint
    /// `engine_key` lives.
    #[cfg(test)]
    pub(crate) fn entry(&self, hash: &ContentHash, engine_key: &str) -> PathBuf {
        self.dir.join(entry_name(hash, engine_key))
    }

    /// The code stored for a guest of `size` bytes with `hash`, compiled by
    /// an engine with fingerprint `engine_key`, when the entry exists and its
    /// MAC proves wasmcell wrote these very bytes under this very name.
    /// `Ok(None)`: no entry. `Err` explains an entry that is not used (and
    /// that the next store replaces).
    pub(crate) fn read_code(&self, hash: &ContentHash, engine_key: &str, size: u64) -> Result<Option<Vec<u8>>, String> {
        let name = entry_name(hash, engine_key);
        let limit = max_entry_size(size).saturating_add(TAG_LEN as u64);
        let Some(mut code) = read_private(&self.dir.join(&name), limit)? else {
            return Ok(None);
        };
        let Some(at) = code.len().checked_sub(TAG_LEN) else {
            return Err("shorter than its MAC".into());
        };
        let tag = code.split_off(at);
        if !self.key.verify(Domain::Entry, name.as_bytes(), &code, &tag) {
            return Err("its MAC does not match: wasmcell did not write it".into());
        }
        Ok(Some(code))
    }

    /// Stores `code` compiled from a guest of `size` bytes with `hash` by an
    /// engine with fingerprint `engine_key`, with its MAC, atomically and
    /// readable and writable by the owner only. Code too large to be read
    /// back ([`max_entry_size`]) is not stored.
    pub(crate) fn store_code(
        &self,
        hash: &ContentHash,
        engine_key: &str,
        size: u64,
        code: &[u8],
    ) -> std::io::Result<()> {
        if code.len() as u64 > max_entry_size(size) {
            return Err(std::io::Error::other("compiled code too large to cache"));
        }
        let name = entry_name(hash, engine_key);
        let tag = self.key.tag(Domain::Entry, name.as_bytes(), code);
        let mut tmp = self.private_tempfile()?;
        tmp.write_all(code)?;
        tmp.write_all(&tag)?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.dir.join(name)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn entry_name(hash: &ContentHash, engine_key: &str) -> String {
    format!("{}-{engine_key}.cwasm", hex(hash))
}

/// The largest entry read back for a guest of `size` bytes: compiled code is
/// a few times the size of the Wasm it came from, so anything far larger was
/// not written by wasmcell, and reading it whole would let whoever planted
/// it make the host allocate at will.
fn max_entry_size(size: u64) -> u64 {
    size.saturating_mul(16).saturating_add(64 << 20)
}

/// The contents of the regular file at `path`, opened without following a
/// link and without blocking on a FIFO, when it is owned by this user,
/// writable by nobody else and at most `limit` bytes long. `Ok(None)` when
/// there is no such file; `Err` says why an existing one is not read.
fn read_private(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    check_private(&meta)?;
    if meta.len() > limit {
        return Err(format!("{} bytes, more than wasmcell writes there", meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    if data.len() as u64 > limit {
        return Err("it grew while it was read".into());
    }
    Ok(Some(data))
}

/// A compile cache folder that one of a run's read-write grants can write:
/// the run neither reads nor writes it, and compiles its guest instead.
///
/// Rule: a run never takes compiled code, or a file stamp, from a folder its
/// guest could have written, whatever the MACs say. A
/// [`Sandbox`](crate::Sandbox) built on an engine with a [`DiskCache`] that
/// its policy's read-write grants reach ([`Policy::writable_overlap`]) loads
/// through the engine without the disk cache, and says why through
/// [`Sandbox::cache_in_grant`](crate::Sandbox::cache_in_grant); the CLI prints
/// it as a warning, and `wasmcell check` names it for the default cache.
///
/// # Example
///
/// ```
/// use wasmcell::{CacheInGrant, DiskCache, Engine, EngineConfig, Policy, Sandbox};
/// use wasmcell::policy::Access;
///
/// let work = tempfile::tempdir()?;
/// let cache = DiskCache::open(work.path().join("cache"))?;
/// let policy = Policy::builder().grant_dir(work.path(), "/work", Access::ReadWrite).build()?;
/// assert!(CacheInGrant::find(&policy, cache.dir()).is_some());
///
/// let engine = Engine::with_disk_cache(EngineConfig::for_policy(&policy), cache)?;
/// let sandbox = Sandbox::builder().engine(engine).policy(policy).build()?;
/// let why = sandbox.cache_in_grant().expect("the grant reaches the cache");
/// assert_eq!(why.guest(), "/work");
/// assert!(sandbox.engine().disk_cache().is_none(), "its loads skip the disk cache");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInGrant {
    dir: PathBuf,
    host: PathBuf,
    guest: String,
}

impl CacheInGrant {
    /// The first read-write grant of `policy` that reaches the cache folder
    /// `dir`, if any ([`Policy::writable_overlap`]).
    pub fn find(policy: &Policy, dir: &Path) -> Option<CacheInGrant> {
        let (host, guest) = policy.writable_overlap(dir)?;
        Some(CacheInGrant {
            dir: dir.to_path_buf(),
            host,
            guest,
        })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The granted folder or file on the host.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Its guest path.
    pub fn guest(&self) -> &str {
        &self.guest
    }
}

impl fmt::Display for CacheInGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not using the compile cache `{}`: the read-write grant at `{}` (host `{}`) reaches it, so the guest \
             could plant compiled code there",
            self.dir.display(),
            self.guest,
            self.host.display()
        )
    }
}

/// How long ago a file must have last changed before its [`FileStamp`] is
/// recorded. File times come from a coarse clock (a few milliseconds on
/// Linux), so a file written twice within one tick can keep the same times;
/// past this age, a later change always shows in them (git's index treats
/// "racily clean" entries the same way).
const STAMP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies a file's contents without reading them: device, inode,
/// size, and the modification and status-change times to the nanosecond.
/// Any write to the file, a rename over it or a `touch` changes the
/// status-change time, which no user can set back; so while the stamp holds,
/// the bytes are the ones hashed when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp(String);

impl FileStamp {
    /// The stamp of an open file's metadata; `None` where the platform does
    /// not expose inodes and status-change times.
    #[cfg(unix)]
    pub(crate) fn of(meta: &std::fs::Metadata) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt as _;
        if !meta.is_file() {
            return None;
        }
        let fields = [
            meta.dev().to_string(),
            meta.ino().to_string(),
            meta.size().to_string(),
            format!("{}.{:09}", meta.mtime(), meta.mtime_nsec()),
            format!("{}.{:09}", meta.ctime(), meta.ctime_nsec()),
        ];
        Some(FileStamp(fields.join(" ")))
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_meta: &std::fs::Metadata) -> Option<FileStamp> {
        None
    }

    /// Whether the file last changed long enough before `now` for the stamp
    /// to be recorded ([`STAMP_MIN_AGE`]).
    #[cfg(unix)]
    fn settled(meta: &std::fs::Metadata, now: std::time::SystemTime) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else {
            return false;
        };
        let time = |secs: i64, nanos: i64| {
            let secs = u64::try_from(secs).ok()?;
            Some(std::time::Duration::new(secs, u32::try_from(nanos).ok()?))
        };
        let (Some(modified), Some(changed)) = (
            time(meta.mtime(), meta.mtime_nsec()),
            time(meta.ctime(), meta.ctime_nsec()),
        ) else {
            return false;
        };
        now.checked_sub(modified.max(changed))
            .is_some_and(|age| age >= STAMP_MIN_AGE)
    }

    #[cfg(not(unix))]
    fn settled(_meta: &std::fs::Metadata, _now: std::time::SystemTime) -> bool {
        false
    }
}

impl DiskCache {
    /// Where the content hash of the file with `stamp` is recorded.
    fn stamp_entry(&self, stamp: &FileStamp) -> PathBuf {
        let key: ContentHash = Sha256::digest(stamp.0.as_bytes()).into();
        self.dir.join(format!("{}.stamp", hex(&key[..16])))
    }

    /// The content hash recorded for a file with this stamp, if there is a
    /// record whose MAC proves wasmcell wrote it for this stamp.
    pub(crate) fn hash_for(&self, stamp: &FileStamp) -> Option<ContentHash> {
        let data = read_private(&self.stamp_entry(stamp), STAMP_RECORD_LIMIT).ok()??;
        let text = std::str::from_utf8(&data).ok()?;
        let (rest, tag) = text.strip_suffix('\n')?.rsplit_once(' ')?;
        let (recorded, hash) = rest.rsplit_once(' ')?;
        // The stamp itself is kept too: two stamps whose keys collide in the
        // file name never pass for each other.
        if recorded != stamp.0 {
            return None;
        }
        let hash: ContentHash = unhex(hash)?;
        let tag: [u8; TAG_LEN] = unhex(tag)?;
        self.key
            .verify(Domain::Stamp, stamp.0.as_bytes(), &hash, &tag)
            .then_some(hash)
    }

    /// Records that the file whose metadata is `meta` holds bytes with
    /// `hash`, unless it changed too recently to tell a later change apart
    /// ([`STAMP_MIN_AGE`]). A record that cannot be written only costs the
    /// next load a hash.
    pub(crate) fn record_hash(&self, meta: &std::fs::Metadata, hash: &ContentHash) {
        self.record_hash_at(meta, hash, std::time::SystemTime::now());
    }

    fn record_hash_at(&self, meta: &std::fs::Metadata, hash: &ContentHash, now: std::time::SystemTime) {
        let Some(stamp) = FileStamp::of(meta) else { return };
        if !FileStamp::settled(meta, now) || self.hash_for(&stamp) == Some(*hash) {
            return;
        }
        let tag = self.key.tag(Domain::Stamp, stamp.0.as_bytes(), hash);
        let record = format!("{} {} {}\n", stamp.0, hex(hash), hex(&tag));
        let _ = self.store_unsynced(&self.stamp_entry(&stamp), record.as_bytes());
    }

    /// Writes `data` to `path` atomically, owner-only, without the `fsync`:
    /// a stamp record lost or torn by a crash fails its MAC and is ignored.
    fn store_unsynced(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let mut tmp = self.private_tempfile()?;
        tmp.write_all(data)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The most bytes of a stamp record read: wasmcell's are about 200.
const STAMP_RECORD_LIMIT: u64 = 4096;

/// `N` bytes from exactly `2 * N` hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl DiskCache {
    /// A temporary file in the cache directory, readable and writable by the
    /// owner only, to be renamed into place.
    fn private_tempfile(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tmp-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        builder.tempfile_in(&self.dir)
    }
}

/// A stable fingerprint of everything that decides whether precompiled code
/// fits `engine`: wasmtime's own compatibility hash, fed through SHA-256 so
/// it does not depend on the standard library's hasher.
pub(crate) fn engine_key(engine: &wasmtime::Engine) -> String {
    struct ShaHasher(Sha256);
    impl std::hash::Hasher for ShaHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is used")
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..16])
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Owned by this user and not writable by group or others.
#[cfg(unix)]
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Without Unix ownership and modes there is nothing to check; the directory's
/// ACLs are the user's responsibility.
#[cfg(not(unix))]
fn check_private(_meta: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cache_makes_once_and_evicts_the_least_recently_used() {
        let cache = MemoryCache::new();
        let mut made = 0;
        for _ in 0..3 {
            let v: Result<u32, ()> = cache.get_or_try_insert([1; 32], || {
                made += 1;
                Ok(7)
            });
            assert_eq!(v, Ok(7));
        }
        assert_eq!(made, 1);
        // A failure is not cached.
        assert_eq!(cache.get_or_try_insert([2; 32], || Err::<u32, _>("bad")), Err("bad"));
        assert_eq!(cache.get_or_try_insert([2; 32], || Ok::<_, ()>(8)), Ok(8));
        for i in 0..MEMORY_CACHE_CAPACITY as u8 {
            let _ = cache.get_or_try_insert([i.wrapping_add(3); 32], || Ok::<_, ()>(0));
        }
        let slots = cache.slots.lock().unwrap();
        assert_eq!(slots.map.len(), MEMORY_CACHE_CAPACITY);
        assert!(!slots.map.contains_key(&[1; 32]), "the oldest entry is evicted");
    }

    #[cfg(unix)]
    #[test]
    fn disk_cache_refuses_directories_others_can_write() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let cache = DiskCache::open(&dir).unwrap();
        let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "created owner-only");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = DiskCache::open(&dir).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");

        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(DiskCache::open(&file).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn file_stamps_are_recorded_once_settled_and_never_match_a_changed_file() {
        use std::time::{Duration, SystemTime};
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(tmp.path().join("c")).unwrap();
        let file = tmp.path().join("guest.wasm");
        std::fs::write(&file, b"(module)").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let stamp = FileStamp::of(&meta).unwrap();
        let hash = content_hash(b"(module)");

        // Just written: a second write in the same clock tick could keep the
        // same times, so nothing is recorded yet.
        cache.record_hash(&meta, &hash);
        assert_eq!(cache.hash_for(&stamp), None);

        let later = SystemTime::now() + STAMP_MIN_AGE + Duration::from_secs(1);
        cache.record_hash_at(&meta, &hash, later);
        assert_eq!(cache.hash_for(&stamp), Some(hash));

        // Any change to the file's times (a write, a touch) is another stamp.
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        let touched = FileStamp::of(&std::fs::metadata(&file).unwrap()).unwrap();
        assert_ne!(touched, stamp);
        assert_eq!(cache.hash_for(&touched), None);

        // A record someone else could have written is not read.
        use std::os::unix::fs::PermissionsExt as _;
        let record = cache.stamp_entry(&stamp);
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(cache.hash_for(&stamp), None);
    }

    fn keyed(dir: &Path, key: u8) -> DiskCache {
        DiskCache::open_with_key(dir, [key; 32]).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn cache_entries_are_private_and_prove_who_wrote_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let cache = keyed(&tmp.path().join("c"), 1);
        let (victim, other) = ([0xab; 32], [0xcd; 32]);
        assert_eq!(cache.read_code(&victim, "k", 100), Ok(None));
        cache.store_code(&victim, "k", 100, b"victim code").unwrap();
        cache.store_code(&other, "k", 100, b"other code").unwrap();
        let path = cache.entry(&victim, "k");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(cache.read_code(&victim, "k", 100), Ok(Some(b"victim code".to_vec())));

        let refused = |cache: &DiskCache| cache.read_code(&victim, "k", 100).unwrap_err();
        // Another guest's valid entry copied over this one: its MAC names
        // the other guest.
        std::fs::copy(cache.entry(&other, "k"), &path).unwrap();
        assert!(refused(&cache).contains("MAC"), "{}", refused(&cache));
        // Patched code, a cut-off MAC, an entry of the old unsigned format.
        cache.store_code(&victim, "k", 100, b"victim code").unwrap();
        let mut patched = std::fs::read(&path).unwrap();
        patched[0] ^= 0xcc;
        for forged in [&patched[..], &patched[1..], b"victim code", b""] {
            std::fs::write(&path, forged).unwrap();
            refused(&cache);
        }
        // The right bytes under another key, as after a lost key.
        cache.store_code(&victim, "k", 100, b"victim code").unwrap();
        refused(&keyed(&tmp.path().join("c"), 2));
        // Under another engine's fingerprint, the same code is another name.
        std::fs::copy(&path, cache.entry(&victim, "j")).unwrap();
        assert!(cache.read_code(&victim, "j", 100).is_err());
        // Someone else could have written it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(refused(&cache).contains("writable by group or others"));
    }

    #[cfg(unix)]
    #[test]
    fn odd_files_in_place_of_entries_are_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = keyed(&tmp.path().join("c"), 1);
        let hash = [0xab; 32];
        let path = cache.entry(&hash, "k");
        // A FIFO would block a plain open for ever.
        let fifo = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(cache.read_code(&hash, "k", 100), Err("not a regular file".into()));
        std::fs::remove_file(&path).unwrap();
        // A link to a valid entry is not followed.
        cache.store_code(&[0xcd; 32], "k", 100, b"code").unwrap();
        std::os::unix::fs::symlink(cache.entry(&[0xcd; 32], "k"), &path).unwrap();
        assert!(cache.read_code(&hash, "k", 100).is_err());
        std::fs::remove_file(&path).unwrap();
        // Far larger than code compiled from 100 bytes: not read at all.
        let huge = std::fs::File::create(&path).unwrap();
        huge.set_len(max_entry_size(100) + TAG_LEN as u64 + 1).unwrap();
        assert!(
            cache
                .read_code(&hash, "k", 100)
                .unwrap_err()
                .contains("more than wasmcell writes")
        );
        // Nor is code that large stored.
        let code = vec![0u8; max_entry_size(0) as usize + 1];
        assert!(cache.store_code(&hash, "k", 0, &code).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn stamp_records_prove_who_wrote_them() {
        use std::time::{Duration, SystemTime};
        let tmp = tempfile::tempdir().unwrap();
        let cache = keyed(&tmp.path().join("c"), 1);
        let file = tmp.path().join("guest.wasm");
        std::fs::write(&file, b"(module)").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let stamp = FileStamp::of(&meta).unwrap();
        let (hash, other) = (content_hash(b"(module)"), content_hash(b"other"));
        let later = SystemTime::now() + STAMP_MIN_AGE + Duration::from_secs(1);
        cache.record_hash_at(&meta, &hash, later);
        assert_eq!(cache.hash_for(&stamp), Some(hash));

        // The record rewritten to name another guest's hash, keeping its MAC,
        // or without a MAC as records used to be.
        let record = cache.stamp_entry(&stamp);
        let text = std::fs::read_to_string(&record).unwrap();
        let swapped = text.replace(&hex(&hash), &hex(&other));
        let unsigned = format!("{} {}\n", stamp.0, hex(&other));
        for forged in [swapped, unsigned] {
            std::fs::write(&record, forged).unwrap();
            assert_eq!(cache.hash_for(&stamp), None);
        }
        // Under another key (a lost key) the real record is not trusted either,
        // and recording again replaces it.
        std::fs::write(&record, &text).unwrap();
        let rekeyed = keyed(&tmp.path().join("c"), 2);
        assert_eq!(rekeyed.hash_for(&stamp), None);
        rekeyed.record_hash_at(&meta, &hash, later);
        assert_eq!(rekeyed.hash_for(&stamp), Some(hash));
    }
}
