//! Host-side opens of paths the policy or the command line names: preopened
//! directories, stdio files and files the host writes itself ([`HostFile`],
//! such as the CLI's report).
//!
//! A guest with a read-write grant can replace any file or directory inside
//! it with a symbolic link, between runs or while it runs. wasmtime-wasi keeps
//! the guest's own opens beneath its grants, but the host opens these paths
//! itself, with its own authority. So every open here walks the path one
//! component at a time from `/`, each step relative to the directory opened by
//! the step before (`openat` with `O_NOFOLLOW`), and refuses the path when any
//! component is a symbolic link. Paths are canonicalized when the policy is
//! resolved, so a link found here appeared afterwards. Files must be regular
//! files and are opened without blocking, so that a FIFO cannot stall the host.
//!
//! A refusal is a [`PolicyError`] of kind [`PolicyErrorKind::UnsafePath`]
//! (exit 2 from the CLI); other I/O failures are plain errors with context.
//!
//! [`PolicyErrorKind::UnsafePath`]: crate::PolicyErrorKind::UnsafePath

use crate::policy::{Policy, PolicyError};
use anyhow::{Context as _, Result};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// A file the host writes on its own behalf after a run, such as a report,
/// possibly inside or next to a directory a guest may write.
///
/// Like `std::fs::write`, except that the path is settled before any guest
/// runs and never redirected by a link a guest planted: [`HostFile::resolve`]
/// refuses a path that already reaches through a link inside one of the
/// policy's read-write grants and resolves the file's folder once;
/// [`HostFile::write`] then opens the file without following any link (a
/// link, FIFO or directory in its place is refused and left as it is).
///
/// # Example
///
/// ```
/// use wasmcell::{HostFile, Policy};
///
/// let dir = tempfile::tempdir()?;
/// let report = HostFile::resolve(&Policy::deny_all(), dir.path().join("report.json"), "report")?;
/// // ... run guests ...
/// report.write(b"{}\n")?;
/// assert_eq!(std::fs::read(report.path())?, b"{}\n");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HostFile {
    path: PathBuf,
    what: String,
}

impl HostFile {
    /// Checks `path` against `policy` and resolves its folder now, before a
    /// guest can change the tree; `what` names the file in messages.
    ///
    /// # Security
    ///
    /// Call this before the guests run: a link planted afterwards on the way
    /// to the folder is not followed, but one that is already there when this
    /// runs is resolved like any other path the user gave.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind
    /// [`PolicyErrorKind::UnsafePath`](crate::PolicyErrorKind::UnsafePath) when
    /// `path` reaches through a symbolic link inside one of the policy's
    /// read-write grants; an error when `path` names no file or its folder
    /// does not exist.
    pub fn resolve(policy: &Policy, path: impl AsRef<Path>, what: &str) -> Result<HostFile> {
        let path = path.as_ref();
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        policy.check_host_path(&absolute, what)?;
        Ok(HostFile {
            path: resolve_parent(path)?,
            what: what.to_string(),
        })
    }

    /// The resolved path: the folder canonicalized, the file name as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates or truncates the file and writes `bytes`, without following
    /// links.
    ///
    /// # Errors
    ///
    /// [`PolicyErrorKind::UnsafePath`](crate::PolicyErrorKind::UnsafePath)
    /// when a component of the path is now a symbolic link or the file is not
    /// a regular file; an error when it cannot be written.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        write_file(&self.path, bytes, &self.what)
    }

    /// Creates or truncates the file, without following links, and gives it
    /// open for writing.
    ///
    /// # Errors
    ///
    /// As [`HostFile::write`].
    pub fn create(&self) -> Result<File> {
        create_file(&self.path, &self.what)
    }
}

/// Resolves the folder of a file the host will create, once, before any guest
/// runs: `path` made absolute, its parent canonicalized, its file name kept.
/// The result is what [`create_file`] should open later.
///
/// # Errors
///
/// When `path` names no file (it ends in `..` or is `/`) or its folder does
/// not exist.
fn resolve_parent(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).with_context(|| format!("failed to resolve `{}`", path.display()))?;
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        anyhow::bail!("`{}` does not name a file; give a file path", path.display());
    };
    let parent = std::fs::canonicalize(parent)
        .with_context(|| format!("the folder of `{}` does not exist; create it first", path.display()))?;
    Ok(parent.join(name))
}

