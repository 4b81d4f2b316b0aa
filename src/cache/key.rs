//! The key that proves a compile cache entry or stamp was written by
//! wasmcell, and the MAC (HMAC-SHA256) made with it.
//!
//! A guest whose read-write grant covers the cache folder, in this run or an
//! earlier or concurrent one, can write any file there, owned by this user
//! and private like wasmcell's own. What it cannot do is compute a MAC
//! without the key, so the key must live where no guest reaches in any run.
//! It lives in the Linux kernel's user keyring (`@u`): outside the
//! filesystem, so no WASI call reaches it and no policy can grant it, and
//! shared by every process of this user, so the next `wasmcell run` finds it.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::fmt;

/// Bytes in a key and in a MAC tag.
pub(crate) const KEY_LEN: usize = 32;
pub(crate) const TAG_LEN: usize = 32;

/// The keyring entry's description: a `user` key holding 32 random bytes.
#[cfg(target_os = "linux")]
const DESCRIPTION: &std::ffi::CStr = c"wasmcell:compile-cache:v1";

/// What a tag vouches for, so that a tag made for one kind of file never
/// passes for another's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// Compiled code, named by the guest's hash and the engine's fingerprint.
    Entry,
    /// A file stamp and the content hash recorded for it.
    Stamp,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Entry => b"wasmcell compile cache entry v1\0",
            Domain::Stamp => b"wasmcell compile cache stamp v1\0",
        }
    }
}

/// The compile cache's MAC key. Never printed.
#[derive(Clone)]
pub(crate) struct CacheKey([u8; KEY_LEN]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// The compile cache's key could not be read from, or created in, the
/// kernel's user keyring (for example because a container's seccomp profile
/// refuses `keyctl`, or on a system without the Linux keyring). Without the
/// key no cache entry can prove that wasmcell wrote it, so the disk cache is
/// not used at all; guests are compiled on every run instead.
#[derive(Debug)]
pub struct CacheKeyError {
    why: String,
}

impl fmt::Display for CacheKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the compile cache's key is unavailable ({}), so no cache entry could prove that wasmcell wrote it",
            self.why
        )
    }
}

impl std::error::Error for CacheKeyError {}

impl CacheKey {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> CacheKey {
        CacheKey(bytes)
    }

    /// This user's key from the kernel's user keyring, created (32 random
    /// bytes) when there is none.
    ///
    /// Two processes that both find no key both create one, and the later
    /// `add_key` replaces the earlier key's bytes. Each then reads back what
    /// the keyring holds, so at worst the first writes a few entries under a
    /// key that is already gone: those fail their check later and are
    /// compiled again, never trusted. A key lost for good (a reboot, `keyctl
    /// clear @u`) costs the same: every entry is compiled once more.
    ///
    /// # Errors
    ///
    /// When the keyring refuses (`keyctl` blocked, quota full) or the
    /// platform has none.
    pub(crate) fn from_keyring() -> Result<CacheKey, CacheKeyError> {
        keyring::load_or_create()
            .map(CacheKey)
            .map_err(|why| CacheKeyError { why })
    }

    /// The MAC of `name` and `data` in `domain`. `name` is length-prefixed,
    /// so no split of the same bytes between name and data gives the same tag.
    pub(crate) fn tag(&self, domain: Domain, name: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
        self.mac(domain, name, data).finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `name` and `data` in `domain`, compared
    /// in constant time.
    pub(crate) fn verify(&self, domain: Domain, name: &[u8], data: &[u8], tag: &[u8]) -> bool {
        self.mac(domain, name, data).verify_slice(tag).is_ok()
    }

    fn mac(&self, domain: Domain, name: &[u8], data: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(domain.label());
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name);
        mac.update(data);
        mac
    }
}

#[cfg(target_os = "linux")]
mod keyring {
    use super::{DESCRIPTION, KEY_LEN};
    use std::ffi::CStr;

    // From <linux/keyctl.h>.
    const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEYCTL_READ: libc::c_long = 11;
    const KEY_TYPE: &CStr = c"user";

    pub(super) fn load_or_create() -> Result<[u8; KEY_LEN], String> {
        if let Some(id) = search()? {
            // A key of the wrong size (not ours, or damaged) is replaced:
            // a short key would make every tag easy to forge.
            if let Ok(key) = read(id) {
                return Ok(key);
            }
        }
        let id = add(&random_key()?)?;
        // Whatever the keyring holds now, which is another process's key if
        // it added one after us: see `CacheKey::from_keyring`.
        read(id)
    }

    fn last_error(what: &str) -> String {
        format!("{what} failed: {}", std::io::Error::last_os_error())
    }

