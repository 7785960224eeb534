//! Where a configured folder really is, before anything is created.
//!
//! [`resolve_dir`] follows symlinks the way creating the folder would: the longest part of the
//! path that exists is canonicalized (symlinks resolved), the rest is appended as written. So a
//! state folder named through a symlink into the output folder is seen inside it, and a folder
//! that is a regular file or a dangling symlink is reported exactly, instead of a later
//! "File exists" from `create_dir_all`. Used by config validation (`check-config`, start-up) and
//! by the sink before it creates its folders.

use std::path::{Path, PathBuf};

/// Why a path cannot be (or hold) a folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirProblem {
    /// The path itself, or a part of it, is a symlink whose target does not exist.
    #[error("{} is a symlink to {}, which does not exist", link.display(), target.display())]
    DanglingSymlink {
        /// The symlink.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// The path itself, or a part of it, exists and is not a folder.
    #[error("{} is {kind}, not a folder", path.display())]
    NotADirectory {
        /// The offending path (the folder itself or one of its parents).
        path: PathBuf,
        /// "a regular file", "a symlink to a regular file", ...
        kind: String,
    },
    /// The file system refused to tell (permissions).
    #[error("cannot inspect {}: {message}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// What kind of file `ft` is, for messages ("a FIFO (named pipe)", ...); `None` for a kind
/// without a name here.
pub(crate) fn file_kind(ft: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        return None;
    })
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    file_kind(&meta.file_type()).unwrap_or("not a folder")
}

/// The real location of folder `dir` (absolute, `.`/`..` already removed): its longest existing
/// ancestor canonicalized, plus the components that do not exist yet. Errors when `dir` or an
/// ancestor is not a folder or is a dangling symlink.
pub fn resolve_dir(dir: &Path) -> Result<PathBuf, DirProblem> {
    let mut existing = dir;
    let mut rest = Vec::new();
    loop {
        match existing.symlink_metadata() {
            Ok(_) => break,
            // ENOTDIR: a parent is a file; walk up to it and report it below.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    // The root itself does not exist: nothing to resolve.
                    return Ok(dir.to_owned());
                };
                rest.push(name.to_owned());
                existing = parent;
            }
            Err(e) => {
                return Err(DirProblem::Inspect {
                    path: existing.to_owned(),
                    message: e.to_string(),
                })
            }
        }
    }
    let inspect = |e: std::io::Error| DirProblem::Inspect {
        path: existing.to_owned(),
        message: e.to_string(),
    };
    let lmeta = existing.symlink_metadata().map_err(inspect)?;
    let meta = match existing.metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && lmeta.file_type().is_symlink() => {
            let target = std::fs::read_link(existing).unwrap_or_default();
            return Err(DirProblem::DanglingSymlink {
                link: existing.to_owned(),
                target,
            });
        }
        Err(e) => return Err(inspect(e)),
    };
    if !meta.is_dir() {
        let kind = if lmeta.file_type().is_symlink() {
            format!("a symlink to {}", kind_of(&meta))
        } else {
            kind_of(&meta).to_owned()
        };
        return Err(DirProblem::NotADirectory {
            path: existing.to_owned(),
            kind,
        });
    }
    let mut real = existing.canonicalize().map_err(inspect)?;
    real.extend(rest.iter().rev());
    Ok(real)
}

/// True when `a` and `b` are the same folder or one contains the other.
pub fn nested(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_through_symlinked_parents() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("out"), root.join("link")).unwrap();
        let r = resolve_dir(&root.join("link/state/x")).unwrap();
        assert_eq!(r, root.join("out/state/x"));
        assert!(nested(&r, &root.join("out")));
        assert_eq!(resolve_dir(&root.join("new")).unwrap(), root.join("new"));
    }

    #[test]
    fn files_and_dangling_symlinks_are_named() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let e = resolve_dir(&root.join("file")).unwrap_err().to_string();
        assert!(e.ends_with("file is a regular file, not a folder"), "{e}");
        let e = resolve_dir(&root.join("file/sub")).unwrap_err().to_string();
        assert!(e.contains("file is a regular file"), "{e}");
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
        let e = resolve_dir(&root.join("dangling")).unwrap_err().to_string();
        assert!(e.contains("dangling is a symlink to"), "{e}");
        assert!(e.contains("nowhere, which does not exist"), "{e}");
        std::os::unix::fs::symlink(root.join("file"), root.join("tofile")).unwrap();
        let e = resolve_dir(&root.join("tofile")).unwrap_err().to_string();
        assert!(e.contains("a symlink to a regular file"), "{e}");
    }
}