/// Opens the directory `path` for a preopen without following links.
///
/// # Errors
///
/// [`PolicyErrorKind::UnsafePath`](crate::PolicyErrorKind::UnsafePath) when
/// a component is a symbolic link or `path` is not a directory.
pub(crate) fn open_dir(path: &Path, what: &str) -> Result<imp::Fd> {
    imp::open(path, what, imp::Want::Dir)
}

/// Reads the regular file `path` whole, without following links.
///
/// # Errors
///
/// [`PolicyErrorKind::UnsafePath`](crate::PolicyErrorKind::UnsafePath) when
/// a component is a symbolic link or `path` is not a regular file.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = File::from(imp::open(path, what, imp::Want::Read)?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {what} `{}`", path.display()))?;
    Ok(bytes)
}

/// Creates or truncates the regular file `path` for writing, without
/// following links: like `File::create`, but a link, FIFO, device or
/// directory at `path` (or a link anywhere above it) is refused and left as
/// it is.
///
/// # Errors
///
/// [`PolicyErrorKind::UnsafePath`](crate::PolicyErrorKind::UnsafePath) when
/// a component is a symbolic link or `path` exists and is not a regular file.
pub(crate) fn create_file(path: &Path, what: &str) -> Result<File> {
    let file = File::from(imp::open(path, what, imp::Want::Write)?);
    // Truncated only now that it is known to be a regular file.
    file.set_len(0)
        .with_context(|| format!("failed to truncate {what} `{}`", path.display()))?;
    Ok(file)
}

/// Writes `bytes` to the regular file `path` as [`create_file`] opens it.
///
/// # Errors
///
/// As [`create_file`], and failing to write.
fn write_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    use std::io::Write as _;
    create_file(path, what)?
        .write_all(bytes)
        .with_context(|| format!("failed to write {what} `{}`", path.display()))
}

/// A path through which a library that only takes paths (wasmtime-wasi's
/// `WasiCtxBuilder::preopened_dir`) reopens exactly the directory `fd` holds,
/// `host` being the path it was opened by.
///
/// Opening `/proc/self/fd/N` does not resolve a path again: the kernel hands
/// back the file the descriptor refers to, so a link planted after
/// [`open_dir`] checked the path cannot redirect it. Other unix systems have
/// the same in `/dev/fd/N`; elsewhere this is `host` itself.
pub(crate) fn reopen_path(fd: &imp::Fd, host: &Path) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        let _ = host;
        let base = if cfg!(any(target_os = "linux", target_os = "android")) {
            "/proc/self/fd"
        } else {
            "/dev/fd"
        };
        Path::new(base).join(fd.as_raw_fd().to_string())
    }
    #[cfg(not(unix))]
    {
        let _ = fd;
        host.to_path_buf()
    }
}

/// Splits a canonical absolute path into its names, refusing anything else.
#[cfg(unix)]
fn names(path: &Path, what: &str) -> Result<Vec<std::ffi::OsString>> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(refuse(path, what, "it is not an absolute path"));
    }
    components
        .map(|c| match c {
            Component::Normal(name) => Ok(name.to_os_string()),
            _ => Err(refuse(path, what, "it is not a canonical path (it holds `.` or `..`)")),
        })
        .collect()
}

fn refuse(path: &Path, what: &str, why: &str) -> anyhow::Error {
    PolicyError::unsafe_path(path, format!("refusing to open {what} `{}`: {why}", path.display())).into()
}

#[cfg(unix)]
mod imp {
    use super::{names, refuse};
    use anyhow::{Context as _, Result};
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use std::path::{Path, PathBuf};

    pub(crate) type Fd = std::os::fd::OwnedFd;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Want {
        Dir,
        Read,
        Write,
    }

    /// How directories on the way are opened: `O_PATH` where it exists, so
    /// that a folder the host may search but not list can still be passed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const WALK: OFlags = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const WALK: OFlags = OFlags::RDONLY;

