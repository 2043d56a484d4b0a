//! RSerPool security (RFC 5355, DESIGN section 4): the TLS layer every
//! registrar channel runs over, and who is on the other end.
//!
//! Without its default feature `tls` the crate needs neither OpenSSL nor
//! tokio (a deterministic simulator runs the protocol cores without
//! them): it offers [`rate_limit`], [`PeerIdentity`], [`apd`],
//! [`SecurityError`], the credential file checks and [`random_seed`].
//!
//! * [`identity`]: [`PeerIdentity`], a namespace and a value.
//! * [`apd`]: the authorised peer database: who may be which role, in
//!   which pools, for which addresses (first matching entry decides).
//! * `keyfile` (feature `tls`): pre-shared keys (identity + 32-byte key) in files that
//!   only their owner may read; generating them.
//! * `tls` (feature `tls`): TLS 1.3 server and client set-ups over OpenSSL, with an
//!   external PSK (mutual authentication, the mandatory PE-registrar
//!   mechanism) and/or X.509 certificates (a registrar certificate that
//!   PUs verify, optional client certificates). No 0-RTT.
//! * [`rate_limit`]: token buckets per key and per-window counters.
//! * [`PeerIdentity`]: the authenticated identity a connection carries
//!   into the protocol cores.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apd;
mod error;
mod files;
pub mod identity;
#[cfg(feature = "tls")]
pub mod keyfile;
#[cfg(feature = "tls")]
pub mod pki;
pub mod rate_limit;
#[cfg(feature = "tls")]
pub mod tls;

pub use error::SecurityError;
pub use files::{Existing, FileKind, MAX_FILE_LEN};
pub use identity::{InvalidIdentity, Mechanism, Namespace, PeerIdentity};
#[cfg(feature = "tls")]
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

/// Write a file that is no secret but configuration (an authorised peer
/// database): mode 0644, flushed to disk, like [`write_secret_file`]
/// otherwise.
pub fn write_public_file(
    path: &std::path::Path,
    bytes: &[u8],
    existing: Existing,
) -> Result<(), SecurityError> {
    files::write(path, bytes, 0o644, existing)
}

/// Fill `buf` from OpenSSL's CSPRNG (seeds, identifiers, keys).
#[cfg(feature = "tls")]
pub fn random_bytes(buf: &mut [u8]) -> Result<(), SecurityError> {
    openssl::rand::rand_bytes(buf).map_err(SecurityError::from)
}

/// A seed for a protocol core's random generator (selection policies,
/// identifiers, jitter): from OpenSSL's CSPRNG (feature `tls`), or else
/// from the standard library's randomly keyed hasher (the operating
/// system's randomness), mixed with the clock and the process id.
pub fn random_seed() -> u64 {
    #[cfg(feature = "tls")]
    {
        let mut b = [0u8; 8];
        match random_bytes(&mut b) {
            Ok(()) => return u64::from_le_bytes(b),
            Err(e) => {
                tracing::warn!("no random seed from OpenSSL ({e}); seeding from std");
            }
        }
    }
    std_seed()
}

/// A seed without OpenSSL: [`std::collections::hash_map::RandomState`]
/// is keyed from the operating system's randomness; the clock and the
/// process id are hashed in so that even a fixed key gives new seeds.
fn std_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(feature = "tls")]
pub use tls::{ClientCertificates, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};

#[cfg(test)]
mod tests {
    #[test]
    fn std_seeds_differ() {
        assert_ne!(super::std_seed(), super::std_seed());
    }
}
