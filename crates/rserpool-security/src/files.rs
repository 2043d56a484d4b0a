//! Reading and writing credential files (keys, certificates, tokens).
//!
//! Reading is careful about what the path names: a FIFO must not block
//! the reader (a registrar's configuration check would hang), and a
//! directory or a device is not a key file whatever its mode says. So a
//! file is opened without blocking and without becoming a controlling
//! terminal, the *opened* file is examined (no race between the check and
//! the read), and only a regular file of at most [`MAX_FILE_LEN`] bytes is
//! read. Secrets (RFC 5355 section 4: keys protect the registrar's
//! database) must also be inaccessible to group and others.

use std::io::Read;
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
    let mut f = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            SecurityError::FileExists {
                path: path.to_owned(),
            }
        } else {
            io(error)
        }
    })?;
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

/// Longest credential file read: 1 MiB. A key file or a certificate
/// chain has a few KiB; anything longer is not what it claims to be.
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// What a path names when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe): reading it would wait for a writer.
    Fifo,
    /// A character device (`/dev/null`, a terminal).
    CharacterDevice,
    /// A block device (a disk).
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// Anything else that is not a regular file.
    Other,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharacterDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "not a regular file",
        })
    }
}

/// `None` for a regular file, else what it is.
fn non_regular(t: std::fs::FileType) -> Option<FileKind> {
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some(FileKind::Directory);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some(FileKind::Fifo);
        }
        if t.is_char_device() {
            return Some(FileKind::CharacterDevice);
        }
        if t.is_block_device() {
            return Some(FileKind::BlockDevice);
        }
        if t.is_socket() {
            return Some(FileKind::Socket);
        }
    }
    Some(FileKind::Other)
}

/// Whether a file read holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anybody may read it (a certificate, a CA).
    Public,
    /// Its owner only (a key, a token): group and others have no access.
    Secret,
}

/// Open `path` for reading without blocking (O_NONBLOCK: a FIFO does not
/// wait for a writer) and without acquiring a terminal (O_NOCTTY), and
/// check the opened file: a regular file of at most [`MAX_FILE_LEN`]
/// bytes and, for a secret, no permission bit for group or others.
fn open(path: &Path, access: Access) -> Result<std::fs::File, SecurityError> {
    let io = |error| SecurityError::Io {
        path: path.to_owned(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(error) => {
            // A socket cannot be opened at all (ENXIO): say what it is
            // rather than "no such device or address". (The path is
            // examined only to word the error.)
            if let Some(kind) = std::fs::metadata(path)
                .ok()
                .and_then(|m| non_regular(m.file_type()))
            {
                return Err(SecurityError::NotAFile {
                    path: path.to_owned(),
                    kind,
                });
            }
            return Err(io(error));
        }
    };
    // fstat: the file that was opened, whatever the path names by now.
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = non_regular(meta.file_type()) {
        return Err(SecurityError::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    #[cfg(unix)]
    if access == Access::Secret {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecurityError::KeyFileMode {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = access;
    if meta.len() > MAX_FILE_LEN {
        return Err(too_large(path, meta.len()));
    }
    Ok(file)
}

fn too_large(path: &Path, size: u64) -> SecurityError {
    SecurityError::FileTooLarge {
        path: path.to_owned(),
        size,
        limit: MAX_FILE_LEN,
    }
}

/// Read a credential file: a regular file of at most [`MAX_FILE_LEN`]
/// bytes, and for [`Access::Secret`] one that only its owner can access.
pub(crate) fn read(path: &Path, access: Access) -> Result<Vec<u8>, SecurityError> {
    let file = open(path, access)?;
    let mut bytes = Vec::new();
    // One byte more than allowed: a file that grew since fstat is caught.
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| SecurityError::Io {
            path: path.to_owned(),
            error,
        })?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > MAX_FILE_LEN {
        return Err(too_large(path, len));
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Run `read` on another thread; fail if it has not returned within a
    /// generous limit (the thread would be blocked in open()). The limit
    /// is a watchdog, not a synchronisation: a correct reader returns at
    /// once.
    fn read_promptly(path: &Path, access: Access) -> Result<Vec<u8>, SecurityError> {
        let (tx, rx) = mpsc::channel();
        let p = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(read(&p, access));
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the reader returns without blocking")
    }

    fn private_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn expect_kind(result: Result<Vec<u8>, SecurityError>, want: FileKind, message: &str) {
        let e = result.expect_err("refused");
        assert!(
            matches!(e, SecurityError::NotAFile { kind, .. } if kind == want),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(message), "{text}");
        assert!(text.contains("a regular file is needed"), "{text}");
        assert!(!text.contains("chmod"), "{text}");
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("psk.key");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        for access in [Access::Public, Access::Secret] {
            expect_kind(
                read_promptly(&fifo, access),
                FileKind::Fifo,
                "psk.key: is a FIFO (named pipe)",
            );
        }
    }

    #[test]
    fn devices_directories_and_sockets_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        // /dev/null is mode 0666: the kind is the problem, not the mode.
        for access in [Access::Public, Access::Secret] {
            expect_kind(
                read_promptly(Path::new("/dev/null"), access),
                FileKind::CharacterDevice,
                "/dev/null: is a character device",
            );
            expect_kind(
                read_promptly(dir.path(), access),
                FileKind::Directory,
                "is a directory",
            );
        }
        let socket = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        expect_kind(
            read_promptly(&socket, Access::Secret),
            FileKind::Socket,
            "agent.sock: is a socket",
        );
    }

    #[test]
    fn a_secret_others_can_access_gets_the_chmod_advice() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let p = private_file(dir.path(), "tls.key", b"secret", mode);
            let e = read(&p, Access::Secret).expect_err("refused");
            assert!(
                matches!(e, SecurityError::KeyFileMode { mode: m, .. } if m == mode),
                "{e:?}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
            // A certificate may be world-readable.
            assert_eq!(read(&p, Access::Public).expect("public"), b"secret");
        }
        let p = private_file(dir.path(), "tls.key", b"secret", 0o600);
        assert_eq!(read(&p, Access::Secret).expect("private"), b"secret");
        let p = private_file(dir.path(), "ro.key", b"secret", 0o400);
        assert_eq!(read(&p, Access::Secret).expect("private"), b"secret");
    }

    #[test]
    fn large_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = usize::try_from(MAX_FILE_LEN).expect("fits");
        let p = private_file(dir.path(), "big.pem", &vec![b'x'; limit + 1], 0o600);
        let e = read(&p, Access::Secret).expect_err("too large");
        assert!(
            matches!(e, SecurityError::FileTooLarge { size, .. } if size == MAX_FILE_LEN + 1),
            "{e:?}"
        );
        assert!(e.to_string().contains("big.pem"), "{e}");
        let p = private_file(dir.path(), "max.pem", &vec![b'x'; limit], 0o600);
        assert_eq!(read(&p, Access::Public).expect("at the limit").len(), limit);
        let e = read(&dir.path().join("none.pem"), Access::Public).expect_err("missing");
        assert!(matches!(e, SecurityError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("none.pem"), "{e}");
    }
}