    fn search() -> Result<Option<libc::c_long>, String> {
        // SAFETY: both strings are NUL-terminated and outlive the call; a
        // destination keyring of 0 links the key nowhere.
        let id = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_SEARCH,
                KEY_SPEC_USER_KEYRING,
                KEY_TYPE.as_ptr(),
                DESCRIPTION.as_ptr(),
                0 as libc::c_long,
            )
        };
        if id >= 0 {
            return Ok(Some(id));
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // None yet, or one that expired or was revoked: `add` replaces it.
            Some(libc::ENOKEY | libc::EKEYEXPIRED | libc::EKEYREVOKED) => Ok(None),
            _ => Err(last_error("keyctl(KEYCTL_SEARCH) in the user keyring")),
        }
    }

    fn read(id: libc::c_long) -> Result<[u8; KEY_LEN], String> {
        let mut buf = [0u8; 2 * KEY_LEN];
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let len = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_READ, id, buf.as_mut_ptr(), buf.len()) };
        if len < 0 {
            return Err(last_error("keyctl(KEYCTL_READ)"));
        }
        if len as usize != KEY_LEN {
            return Err(format!("the keyring's key holds {len} bytes, not {KEY_LEN}"));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&buf[..KEY_LEN]);
        Ok(key)
    }

    fn add(key: &[u8; KEY_LEN]) -> Result<libc::c_long, String> {
        // SAFETY: the strings are NUL-terminated, the payload is `key.len()`
        // readable bytes, all outliving the call.
        let id = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                KEY_TYPE.as_ptr(),
                DESCRIPTION.as_ptr(),
                key.as_ptr(),
                key.len(),
                KEY_SPEC_USER_KEYRING,
            )
        };
        if id < 0 {
            return Err(last_error("add_key to the user keyring"));
        }
        Ok(id)
    }

    fn random_key() -> Result<[u8; KEY_LEN], String> {
        let mut key = [0u8; KEY_LEN];
        let mut filled = 0;
        while filled < KEY_LEN {
            // SAFETY: writes at most the `KEY_LEN - filled` bytes left in `key`.
            let n = unsafe { libc::getrandom(key[filled..].as_mut_ptr().cast(), KEY_LEN - filled, 0) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(last_error("getrandom"));
            }
            filled += n as usize;
        }
        Ok(key)
    }
}

#[cfg(not(target_os = "linux"))]
mod keyring {
    use super::KEY_LEN;

    pub(super) fn load_or_create() -> Result<[u8; KEY_LEN], String> {
        Err("it is kept in the Linux kernel keyring, which this system does not have".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_binds_the_key_the_domain_the_name_and_the_data() {
        let key = CacheKey::from_bytes([7; KEY_LEN]);
        let tag = key.tag(Domain::Entry, b"abc-k.cwasm", b"code");
        assert!(key.verify(Domain::Entry, b"abc-k.cwasm", b"code", &tag));
        // Every part changes the tag.
        assert!(
            !key.verify(Domain::Entry, b"abd-k.cwasm", b"code", &tag),
            "another name"
        );
        assert!(!key.verify(Domain::Entry, b"abc-k.cwasm", b"codf", &tag), "other data");
        assert!(
            !key.verify(Domain::Stamp, b"abc-k.cwasm", b"code", &tag),
            "another domain"
        );
        let other = CacheKey::from_bytes([8; KEY_LEN]);
        assert!(
            !other.verify(Domain::Entry, b"abc-k.cwasm", b"code", &tag),
            "another key"
        );
        // Moving bytes between name and data is not the same message.
        assert!(!key.verify(Domain::Entry, b"abc-k.cwasmc", b"ode", &tag));
        // A short or empty tag is never accepted.
        assert!(!key.verify(Domain::Entry, b"abc-k.cwasm", b"code", &tag[..16]));
        assert!(!key.verify(Domain::Entry, b"abc-k.cwasm", b"code", &[]));
        assert_eq!(format!("{key:?}"), "CacheKey(..)", "the key is never printed");
    }

    #[test]
    fn the_tag_is_hmac_sha256() {
        // RFC 4231, test case 2 ("Jefe"), with the domain and name folded
        // into the message the way `mac` builds it.
        let mut jefe = [0u8; KEY_LEN];
        jefe[..4].copy_from_slice(b"Jefe");
        let key = CacheKey::from_bytes(jefe);
        let mut message = Domain::Stamp.label().to_vec();
        message.extend_from_slice(&0u64.to_le_bytes());
        message.extend_from_slice(b"what do ya want for nothing?");
        let mut reference = <Hmac<Sha256>>::new_from_slice(&jefe).unwrap();
        reference.update(&message);
        let expected: [u8; TAG_LEN] = reference.finalize().into_bytes().into();
        assert_eq!(key.tag(Domain::Stamp, b"", b"what do ya want for nothing?"), expected);
        // A 32-byte key padded with zeros is the same HMAC key as "Jefe".
        let mut rfc = <Hmac<Sha256>>::new_from_slice(b"Jefe").unwrap();
        rfc.update(b"what do ya want for nothing?");
        let rfc: [u8; TAG_LEN] = rfc.finalize().into_bytes().into();
        assert_eq!(
            hex_of(&rfc),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_keyring_gives_every_caller_the_same_key() {
        // Where the keyring is refused (a container's seccomp profile), both
        // calls fail alike and the cache is not used; nothing to compare.
        let (Ok(a), Ok(b)) = (CacheKey::from_keyring(), CacheKey::from_keyring()) else {
            return;
        };
        let tag = a.tag(Domain::Entry, b"n", b"d");
        assert!(b.verify(Domain::Entry, b"n", b"d", &tag));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
