//! Unpacking one source into a directory under the limits: the tar reader with its path
//! and entry-type rules, the directory copier, and the readers that hash and cap what
//! passes through them. The rules are in the parent module's docs.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::{ArchiveError, UnpackLimits, SKIPPED_DIR_NAMES};

/// Unpacks a tar or tar.gz stream into the empty directory `dest`, under `limits`.
pub(super) fn unpack_tar<R: BufRead>(
    mut input: R,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<(), ArchiveError> {
    let gzip = input
        .fill_buf()
        .map_err(|source| ArchiveError::Corrupt {
            after: None,
            source,
        })?
        .starts_with(&[0x1f, 0x8b]);
    let decoded: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let capped = CappedReader {
        inner: decoded,
        remaining: limits.max_stream_bytes(),
        hit: Rc::new(Cell::new(false)),
    };
    let hit = capped.hit.clone();
    let mut archive = tar::Archive::new(capped);
    let mut last: Option<String> = None;
    let mut entries = 0usize;
    let mut written = 0u64;
    let mut files = 0usize;
    // Errors from the reader: either our stream cap (a size bomb) or a corrupt archive.
    let stream_error = |source: io::Error, last: &Option<String>| {
        if hit.get() {
            ArchiveError::TooLarge {
                entry: last.clone().unwrap_or_else(|| "(archive headers)".into()),
                limit: limits.max_bytes,
            }
        } else {
            ArchiveError::Corrupt {
                after: last.clone(),
                source,
            }
        }
    };
    let iter = archive
        .entries()
        .map_err(|source| stream_error(source, &None))?;
    for entry in iter {
        let mut entry = entry.map_err(|source| stream_error(source, &last))?;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // `git archive` writes one (`pax_global_header`); it carries no file.
            continue;
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                entry: name,
                limit: limits.max_entries,
            });
        }
        let rel = safe_relative_path(&raw_path, &name)?;
        let write_err = |source| ArchiveError::Write {
            entry: name.clone(),
            source,
        };
        if kind.is_file() || kind == tar::EntryType::Continuous {
            if rel.as_os_str().is_empty() {
                return Err(ArchiveError::BadPath { entry: name });
            }
            let budget = limits.max_bytes - written;
            if entry.size() > budget {
                return Err(ArchiveError::TooLarge {
                    entry: name,
                    limit: limits.max_bytes,
                });
            }
            let target = dest.join(&rel);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(write_err)?;
            }
            let executable = entry
                .header()
                .mode()
                .map(|m| m & 0o111 != 0)
                .unwrap_or(false);
            let mut file = create_file(&target).map_err(write_err)?;
            last = Some(name.clone());
            written += copy_limited(&mut entry, &mut file, budget, &name, limits, |e| {
                stream_error(e, &last)
            })?;
            set_mode(&target, executable).map_err(write_err)?;
            files += 1;
        } else if kind.is_dir() {
            if !rel.as_os_str().is_empty() {
                fs::create_dir_all(dest.join(&rel)).map_err(write_err)?;
            }
            last = Some(name);
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            return Err(ArchiveError::Link {
                entry: name,
                kind: if kind.is_symlink() {
                    "symbolic link"
                } else {
                    "hard link"
                },
                target,
            });
        } else {
            let kind = match kind {
                tar::EntryType::Char => "character device".to_string(),
                tar::EntryType::Block => "block device".to_string(),
                tar::EntryType::Fifo => "fifo".to_string(),
                tar::EntryType::GNUSparse => "sparse file".to_string(),
                other => format!("entry of unsupported type {:?}", other.as_byte() as char),
            };
            return Err(ArchiveError::Special { entry: name, kind });
        }
    }
    if files == 0 {
        return Err(ArchiveError::Empty);
    }
    Ok(())
}

/// Maps an entry's raw path to a relative path with only normal components.
fn safe_relative_path(raw: &[u8], name: &str) -> Result<PathBuf, ArchiveError> {
    if raw.is_empty() {
        return Err(ArchiveError::BadPath {
            entry: name.to_string(),
        });
    }
    if raw[0] == b'/' {
        return Err(ArchiveError::AbsolutePath {
            entry: name.to_string(),
        });
    }
    let mut rel = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ArchiveError::ParentDir {
                    entry: name.to_string(),
                })
            }
            part => rel.push(std::ffi::OsStr::from_bytes(part)),
        }
    }
    Ok(rel)
}

/// Creates (or truncates) a regular file, never following a symlink at its place.
fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
}

