//! Writing credential files with the permissions they need.

use std::path::Path;

use crate::SecurityError;

/// Whether a write may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Fail (keys are never overwritten by accident).
    Refuse,
    /// Replace its contents.
    Replace,
}

/// Write `bytes` to `path` with permission bits `mode` (on Unix), also
/// when the file existed with other permissions, and flush it to disk.
pub(crate) fn write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    existing: Existing,
) -> Result<(), SecurityError> {
    use std::io::Write;
    let io = |error| SecurityError::Io {
        path: path.to_owned(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match existing {
        Existing::Refuse => options.create_new(true),
        Existing::Replace => options.create(true).truncate(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut f = options.open(path).map_err(io)?;
    // The mode given at open applies only to a new file.
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
