//! The admin API's bearer token (RFC 6750): a file with one line, read at
//! start (and again when the registrar is told to, see
//! `AdminServer::set_token`), generated with 32 random bytes, compared in
//! constant time.

use std::path::Path;

use rserpool_security::{Existing, SecurityError};

use super::AdminError;

/// Shortest token accepted: 32 characters, the length of 128 random bits
/// as hex (`rsp keygen token` writes 256 bits, 64 hex digits). The length
/// is all this can check: a token must also *be* random.
pub const MIN_TOKEN_LEN: usize = 32;

/// Longest token accepted (it travels in an HTTP header).
pub const MAX_TOKEN_LEN: usize = 1024;

/// A bearer token. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token from text: visible ASCII without spaces (what fits the
    /// `b64token` of RFC 6750 section 2.1 and more), at least
    /// [`MIN_TOKEN_LEN`] characters. `Err` says why not.
    pub fn new(text: &str) -> Result<AdminToken, String> {
        if text.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token has {} characters; at least {MIN_TOKEN_LEN} are needed \
                 (128 random bits as hex; `rsp keygen token` makes one)",
                text.len()
            ));
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "the token is longer than {MAX_TOKEN_LEN} characters"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII without spaces".into());
        }
        Ok(AdminToken(text.to_string()))
    }

    /// Read a token file: one line (surrounding white space is ignored).
    /// Like key files, it must be readable by its owner only.
    pub fn load(path: &Path) -> Result<AdminToken, AdminError> {
        // Read like a key file: only a regular file (a FIFO cannot hang
        // the start), private to its owner.
        let bytes = rserpool_security::read_secret_file(path).map_err(|e| match e {
            SecurityError::Io { error, .. } => AdminError::TokenFile {
                path: path.to_path_buf(),
                error,
            },
            SecurityError::KeyFileMode { mode, .. } => AdminError::TokenInvalid {
                path: path.to_path_buf(),
                reason: format!(
                    "readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                    path.display()
                ),
            },
            other => AdminError::TokenUnreadable(other),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| AdminError::TokenInvalid {
            path: path.to_path_buf(),
            reason: "the token file is not text".into(),
        })?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let invalid = |reason: String| AdminError::TokenInvalid {
            path: path.to_path_buf(),
            reason,
        };
        let line = lines
            .next()
            .ok_or_else(|| invalid("the file is empty".into()))?;
        if lines.next().is_some() {
            return Err(invalid("the file must hold one line".into()));
        }
        AdminToken::new(line).map_err(invalid)
    }

    /// A new token: 32 random bytes from OpenSSL's CSPRNG, as 64 hex digits.
    pub fn generate() -> Result<AdminToken, AdminError> {
        let mut b = [0u8; 32];
        rserpool_security::random_bytes(&mut b).map_err(AdminError::Random)?;
        Ok(AdminToken(hex::encode(b)))
    }

    /// Generate a token and write it to a new file readable by its owner
    /// only (mode 0600). An existing file is never overwritten.
    pub fn write_new(path: &Path) -> Result<AdminToken, AdminError> {
        AdminToken::write(path, Existing::Refuse)
    }

    /// Generate a token and write it to a file readable by its owner only
    /// (mode 0600); `existing` says whether it may replace a file that is
    /// there (the replacement is renamed over it).
    pub fn write(path: &Path, existing: Existing) -> Result<AdminToken, AdminError> {
        let token = AdminToken::generate()?;
        let text = format!("{}\n", token.0);
        rserpool_security::write_secret_file(path, text.as_bytes(), existing).map_err(
            |e| match e {
                SecurityError::FileExists { .. } => AdminError::TokenExists {
                    path: path.to_path_buf(),
                },
                SecurityError::Io { error, .. } => AdminError::TokenFile {
                    path: path.to_path_buf(),
                    error,
                },
                other => AdminError::TokenUnreadable(other),
            },
        )?;
        Ok(token)
    }

    /// The secret, for an `Authorization: Bearer` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where they differ (only on the length, which is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        presented.len() == ours.len() && openssl::memcmp::eq(presented, ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mode(p: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (p, mode);
    }

    /// Overwrite a file that is already private (the mode stays).
    fn write_private(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn short_empty_and_multi_line_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::File::create(&p).unwrap();
        set_mode(&p, 0o600);
        write_private(&p, "short\n");
        let e = AdminToken::load(&p).unwrap_err();
        assert!(matches!(e, AdminError::TokenInvalid { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert!(e.to_string().contains("at least 32"), "{e}");
        // 31 characters are one too few.
        write_private(&p, &"a".repeat(31));
        assert!(AdminToken::load(&p).is_err());
        write_private(&p, "\n  \n");
        assert!(AdminToken::load(&p)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        write_private(
            &p,
            "0123456789abcdef0123456789abcdef0\nsecond-line-here-x-0123456789abcdef\n",
        );
        assert!(AdminToken::load(&p)
            .unwrap_err()
            .to_string()
            .contains("one line"));
        write_private(&p, "0123456789abcdef 0123456789abcdef0\n");
        assert!(AdminToken::load(&p).is_err());
        write_private(&p, "  0123456789abcdef0123456789abcdef  \n");
        let t = AdminToken::load(&p).unwrap();
        assert_eq!(t.as_str(), "0123456789abcdef0123456789abcdef");
        assert!(t.matches(b"0123456789abcdef0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdef0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcdef0123456789abcde"));
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
        set_mode(&p, 0o644);
        let e = AdminToken::load(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        set_mode(&p, 0o600);
        assert!(AdminToken::load(&p).is_ok());
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = AdminToken::load(Path::new("/nonexistent/admin.token")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/admin.token"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn write_new_makes_0600_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        let t = AdminToken::write_new(&p).unwrap();
        assert_eq!(t.as_str().len(), 64);
        assert!(t.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(AdminToken::load(&p).unwrap(), t);
        let e = AdminToken::write_new(&p).unwrap_err();
        assert!(matches!(e, AdminError::TokenExists { .. }), "{e}");
        assert_eq!(AdminToken::load(&p).unwrap(), t, "file unchanged");
        assert_ne!(AdminToken::generate().unwrap(), t);
    }
}
