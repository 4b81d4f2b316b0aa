//! `net.ca-certificates`: certificate authorities the host trusts for the
//! `https` requests it makes for a guest, beside the public ones it always
//! trusts (webpki-roots). Each file is read and checked when the policy is
//! loaded, so a bad file stops the policy with its line, and a run never
//! reads the host's filesystem for TLS.

use super::load::read_host_file;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, PemObject as _};
use std::path::{Path, PathBuf};

/// Largest CA file read, in bytes: the whole Mozilla bundle is about 220 KiB.
pub(crate) const MAX_CA_FILE_SIZE: u64 = 4 << 20;

/// One `net.ca-certificates` file: its path and the certificates it holds,
/// each checked to be a CA the host can trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file, absolute (relative ones are resolved from the folder of the
    /// policy file that names them).
    pub path: PathBuf,
    certificates: Vec<CertificateDer<'static>>,
}

impl CaFile {
    /// Reads `path`: a regular file (a symbolic link to one is followed, as
    /// `/etc/ssl/certs` is made of them) of at most [`MAX_CA_FILE_SIZE`],
    /// holding one or more PEM `CERTIFICATE` sections, each one a
    /// certificate rustls accepts as a trust anchor.
    ///
    /// # Errors
    ///
    /// A message naming the file and what is wrong with it: missing,
    /// unreadable, not a regular file, too large, not PEM, no certificate,
    /// or a certificate that cannot be a trust anchor.
    pub(crate) fn load(path: &Path) -> Result<CaFile, String> {
        let shown = path.display();
        let bytes = read_host_file(
            path,
            MAX_CA_FILE_SIZE,
            "a CA file may have; a bundle of every public CA is about 220 KiB",
        )
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("CA file `{shown}` does not exist; create it or fix the path")
            }
            _ => format!("CA file `{shown}` cannot be read: {e}"),
        })?;
        let mut certificates = Vec::new();
        for (n, section) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
            let certificate = section.map_err(|e| {
                format!(
                    "CA file `{shown}` is not PEM text ({}); it must hold `-----BEGIN CERTIFICATE-----` sections",
                    pem_error(&e)
                )
            })?;
            let mut store = rustls::RootCertStore::empty();
            store.add(certificate.clone()).map_err(|e| {
                format!(
                    "CA file `{shown}`: certificate {} cannot be trusted as a CA ({e}); it must be an X.509 certificate in DER inside the PEM",
                    n + 1
                )
            })?;
            certificates.push(certificate);
        }
        if certificates.is_empty() {
            return Err(format!(
                "CA file `{shown}` holds no certificate; it must hold `-----BEGIN CERTIFICATE-----` sections in PEM"
            ));
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            certificates,
        })
    }

    /// The certificates, in the file's order.
    pub(crate) fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// How many certificates the file holds.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Never true: a file without a certificate is refused when it is read.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

/// What is wrong with PEM text, in words (the parser's own `Debug` shows bytes
/// as numbers).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            let kind = String::from_utf8_lossy(end_marker);
            format!("a `-----BEGIN {kind}-----` section has no `-----END {kind}-----` line")
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("bad section start `{}`", String::from_utf8_lossy(line).escape_debug())
        }
        pem::Error::Base64Decode(why) => format!("bad base64: {why}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        for (text, expected) in [
            ("hello\n", "holds no certificate"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
                "is not PEM text (a `-----BEGIN CERTIFICATE-----` section has no `-----END CERTIFICATE-----` line)",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "is not PEM text (bad base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 cannot be trusted as a CA",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = CaFile::load(&path).unwrap_err();
            assert!(err.starts_with(&format!("CA file `{}`", path.display())), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = CaFile::load(&dir.path().join("absent.pem")).unwrap_err();
        assert!(err.ends_with("does not exist; create it or fix the path"), "{err}");
        let err = CaFile::load(dir.path()).unwrap_err();
        assert!(err.contains("a directory, not a regular file"), "{err}");
    }
}
