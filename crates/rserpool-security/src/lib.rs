//! RSerPool security (RFC 5355, DESIGN section 4): the TLS layer every
//! registrar channel runs over, and who is on the other end.
//!
//! * [`keyfile`]: pre-shared keys (identity + 32-byte key) in files that
//!   only their owner may read; generating them.
//! * [`tls`]: TLS 1.3 server and client set-ups over OpenSSL, with an
//!   external PSK (mutual authentication, the mandatory PE-registrar
//!   mechanism) and/or X.509 certificates (a registrar certificate that
//!   PUs verify, optional client certificates). No 0-RTT.
//! * [`rate_limit`]: token buckets per key and per-window counters.
//! * [`PeerIdentity`]: the authenticated identity a connection carries
//!   into the protocol cores.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod files;
pub mod keyfile;
pub mod pki;
pub mod rate_limit;
pub mod tls;

pub use error::SecurityError;
pub use files::{Existing, FileKind, MAX_FILE_LEN};
pub use keyfile::{Psk, PskStore, PskStoreDiff};

/// Read a secret file (a key, a token): opened without blocking (a FIFO
/// cannot hang the reader), then the opened file must be a regular file
/// ([`SecurityError::NotAFile`] says what it is instead), of at most
/// [`MAX_FILE_LEN`] bytes ([`SecurityError::FileTooLarge`]), that group and
/// others cannot access ([`SecurityError::KeyFileMode`]). A missing or
/// unreadable file is [`SecurityError::Io`]. Every error names the file.
pub fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>, SecurityError> {
    files::read(path, files::Access::Secret)
}

/// Read a credential file anybody may read (a certificate chain, a CA):
/// the checks of [`read_secret_file`] except the permission bits.
pub fn read_credential_file(path: &std::path::Path) -> Result<Vec<u8>, SecurityError> {
    files::read(path, files::Access::Public)
}

/// Write a secret file (a key, a token) readable by its owner only (mode
/// 0600 from its creation on), flushed to disk. With [`Existing::Refuse`]
/// an existing file is left alone ([`SecurityError::FileExists`]); with
/// [`Existing::Replace`] the new file is written next to it and renamed
/// over it.
pub fn write_secret_file(
    path: &std::path::Path,
    bytes: &[u8],
    existing: Existing,
) -> Result<(), SecurityError> {
    files::write(path, bytes, 0o600, existing)
}

/// Fill `buf` from OpenSSL's CSPRNG (seeds, identifiers, keys).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), SecurityError> {
    openssl::rand::rand_bytes(buf).map_err(SecurityError::from)
}

/// A seed for a protocol core's random generator (selection policies,
/// identifiers, jitter): from OpenSSL's CSPRNG, or from the clock and the
/// process id if that fails.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    match random_bytes(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(e) => {
            tracing::warn!("no random seed from OpenSSL ({e}); seeding from the clock");
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id())
        }
    }
}

pub use tls::{
    ClientCertificates, Mechanism, PeerIdentity, TlsClient, TlsClientConfig, TlsServer,
    TlsServerConfig,
};