    pub(super) fn open(path: &Path, what: &str, want: Want) -> Result<Fd> {
        let names = names(path, what)?;
        let (last, parents) = match names.split_last() {
            Some(split) => split,
            None if want == Want::Dir => (&std::ffi::OsString::from("."), &[][..]),
            None => return Err(refuse(path, what, "it is the root directory, not a file")),
        };
        let dir_flags = WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = rustix::fs::open("/", dir_flags, Mode::empty())
            .map_err(std::io::Error::from)
            .context("failed to open `/`")?;
        let mut here = PathBuf::from("/");
        for name in parents {
            here.push(name);
            dir = rustix::fs::openat(&dir, name.as_os_str(), dir_flags, Mode::empty())
                .map_err(|e| explain(&dir, name, &here, (path, what, want), e))?;
        }
        here.push(last);
        let (flags, mode) = match want {
            Want::Dir => (dir_flags, Mode::empty()),
            // Non-blocking, so that opening a FIFO neither waits for a writer
            // nor for a reader; the type is checked right after.
            Want::Read => (
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ),
            Want::Write => (
                OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ),
        };
        let fd = rustix::fs::openat(&dir, last.as_os_str(), flags, mode)
            .map_err(|e| explain(&dir, last, &here, (path, what, want), e))?;
        let stat = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("failed to inspect {what} `{}`", path.display()))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        match (want, kind) {
            (Want::Dir, FileType::Directory) | (Want::Read | Want::Write, FileType::RegularFile) => {}
            (Want::Dir, _) => {
                return Err(refuse(
                    path,
                    what,
                    &format!("it is {}, not a directory", describe(kind)),
                ));
            }
            (_, _) => {
                return Err(refuse(
                    path,
                    what,
                    &format!("it is {}, not a regular file", describe(kind)),
                ));
            }
        }
        if want != Want::Dir {
            // Regular files never block; switch back so writes behave as usual.
            let flags = rustix::fs::fcntl_getfl(&fd).map_err(std::io::Error::from)?;
            rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(std::io::Error::from)?;
        }
        Ok(fd)
    }

    /// Turns a failed step into a refusal when the step met a symbolic link
    /// (the errno for that differs between systems, so look), else into an
    /// I/O error naming the path.
    fn explain(
        dir: &Fd,
        name: &std::ffi::OsStr,
        here: &Path,
        (path, what, want): (&Path, &str, Want),
        err: rustix::io::Errno,
    ) -> anyhow::Error {
        if let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory if here == path && want != Want::Dir => {
                    return refuse(path, what, "it is a directory, not a regular file");
                }
                FileType::Symlink => {
                    return refuse(
                        path,
                        what,
                        &format!(
                            "`{}` is a symbolic link, and the host does not follow links in paths the policy names \
                             (a guest with write access could have planted it); replace the link with the real \
                             file or directory",
                            here.display()
                        ),
                    );
                }
                FileType::Directory => {}
                kind if here != path => {
                    return refuse(
                        path,
                        what,
                        &format!("`{}` is {}, not a directory", here.display(), describe(kind)),
                    );
                }
                FileType::RegularFile if want != Want::Dir => {}
                kind => {
                    let expected = if want == Want::Dir {
                        "a directory"
                    } else {
                        "a regular file"
                    };
                    return refuse(path, what, &format!("it is {}, not {expected}", describe(kind)));
                }
            }
        }
        let verb = if want == Want::Write { "create" } else { "open" };
        anyhow::Error::new(std::io::Error::from(err)).context(format!("failed to {verb} {what} `{}`", path.display()))
    }

    fn describe(kind: FileType) -> &'static str {
        match kind {
            FileType::RegularFile => "a regular file",
            FileType::Directory => "a directory",
            FileType::Symlink => "a symbolic link",
            FileType::Fifo => "a FIFO",
            FileType::Socket => "a socket",
            FileType::CharacterDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Unknown => "of an unknown kind",
        }
    }
}

/// Elsewhere there is no `openat` walk: each component is checked with
/// `symlink_metadata` and the path opened by name, which a guest running at
/// the same time could race. Linux and other unix systems take the path above.
#[cfg(not(unix))]
mod imp {
    use super::refuse;
    use anyhow::{Context as _, Result};
    use std::path::Path;

    pub(crate) type Fd = std::fs::File;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Want {
        Dir,
        Read,
        Write,
    }

