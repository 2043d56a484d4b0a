//! Errors of the security layer. Each names the file, the peer or the
//! setting that is wrong.

use std::path::{Path, PathBuf};

use crate::files::FileKind;
use crate::identity::Mechanism;

/// A security set-up or handshake failure.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A credential file that is not a regular file (a directory, a FIFO,
    /// a device, a socket): nothing is read from it.
    #[error("{path}: is {kind}; a regular file is needed")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// A credential file longer than [`crate::MAX_FILE_LEN`].
    #[error("{path}: has {size} bytes; a credential file has at most {limit}")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its length (at least; it is not read to the end).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A secret file (a PSK file, a TLS private key, a token) that group
    /// or others can access (RFC 5355 section 4: keys are secrets). Only a
    /// regular file gets this error; anything else is [`Self::NotAFile`].
    #[error(
        "{path}: key file is accessible by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that does not parse.
    #[error("{path}: {reason}")]
    KeyFileFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The same PSK identity twice.
    #[error("{path}: PSK identity {identity:?} is defined twice")]
    DuplicateIdentity {
        /// The file with the second definition.
        path: PathBuf,
        /// The identity.
        identity: String,
    },
    /// A pre-shared key that is one byte repeated (all zeros, say): a
    /// placeholder or a mistake, not a secret.
    #[error(
        "{path}: the key of PSK identity {identity:?} is one byte repeated, which is no secret; \
         generate a key with `rsp keygen psk {identity}`"
    )]
    WeakKey {
        /// The key file.
        path: PathBuf,
        /// The identity the key belongs to.
        identity: String,
    },
    /// A certificate, key or CA file OpenSSL refused.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        reason: String,
    },
    /// A file that is to be created exists already (keys, tokens and
    /// certificates are never overwritten by accident).
    #[error("{path} exists; not overwriting it")]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// A value given to create a credential is unusable (a PSK identity
    /// with spaces, a certificate validity of 0 days...).
    #[error("{0}")]
    Invalid(String),
    /// A configuration that cannot authenticate anybody.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// OpenSSL failed while setting up.
    #[cfg(feature = "tls")]
    #[error("TLS set-up: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The TLS handshake with a peer failed.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// OpenSSL's reason (or ours).
        reason: String,
    },
    /// A TLS server set-up that cannot complete a handshake it is
    /// configured for (see `TlsServer::self_test`, feature `tls`).
    #[error("TLS self-test: a {mechanism} handshake with this configuration fails: {reason}")]
    SelfTest {
        /// The handshake that failed.
        mechanism: Mechanism,
        /// What each side reported.
        reason: String,
    },
}

impl SecurityError {
    /// The file the error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SecurityError::Io { path, .. }
            | SecurityError::NotAFile { path, .. }
            | SecurityError::FileTooLarge { path, .. }
            | SecurityError::KeyFileMode { path, .. }
            | SecurityError::KeyFileFormat { path, .. }
            | SecurityError::DuplicateIdentity { path, .. }
            | SecurityError::WeakKey { path, .. }
            | SecurityError::Certificate { path, .. }
            | SecurityError::FileExists { path } => Some(path),
            SecurityError::Config(_)
            | SecurityError::Invalid(_)
            | SecurityError::Handshake { .. }
            | SecurityError::SelfTest { .. } => None,
            #[cfg(feature = "tls")]
            SecurityError::OpenSsl(_) => None,
        }
    }
}
