//! Write quotas of read-write grants (`quota`, `max-files`): what the run
//! may add below a grant, charged *before* each write or creation so that
//! the one crossing the limit does not happen, and refused as a full disk
//! is (`ENOSPC`). Growth is counted over the whole run: removing or
//! truncating files gives nothing back, so a guest cannot churn its way
//! past the limit.

use crate::capabilities::denial::Records;
use crate::policy::ByteSize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime_wasi::async_trait;
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// One grant's quota and what the run has used of it; shared with the
/// preview 2 streams that write below the grant.
pub(crate) struct Quota {
    bytes: Option<u64>,
    files: Option<u64>,
    used_bytes: AtomicU64,
    used_files: AtomicU64,
    guest: String,
    denials: Records,
}

impl Quota {
    pub(super) fn new(bytes: Option<u64>, files: Option<u64>, guest: &str, denials: Records) -> Arc<Quota> {
        Arc::new(Quota {
            bytes,
            files,
            used_bytes: AtomicU64::new(0),
            used_files: AtomicU64::new(0),
            guest: guest.to_string(),
            denials,
        })
    }

    /// Charges `n` added bytes for a write to `target`; `false` (recorded)
    /// when they would pass the quota.
    fn charge_bytes(&self, target: &str, n: u64) -> bool {
        let Some(limit) = self.bytes.filter(|_| n > 0) else {
            return true;
        };
        let charged = self
            .used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            });
        if let Err(used) = charged {
            let rule = format!(
                "quota {} of the grant at {}: {} used, this write adds {}",
                ByteSize(limit),
                self.guest,
                ByteSize(used),
                ByteSize(n)
            );
            self.denials.refuse("fs-quota", target, &rule);
        }
        charged.is_ok()
    }

    /// Charges a change to `target`, a file of `size` bytes now, that writes
    /// `len` bytes from `start` (a resize to `start` when `len` is 0), for
    /// what it adds past `size`; `None` (recorded) when the quota refuses.
    pub(crate) fn charge_growth(self: &Arc<Self>, target: &str, size: u64, (start, len): (u64, u64)) -> Option<Growth> {
        let charged = start.saturating_add(len).saturating_sub(size);
        self.charge_bytes(target, charged).then(|| Growth {
            quota: self.clone(),
            charged,
            size,
            start,
        })
    }

    /// Gives back bytes charged for a write that did not happen.
    fn refund_bytes(&self, n: u64) {
        if self.bytes.is_some() {
            let _ = self
                .used_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                    Some(used.saturating_sub(n))
                });
        }
    }

    /// Charges one new file, directory or link at `target`.
    pub(crate) fn charge_file(&self, target: &str) -> bool {
        let charged = self.reserve_file();
        if let (false, Some(limit)) = (charged, self.files) {
            let rule = format!("max-files {limit} of the grant at {}: all used", self.guest);
            self.denials.refuse("fs-quota", target, &rule);
        }
        charged
    }

    /// As [`charge_file`](Self::charge_file), recording nothing.
    pub(crate) fn reserve_file(&self) -> bool {
        let Some(limit) = self.files else {
            return true;
        };
        self.used_files
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Gives back a file charged for a creation that did not happen.
    pub(crate) fn refund_file(&self) {
        if self.files.is_some() {
            let _ = self
                .used_files
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                    Some(used.saturating_sub(1))
                });
        }
    }

    /// Whether creations are counted.
    pub(crate) fn counts_files(&self) -> bool {
        self.files.is_some()
    }

    /// Whether writes are counted (not only creations).
    pub(crate) fn counts_bytes(&self) -> bool {
        self.bytes.is_some()
    }
}

/// Bytes charged before one change to a counted file
/// ([`Quota::charge_growth`]); what the change does not add is given back.
#[must_use]
pub(crate) struct Growth {
    quota: Arc<Quota>,
    charged: u64,
    /// The file's size when charged, and where the change starts.
    size: u64,
    start: u64,
}

impl Growth {
    /// The change did not happen: everything is given back.
    pub(crate) fn failed(self) {
        self.quota.refund_bytes(self.charged);
    }

    /// The change wrote `n` bytes (`None`: it failed): what did not grow the
    /// file is given back.
    pub(crate) fn wrote(self, n: Option<u64>) {
        let added = n.map_or(0, |n| self.start.saturating_add(n).saturating_sub(self.size));
        self.quota.refund_bytes(self.charged.saturating_sub(added));
    }
}

/// The error a refused write gives: a full disk.
pub(crate) fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

/// A preview 2 output stream on a file below a grant with a quota: each
/// write is charged for what it adds past the file's size at that moment,
/// before wasmtime-wasi's stream performs it. The size is asked of the file
/// each time, never remembered: another descriptor may have truncated the
/// file since the stream was made, and the lost bytes written again are
/// growth again. (wasmtime-wasi refuses a write while the stream's previous
/// one is still under way, so the size asked includes that one.)
pub(crate) struct QuotaStream {
    pub(crate) inner: DynOutputStream,
    pub(crate) quota: Arc<Quota>,
    pub(crate) target: String,
    /// The file written, to ask its size.
    pub(crate) file: Arc<std::fs::File>,
    /// Where the next write goes (unused when appending).
    pub(crate) position: u64,
    pub(crate) append: bool,
}

/// The size of `file` now; one that cannot be read counts as empty, so a
/// write is charged in full.
pub(crate) fn size_of(file: &std::fs::File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

#[async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let n = bytes.len() as u64;
        let size = size_of(&self.file);
        let start = if self.append { size } else { self.position };
        let Some(growth) = self.quota.charge_growth(&self.target, size, (start, n)) else {
            return Err(StreamError::LastOperationFailed(no_space().into()));
        };
        if let Err(e) = self.inner.write(bytes) {
            growth.failed();
            return Err(e);
        }
        self.position = start.saturating_add(n);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}