    pub(super) fn open(path: &Path, what: &str, want: Want) -> Result<Fd> {
        for here in path.ancestors() {
            if std::fs::symlink_metadata(here).is_ok_and(|m| m.file_type().is_symlink()) {
                let why = format!(
                    "`{}` is a symbolic link, and the host does not follow links in paths the policy names; \
                     replace the link with the real file or directory",
                    here.display()
                );
                return Err(refuse(path, what, &why));
            }
        }
        let file = match want {
            Want::Dir | Want::Read => std::fs::File::open(path),
            Want::Write => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path),
        }
        .with_context(|| format!("failed to open {what} `{}`", path.display()))?;
        let meta = file.metadata()?;
        match want {
            Want::Dir if !meta.is_dir() => Err(refuse(path, what, "it is not a directory")),
            Want::Read | Want::Write if !meta.is_file() => Err(refuse(path, what, "it is not a regular file")),
            _ => Ok(file),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::PolicyErrorKind;

    /// The refusal's message, failing the test when `result` is not one.
    #[track_caller]
    fn refusal<T>(result: Result<T>) -> String {
        let err = result.err().expect("the open was refused");
        let policy = err
            .downcast_ref::<PolicyError>()
            .unwrap_or_else(|| panic!("not a refusal: {err:#}"));
        assert!(matches!(policy.kind(), PolicyErrorKind::UnsafePath { .. }), "{err:#}");
        policy.to_string()
    }

    #[test]
    fn links_anywhere_in_the_path_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/file"), "real").unwrap();
        std::fs::write(root.join("victim"), "victim").unwrap();
        std::os::unix::fs::symlink("real", root.join("dir_link")).unwrap();
        std::os::unix::fs::symlink("../victim", root.join("real/file_link")).unwrap();
        std::os::unix::fs::symlink("../nowhere", root.join("real/dangling")).unwrap();

        open_dir(&root.join("real"), "dir").unwrap();
        assert_eq!(read_file(&root.join("real/file"), "file").unwrap(), b"real");
        for msg in [
            refusal(open_dir(&root.join("dir_link"), "dir")),
            refusal(read_file(&root.join("dir_link/file"), "file")),
            refusal(create_file(&root.join("dir_link/new"), "file")),
        ] {
            assert!(
                msg.contains(&format!("`{}` is a symbolic link", root.join("dir_link").display())),
                "{msg}"
            );
        }
        assert!(refusal(read_file(&root.join("real/file_link"), "stdin file")).contains("stdin file"));
        refusal(create_file(&root.join("real/file_link"), "file"));
        refusal(create_file(&root.join("real/dangling"), "file"));
        assert_eq!(std::fs::read(root.join("victim")).unwrap(), b"victim");
        assert!(!root.join("nowhere").exists(), "a dangling link's target was created");
        assert!(!root.join("dir_link/new").exists());
    }

    #[test]
    fn only_regular_files_and_directories_are_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let fifo = root.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Neither open may block waiting for the other end.
        assert!(refusal(read_file(&fifo, "stdin file")).contains("a FIFO, not a regular file"));
        assert!(refusal(create_file(&fifo, "stdout file")).contains("a FIFO"));
        assert!(refusal(create_file(&root, "stdout file")).contains("a directory"));
        std::fs::write(root.join("file"), "x").unwrap();
        assert!(refusal(open_dir(&root.join("file"), "dir")).contains("not a directory"));
        assert!(refusal(read_file(&root.join("file/below"), "file")).contains("not a directory"));
        refusal(read_file(Path::new("relative"), "file"));
        refusal(read_file(&root.join("a/../file"), "file"));
    }

    #[test]
    fn create_file_truncates_only_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().canonicalize().unwrap().join("out.log");
        std::fs::write(&path, "old contents").unwrap();
        write_file(&path, b"new", "report").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let dir = open_dir(path.parent().unwrap(), "dir").unwrap();
        let reopened = reopen_path(&dir, Path::new("/unused"));
        assert!(reopened.join("out.log").is_file(), "{}", reopened.display());
    }

    #[test]
    fn resolve_parent_canonicalizes_only_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        std::os::unix::fs::symlink("../elsewhere", root.join("real/report.json")).unwrap();
        assert_eq!(
            resolve_parent(&root.join("alias/report.json")).unwrap(),
            root.join("real/report.json"),
            "the folder is resolved, the file name kept"
        );
        assert!(resolve_parent(&root.join("missing/report.json")).is_err());
        assert!(resolve_parent(Path::new("/")).is_err());
    }
}
