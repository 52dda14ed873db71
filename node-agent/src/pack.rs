//! Packing an agent module into the bytes shipped with `loadAgent`, so that nodes need no
//! shared filesystem.
//!
//! A module path is a regular file (an archive) or a directory, nothing else: reading
//! `/dev/zero` would never end and opening a FIFO blocks for ever, so devices, FIFOs and
//! sockets are refused before anything is read, and what is read is capped at
//! [`MAX_MODULE_BYTES`].

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most bytes a module may pack to (an archive file's size, or a directory's files
/// together): 64 MiB. A module is shipped inside one bus message, so far less than this
/// can go over RabbitMQ (16 MiB by default, base64-encoded); the cap only makes sure that
/// no path can make the orchestrator read without end.
pub const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// The most files and directories a directory module may hold.
pub const MAX_MODULE_ENTRIES: usize = 10_000;

/// An agent archive ready to ship: its bytes and their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// A tar or tar.gz archive.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex (the node's cache key).
    pub sha256: String,
}

/// Why a module path could not be packed. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The path is a device, FIFO or socket: never a module.
    #[error(
        "agent path {path} is a {kind}; an agent module is a regular file (an archive) or a directory"
    )]
    NotAModule {
        /// The path given.
        path: PathBuf,
        /// What it is (`character device`, `fifo`, ...).
        kind: &'static str,
    },
    /// The module is larger than [`MAX_MODULE_BYTES`] or has more than
    /// [`MAX_MODULE_ENTRIES`] entries.
    #[error("agent module {path} is too large: {what} (the limit is {limit})")]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// What is over the limit.
        what: String,
        /// The limit, in words.
        limit: String,
    },
    /// The path could not be read.
    #[error("cannot read agent module {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl PackError {
    /// True when the path can never be a module (a special file, or over the limits), as
    /// opposed to a read error that a node with another filesystem might not have.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PackError::Read { .. })
    }
}

/// Reads an archive file as is, or packs a directory into a deterministic tar (sorted
/// entries, zero times and owners), so the same module always has the same hash.
pub fn pack(path: &Path) -> Result<Packed, PackError> {
    let meta = std::fs::metadata(path).map_err(|source| read_error(path, source))?;
    let bytes = if meta.is_dir() {
        tar_dir(path)?
    } else {
        let mut budget = Budget::new(path);
        read_file(path, &mut budget)?
    };
    let sha256 = crate::archive::sha256_hex(&bytes);
    Ok(Packed { bytes, sha256 })
}

