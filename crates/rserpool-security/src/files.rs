//! Writing credential files with the permissions they need.

use std::path::{Path, PathBuf};

use crate::SecurityError;

/// Whether writing a credential file may replace an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail (keys are never overwritten by accident).
    Refuse,
    /// Replace it: the new file is written next to it and renamed over
    /// it, so it never has the old file's permissions.
    Replace,
}

/// Write `bytes` to `path`, created with permission bits `mode` (on Unix)
/// from the start, and flush it to disk. With [`Existing::Replace`] the
/// file is written under a temporary name and renamed over `path`.
pub(crate) fn write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    existing: Existing,
) -> Result<(), SecurityError> {
    match existing {
        Existing::Refuse => write_new(path, bytes, mode),
        Existing::Replace => {
            let tmp = temporary_name(path);
            let result = write_new(&tmp, bytes, mode).and_then(|()| {
                std::fs::rename(&tmp, path).map_err(|error| SecurityError::Io {
                    path: path.to_owned(),
                    error,
                })
            });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// A name next to `path` for writing its replacement.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Create `path` (it must not exist) with `mode` and write `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SecurityError> {
    use std::io::Write;
    let io = |error| SecurityError::Io {
        path: path.to_owned(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut f = options.open(path).map_err(io)?;
    // The mode given at open is reduced by the umask; make it exact
    // before anything is written.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Refuse a secret file that group or others can access.
#[cfg(unix)]
pub(crate) fn check_private(path: &Path) -> Result<(), SecurityError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|error| SecurityError::Io {
        path: path.to_owned(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecurityError::KeyFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Refuse a secret file that group or others can access (nothing to
/// check off Unix).
#[cfg(not(unix))]
pub(crate) fn check_private(_path: &Path) -> Result<(), SecurityError> {
    Ok(())
}