fn set_mode(path: &Path, executable: bool) -> io::Result<()> {
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Copies at most `budget` bytes, counting what is really read; more is a size error.
fn copy_limited<R: Read, W: Write>(
    from: &mut R,
    to: &mut W,
    budget: u64,
    name: &str,
    limits: &UnpackLimits,
    read_error: impl Fn(io::Error) -> ArchiveError,
) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        total += n as u64;
        if total > budget {
            return Err(ArchiveError::TooLarge {
                entry: name.to_string(),
                limit: limits.max_bytes,
            });
        }
        to.write_all(&buf[..n])
            .map_err(|source| ArchiveError::Write {
                entry: name.to_string(),
                source,
            })?;
    }
}

/// Copies a directory source into the cache while hashing it.
pub(super) struct DirWalk<'a> {
    pub(super) hasher: Sha256,
    pub(super) limits: &'a UnpackLimits,
    pub(super) entries: usize,
    pub(super) written: u64,
}

impl DirWalk<'_> {
    pub(super) fn copy(&mut self, src: &Path, dest: &Path, rel: &Path) -> Result<(), ArchiveError> {
        let read_err = |source| ArchiveError::Read {
            path: src.to_path_buf(),
            source,
        };
        let mut children: Vec<fs::DirEntry> = fs::read_dir(src)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(read_err)?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let file_name = child.file_name();
            let child_rel = rel.join(&file_name);
            let name = child_rel.to_string_lossy().into_owned();
            let path = child.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| ArchiveError::Read {
                path: path.clone(),
                source,
            })?;
            let kind = meta.file_type();
            if kind.is_dir() && SKIPPED_DIR_NAMES.iter().any(|s| file_name == *s) {
                continue;
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(ArchiveError::TooManyEntries {
                    entry: name,
                    limit: self.limits.max_entries,
                });
            }
            let target = dest.join(&file_name);
            let write_err = |source| ArchiveError::Write {
                entry: name.clone(),
                source,
            };
            if kind.is_dir() {
                self.hasher.update(b"D");
                self.hasher.update(child_rel.as_os_str().as_bytes());
                self.hasher.update(b"\0");
                fs::create_dir(&target).map_err(write_err)?;
                self.copy(&path, &target, &child_rel)?;
            } else if kind.is_file() {
                let executable = meta.permissions().mode() & 0o111 != 0;
                let mut from =
                    HashingReader::new(File::open(&path).map_err(|source| ArchiveError::Read {
                        path: path.clone(),
                        source,
                    })?);
                let mut to = create_file(&target).map_err(write_err)?;
                let budget = self.limits.max_bytes - self.written;
                let n = copy_limited(&mut from, &mut to, budget, &name, self.limits, |source| {
                    ArchiveError::Read {
                        path: path.clone(),
                        source,
                    }
                })?;
                self.written += n;
                set_mode(&target, executable).map_err(write_err)?;
                self.hasher.update(if executable { b"X" } else { b"F" });
                self.hasher.update(child_rel.as_os_str().as_bytes());
                self.hasher.update(b"\0");
                self.hasher.update(n.to_be_bytes());
                self.hasher.update(from.hasher.finalize());
            } else if kind.is_symlink() {
                let target = fs::read_link(&path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(ArchiveError::Link {
                    entry: name,
                    kind: "symbolic link",
                    target,
                });
            } else {
                return Err(ArchiveError::Special {
                    entry: name,
                    kind: "special file (device, fifo or socket)".into(),
                });
            }
        }
        Ok(())
    }
}

/// A reader that hashes what passes through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub(super) fn hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that fails once more than `remaining` bytes have been read, flagging `hit`.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Probe for one more byte: exactly at the cap is fine, beyond it is not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.hit.set(true);
                    Err(io::Error::other(
                        "decompressed archive exceeds the size limit",
                    ))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_keep_only_normal_components() {
        let p = safe_relative_path(b"./a//b/./c", "x").unwrap();
        assert_eq!(p, Path::new("a/b/c"));
        assert!(matches!(
            safe_relative_path(b"a/../../b", "x"),
            Err(ArchiveError::ParentDir { .. })
        ));
        assert!(matches!(
            safe_relative_path(b"/etc/passwd", "x"),
            Err(ArchiveError::AbsolutePath { .. })
        ));
    }

    #[test]
    fn the_stream_cap_allows_exactly_the_cap() {
        let data = [7u8; 100];
        let hit = Rc::new(Cell::new(false));
        let mut r = CappedReader {
            inner: &data[..],
            remaining: 100,
            hit: hit.clone(),
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        let mut r = CappedReader {
            inner: &data[..],
            remaining: 99,
            hit: hit.clone(),
        };
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(hit.get());
    }
}
