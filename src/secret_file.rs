//! Reading a secret from a file: the one function every secret file goes through (today the
//! AccessKey secret and the STS token, with their systemd credentials; later object storage,
//! Redis, the web password).
//!
//! Rules, checked in this order, on the file as opened (no check-then-open race):
//!
//! 1. It is opened read-only with `O_NONBLOCK` (a FIFO cannot hang the open) and `O_NOCTTY`, then
//!    `fstat`ed: anything but a regular file (FIFO, device such as `/dev/zero`, folder, socket)
//!    is refused.
//! 2. Its permissions, as OpenSSH treats private keys: readable by others (`o+r`) is refused,
//!    readable by the group (`g+r`) is a warning. A systemd credential
//!    (`$CREDENTIALS_DIRECTORY/...`, [`Permissions::Credential`]) is exempt: systemd made it
//!    private to the service.
//! 3. At most [`MAX_SECRET_BYTES`] are read; a longer file is refused (never read whole).
//! 4. The text is UTF-8; one trailing line break (`\n` or `\r\n`) is removed, more lines are
//!    refused.
//!
//! Errors never contain the file's content.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Longest secret file accepted, in bytes (secrets are tens of bytes; an STS token ~1-2 KiB).
pub const MAX_SECRET_BYTES: u64 = 4096;

/// How a file's permissions are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// A file the operator named: refuse `o+r`, warn on `g+r`.
    Check,
    /// A systemd credential (`$CREDENTIALS_DIRECTORY`): systemd controls its access.
    Credential,
}

/// Why a secret file was refused. The messages say what is wrong and how to fix it; the caller
/// adds which file and which key.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// It could not be opened or inspected.
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    /// A FIFO, device, folder or socket.
    #[error("is {kind}, not a regular file; expected a file holding the secret alone")]
    NotRegular {
        /// "a FIFO", "a character device", ...
        kind: &'static str,
    },
    /// Readable by every user of the machine.
    #[error(
        "is readable by everyone (mode {mode:04o}), so any user of this machine can read the \
         secret; run `chmod 600 {}` (and keep it owned by the service user)",
        file.display()
    )]
    WorldReadable {
        /// The file (for the `chmod` hint).
        file: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Longer than [`MAX_SECRET_BYTES`].
    #[error("is larger than {MAX_SECRET_BYTES} bytes; expected the secret alone on one line")]
    TooLarge,
    /// Reading failed.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// Not UTF-8.
    #[error("is not UTF-8 text; expected the secret alone on one line")]
    NotUtf8,
    /// More than one line.
    #[error("has more than one line; expected the secret alone on one line")]
    MultiLine,
}

/// A secret read from a file, and what to warn about.
#[derive(Debug)]
pub struct SecretFile {
    /// The secret (trailing line break removed).
    pub value: String,
    /// A non-fatal problem (group-readable), to be logged and shown by `check-config`.
    pub warning: Option<String>,
}

fn kind(ft: &std::fs::FileType) -> &'static str {
    crate::paths::file_kind(ft).unwrap_or("not a regular file")
}

/// Reads the secret in `file` under the rules of this module.
pub fn read(file: &Path, permissions: Permissions) -> Result<SecretFile, SecretFileError> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(SecretFileError::Open)?;
    let meta = f.metadata().map_err(SecretFileError::Open)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(SecretFileError::NotRegular { kind: kind(&ft) });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let mut warning = None;
    if permissions == Permissions::Check {
        if mode & 0o004 != 0 {
            return Err(SecretFileError::WorldReadable {
                file: file.to_owned(),
                mode,
            });
        }
        if mode & 0o040 != 0 {
            warning = Some(format!(
                "is readable by its group (mode {mode:04o}); run `chmod 600 {}` unless the \
                 group is meant to read the secret",
                file.display()
            ));
        }
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(SecretFileError::Read)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8)?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.contains(['\n', '\r']) {
        return Err(SecretFileError::MultiLine);
    }
    Ok(SecretFile {
        value: value.to_owned(),
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn private_file_is_read_and_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let p = file_with(d.path(), "s", b"abc\r\n", 0o600);
        let s = read(&p, Permissions::Check).unwrap();
        assert_eq!(s.value, "abc");
        assert!(s.warning.is_none());
        let p = file_with(d.path(), "m", b"a\nb\n", 0o600);
        assert!(matches!(
            read(&p, Permissions::Check),
            Err(SecretFileError::MultiLine)
        ));
    }

    #[test]
    fn world_readable_is_refused_group_readable_warned() {
        let d = tempfile::tempdir().unwrap();
        let p = file_with(d.path(), "w", b"sekrit\n", 0o644);
        let e = read(&p, Permissions::Check).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("mode 0644") && m.contains("chmod 600"), "{m}");
        assert!(
            m.contains(&p.display().to_string()) && !m.contains("sekrit"),
            "{m}"
        );
        // The same file as a systemd credential is accepted as it is.
        assert_eq!(read(&p, Permissions::Credential).unwrap().value, "sekrit");
        let p = file_with(d.path(), "g", b"sekrit\n", 0o640);
        let s = read(&p, Permissions::Check).unwrap();
        assert_eq!(s.value, "sekrit");
        let w = s.warning.unwrap();
        assert!(w.contains("mode 0640") && w.contains("chmod 600"), "{w}");
    }

    #[test]
    fn large_files_and_non_regular_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = file_with(d.path(), "big", &[b'a'; 4097], 0o600);
        assert!(matches!(
            read(&p, Permissions::Check),
            Err(SecretFileError::TooLarge)
        ));
        let p = file_with(d.path(), "max", &[b'a'; 4096], 0o600);
        assert_eq!(read(&p, Permissions::Check).unwrap().value.len(), 4096);
        // /dev/zero would grow memory without bound if read whole.
        let e = read(Path::new("/dev/zero"), Permissions::Credential).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read(d.path(), Permissions::Check).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        // A FIFO with no writer: the open must not hang.
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, Permissions::Check).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
}
