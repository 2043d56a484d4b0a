//! Errors of the security layer. Each names the file, the peer or the
//! setting that is wrong.

use std::path::PathBuf;

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
    /// A key file others may read (RFC 5355: keys are secrets).
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
    /// A certificate, key or CA file OpenSSL refused.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        reason: String,
    },
    /// A configuration that cannot authenticate anybody.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// OpenSSL failed while setting up.
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
}