/// What a non-regular, non-directory file is, in words; `None` for a file or directory.
pub fn special_kind(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() || kind.is_dir() {
        None
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_fifo() {
        Some("fifo")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

fn refuse_special(path: &Path, meta: &std::fs::Metadata) -> Result<(), PackError> {
    match special_kind(meta.file_type()) {
        Some(kind) => Err(PackError::NotAModule {
            path: path.to_path_buf(),
            kind,
        }),
        None => Ok(()),
    }
}

fn read_error(path: &Path, source: io::Error) -> PackError {
    PackError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Bytes and entries still allowed while packing one module.
struct Budget<'a> {
    module: &'a Path,
    bytes: u64,
    entries: usize,
}

impl<'a> Budget<'a> {
    fn new(module: &'a Path) -> Self {
        Budget {
            module,
            bytes: MAX_MODULE_BYTES,
            entries: MAX_MODULE_ENTRIES,
        }
    }

    fn too_large(&self, what: String) -> PackError {
        PackError::TooLarge {
            path: self.module.to_path_buf(),
            what,
            limit: format!("{MAX_MODULE_BYTES} bytes and {MAX_MODULE_ENTRIES} entries"),
        }
    }

    fn take_entry(&mut self, rel: &Path) -> Result<(), PackError> {
        self.entries = self.entries.checked_sub(1).ok_or_else(|| {
            self.too_large(format!(
                "more than {MAX_MODULE_ENTRIES} entries (at {})",
                rel.display()
            ))
        })?;
        Ok(())
    }
}

/// Reads one regular file within the budget. The file is opened without blocking (a FIFO
/// swapped in after the check would otherwise block the open) and checked again through
/// its descriptor, then read through a cap, so that a file growing meanwhile is refused
/// rather than read without end.
fn read_file(path: &Path, budget: &mut Budget) -> Result<Vec<u8>, PackError> {
    // A socket cannot even be opened: look at what the path is first.
    let before = std::fs::metadata(path).map_err(|source| read_error(path, source))?;
    refuse_special(path, &before)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| read_error(path, source))?;
    let meta = file.metadata().map_err(|source| read_error(path, source))?;
    refuse_special(path, &meta)?;
    if meta.len() > budget.bytes {
        return Err(budget.too_large(format!("{} is {} bytes", path.display(), meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    File::take(file, budget.bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| read_error(path, source))?;
    let n = bytes.len() as u64;
    if n > budget.bytes {
        return Err(budget.too_large(format!("{} grew past the limit", path.display())));
    }
    budget.bytes -= n;
    Ok(bytes)
}

fn tar_dir(dir: &Path) -> Result<Vec<u8>, PackError> {
    let mut budget = Budget::new(dir);
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files, &mut budget)?;
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for rel in files {
        let full = dir.join(&rel);
        let data = read_file(&full, &mut budget)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&full)
                .map_err(|source| read_error(&full, source))?
                .permissions()
                .mode()
                & 0o777
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &rel, data.as_slice())
            .map_err(|source| read_error(&full, source))?;
    }
    builder
        .into_inner()
        .map_err(|source| read_error(dir, source))
}

/// Regular files under `dir`, relative; links and special files are skipped (the node
/// would refuse them anyway).
fn collect(
    root: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    budget: &mut Budget,
) -> Result<(), PackError> {
    let here = root.join(rel);
    let entries = std::fs::read_dir(&here).map_err(|source| read_error(&here, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| read_error(&here, source))?;
        let kind = entry
            .file_type()
            .map_err(|source| read_error(&entry.path(), source))?;
        let name = rel.join(entry.file_name());
        if kind.is_dir() {
            budget.take_entry(&name)?;
            collect(root, &name, out, budget)?;
        } else if kind.is_file() {
            budget.take_entry(&name)?;
            out.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn packing_a_directory_twice_gives_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("magi-agent.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.py"), "x").unwrap();
        let a = pack(dir.path()).unwrap();
        let b = pack(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn dev_zero_is_refused_without_reading_it() {
        let started = Instant::now();
        let e = pack(Path::new("/dev/zero")).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(e.is_refusal(), "{e}");
        assert_eq!(
            e.to_string(),
            "agent path /dev/zero is a character device; an agent module is a regular file (an archive) or a directory"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("module.tar.gz");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = pack(&fifo).unwrap_err();
        assert!(
            matches!(e, PackError::NotAModule { kind: "fifo", .. }),
            "{e}"
        );
        assert!(e.to_string().contains(fifo.to_str().unwrap()), "{e}");
    }

    #[test]
    fn a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = pack(&path).unwrap_err();
        assert!(
            matches!(e, PackError::NotAModule { kind: "socket", .. }),
            "{e}"
        );
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.tar");
        // Sparse: the size is claimed, nothing is written.
        File::create(&big)
            .unwrap()
            .set_len(MAX_MODULE_BYTES + 1)
            .unwrap();
        let e = pack(&big).unwrap_err();
        assert!(matches!(e, PackError::TooLarge { .. }), "{e}");
        assert!(e.is_refusal());
    }

    #[test]
    fn a_directory_whose_files_add_up_past_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            File::create(dir.path().join(name))
                .unwrap()
                .set_len(MAX_MODULE_BYTES / 2 + 1)
                .unwrap();
        }
        let e = pack(dir.path()).unwrap_err();
        assert!(matches!(e, PackError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn a_missing_path_is_a_read_error_not_a_refusal() {
        let e = pack(Path::new("/nonexistent/module.tar.gz")).unwrap_err();
        assert!(!e.is_refusal());
        assert!(e.to_string().contains("/nonexistent/module.tar.gz"), "{e}");
    }
}
