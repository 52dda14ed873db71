//! The agent archive cache: agent sources unpacked safely into `<root>/<sha256-hex>/`.
//!
//! A source is a tar or tar.gz file, a directory, raw archive bytes (delivered over the bus)
//! or the original's base64 `tardata` (magi-spec §4.3). Each is keyed by the SHA-256 of its
//! bytes (a directory by a hash over a sorted walk of its relative paths, execute bits and
//! contents), so that a module unpacked once is reused by every later load of the same bytes.
//!
//! Unpacking is the security boundary of the node: an archive comes from whoever can publish
//! on the bus. So the rules are strict, and each refusal names the offending entry:
//!
//! - only regular files and directories; **every link is refused** (symbolic or hard, pointing
//!   in or out): agent modules do not need them, and refusing them all leaves no way for a
//!   later entry to write through a link planted by an earlier one;
//! - no absolute paths and no `..` components;
//! - no devices, fifos or sparse files;
//! - at most [`UnpackLimits::max_entries`] entries and [`UnpackLimits::max_bytes`] bytes,
//!   counting the bytes actually written, not what headers claim (gzip bombs), and a cap on
//!   the whole decompressed stream so that even oversized headers cannot exhaust memory.
//!
//! A module is unpacked into a fresh temporary directory inside the root, then renamed into
//! place in one step, so a reader never sees half a module and concurrent loads of the same
//! archive are safe (the loser of the rename discards its copy and uses the winner's).
//!
//! The original's archives are flat (files at the top level). An archive that wraps
//! everything in a single top-level directory holding the manifest (or an original `.idl`)
//! is accepted too: that directory becomes the module.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::manifest::MANIFEST_FILE;

/// The cache's directory name under a node's state directory.
pub const CACHE_SUBDIR: &str = "agent-cache";

/// Directory names skipped when a directory source is copied: build and VCS litter that is
/// not part of a module and would change its hash.
const SKIPPED_DIR_NAMES: &[&str] = &["__pycache__", ".git"];

/// Size limits applied while unpacking one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total bytes of file contents written (default 256 MiB).
    pub max_bytes: u64,
    /// Number of entries, files and directories (default 10 000).
    pub max_entries: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 256 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

impl UnpackLimits {
    /// The most decompressed tar bytes read: contents plus generous room for headers.
    fn max_stream_bytes(&self) -> u64 {
        let per_entry = 4 * 512;
        self.max_bytes
            .saturating_add((self.max_entries as u64 + 4).saturating_mul(per_entry))
            .saturating_add(1024 * 1024)
    }
}

/// Where an agent's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A local tar, tar.gz or tgz file (gzip detected by its magic bytes), or a directory.
    Path(PathBuf),
    /// The bytes of a tar or tar.gz archive.
    Bytes(Vec<u8>),
    /// The original's `tardata`: base64 of a tar archive (gzip accepted too).
    TarData(String),
}

/// A module unpacked in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedModule {
    /// The module directory, `<root>/<sha256>`.
    pub dir: PathBuf,
    /// The source's SHA-256, lowercase hex (what run records keep).
    pub sha256: String,
    /// True when the module was already in the cache.
    pub reused: bool,
}

/// Why a source could not be unpacked. Entry names are as the archive spells them.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The source path does not exist.
    #[error("agent source {0} does not exist")]
    NotFound(PathBuf),
    /// The source could not be read.
    #[error("cannot read agent source {path}: {source}")]
    Read {
        /// The source path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The source path is a device, fifo or socket.
    #[error("agent source {0} is neither a regular file nor a directory")]
    NotAFile(PathBuf),
    /// The archive itself is bigger than any module it may unpack to.
    #[error("agent archive {path} is {size} bytes: too large for the {limit}-byte module limit")]
    ArchiveTooLarge {
        /// The source path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The content limit.
        limit: u64,
    },
    /// `tardata` is not base64.
    #[error("agent tardata is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a readable tar (or tar.gz) archive.
    #[error("agent archive is not a valid tar or tar.gz{}: {source}", after_entry(.after))]
    Corrupt {
        /// The last entry read before the error, if any.
        after: Option<String>,
        /// What the reader said.
        source: io::Error,
    },
    /// The archive holds no files.
    #[error("agent archive is empty")]
    Empty,
    /// An entry's path has a `..` component.
    #[error("agent archive entry `{entry}` has a `..` component; refused (it could write outside the module)")]
    ParentDir {
        /// The entry.
        entry: String,
    },
    /// An entry's path is absolute.
    #[error("agent archive entry `{entry}` has an absolute path; refused (it could write outside the module)")]
    AbsolutePath {
        /// The entry.
        entry: String,
    },
    /// An entry's path is unusable (empty).
    #[error("agent archive entry `{entry}` has an unusable path")]
    BadPath {
        /// The entry.
        entry: String,
    },
    /// An entry is a link; links are refused.
    #[error("agent archive entry `{entry}` is a {kind} to `{target}`; links are not allowed in agent modules")]
    Link {
        /// The entry.
        entry: String,
        /// `symbolic link` or `hard link`.
        kind: &'static str,
        /// Where it points.
        target: String,
    },
    /// An entry is a device, fifo, sparse file or of an unknown type.
    #[error(
        "agent archive entry `{entry}` is a {kind}; only regular files and directories are allowed"
    )]
    Special {
        /// The entry.
        entry: String,
        /// What it is.
        kind: String,
    },
    /// Unpacking would write more than the byte limit.
    #[error("agent archive is too large: more than {limit} bytes unpacked (at entry `{entry}`)")]
    TooLarge {
        /// The entry being written when the limit was reached.
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// The archive has more entries than the limit.
    #[error("agent archive has more than {limit} entries (at entry `{entry}`)")]
    TooManyEntries {
        /// The first entry over the limit.
        entry: String,
        /// The limit.
        limit: usize,
    },
    /// An entry could not be written.
    #[error("cannot unpack agent archive entry `{entry}`: {source}")]
    Write {
        /// The entry.
        entry: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The source file changed between hashing and unpacking.
    #[error("agent source {0} changed while it was being unpacked")]
    Changed(PathBuf),
    /// The cache directory itself could not be used.
    #[error("cannot use the agent cache at {path}: {source}")]
    Cache {
        /// The cache path concerned.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

fn after_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" (after entry `{e}`)"),
        None => String::new(),
    }
}

/// The content-addressed cache of unpacked agent modules.
#[derive(Debug, Clone)]
pub struct ArchiveCache {
    root: PathBuf,
    limits: UnpackLimits,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArchiveCache {
    /// A cache rooted at `root` (created on first use), with default limits.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ArchiveCache {
            root: root.into(),
            limits: UnpackLimits::default(),
        }
    }

    /// The cache of a node whose state lives in `state_dir`: `<state_dir>/agent-cache`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        ArchiveCache::new(state_dir.join(CACHE_SUBDIR))
    }

    /// The same cache with other limits.
    pub fn with_limits(mut self, limits: UnpackLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits applied to each unpack.
    pub fn limits(&self) -> UnpackLimits {
        self.limits
    }

    /// Removes temporary directories older than `age` that an interrupted unpack (a killed
    /// node) left behind; returns how many. Younger ones may belong to a running unpack of
    /// another node sharing the cache, so they stay.
    pub fn remove_stale_temp_dirs(&self, age: std::time::Duration) -> io::Result<usize> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if !entry.file_name().as_bytes().starts_with(b".tmp-") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if old && fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Unpacks `source` on a blocking thread (see [`ArchiveCache::unpack`]).
    pub async fn unpack_async(&self, source: AgentSource) -> Result<UnpackedModule, ArchiveError> {
        let cache = self.clone();
        match tokio::task::spawn_blocking(move || cache.unpack(&source)).await {
            Ok(result) => result,
            Err(e) => Err(ArchiveError::Cache {
                path: self.root.clone(),
                source: io::Error::other(format!("unpack task failed: {e}")),
            }),
        }
    }

    /// Unpacks `source` into the cache, or finds it there; blocking file I/O.
    pub fn unpack(&self, source: &AgentSource) -> Result<UnpackedModule, ArchiveError> {
        match source {
            AgentSource::Path(path) => {
                let meta = match fs::metadata(path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ArchiveError::NotFound(path.clone()))
                    }
                    Err(source) => {
                        return Err(ArchiveError::Read {
                            path: path.clone(),
                            source,
                        })
                    }
                };
                if meta.is_dir() {
                    self.unpack_dir(path)
                } else if !meta.is_file() {
                    // Reading /dev/zero or a fifo would never end.
                    Err(ArchiveError::NotAFile(path.clone()))
                } else if meta.len() > self.limits.max_stream_bytes() {
                    // A tar is its contents plus headers; gzip only shrinks it.
                    Err(ArchiveError::ArchiveTooLarge {
                        path: path.clone(),
                        size: meta.len(),
                        limit: self.limits.max_bytes,
                    })
                } else {
                    self.unpack_file(path)
                }
            }
            AgentSource::Bytes(bytes) => self.unpack_bytes(bytes),
            AgentSource::TarData(text) => {
                // Python's base64.encodebytes wraps lines; tolerate any ASCII whitespace.
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD.decode(compact)?;
                self.unpack_bytes(&bytes)
            }
        }
    }

    fn unpack_bytes(&self, bytes: &[u8]) -> Result<UnpackedModule, ArchiveError> {
        let sha = hex(&Sha256::digest(bytes));
        if let Some(found) = self.cached(&sha) {
            return Ok(found);
        }
        let tmp = self.temp_dir(&sha)?;
        let result = unpack_tar(bytes, tmp.path(), &self.limits);
        self.commit(tmp, sha, result)
    }

    fn unpack_file(&self, path: &Path) -> Result<UnpackedModule, ArchiveError> {
        let read_err = |source| ArchiveError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut hashing = HashingReader::new(File::open(path).map_err(read_err)?);
        io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
        let sha = hashing.hex();
        if let Some(found) = self.cached(&sha) {
            return Ok(found);
        }
        // Hash again while unpacking: what lands in the cache must be what the key names.
        let tmp = self.temp_dir(&sha)?;
        let mut hashing = HashingReader::new(File::open(path).map_err(read_err)?);
        let mut result = unpack_tar(BufReader::new(&mut hashing), tmp.path(), &self.limits);
        if result.is_ok() {
            result = io::copy(&mut hashing, &mut io::sink())
                .map(drop)
                .map_err(read_err)
                .and_then(|()| {
                    if hashing.hex() == sha {
                        Ok(())
                    } else {
                        Err(ArchiveError::Changed(path.to_path_buf()))
                    }
                });
        }
        self.commit(tmp, sha, result)
    }

    fn unpack_dir(&self, src: &Path) -> Result<UnpackedModule, ArchiveError> {
        // One pass copies and hashes; the copy is dropped if the cache already has it.
        // Directory modules are small (a manifest and a script), so this costs little.
        let tmp = self.temp_dir("dir")?;
        let mut walk = DirWalk {
            hasher: Sha256::new(),
            limits: &self.limits,
            entries: 0,
            written: 0,
        };
        walk.hasher.update(b"magi-rs module directory v1\0");
        let result = walk.copy(src, tmp.path(), Path::new(""));
        let sha = hex(&walk.hasher.finalize());
        if result.is_ok() {
            if let Some(found) = self.cached(&sha) {
                return Ok(found);
            }
        }
        self.commit(tmp, sha, result)
    }

    fn cached(&self, sha: &str) -> Option<UnpackedModule> {
        let dir = self.root.join(sha);
        dir.is_dir().then(|| UnpackedModule {
            dir,
            sha256: sha.to_string(),
            reused: true,
        })
    }

    fn temp_dir(&self, tag: &str) -> Result<TempDir, ArchiveError> {
        fs::create_dir_all(&self.root).map_err(|source| ArchiveError::Cache {
            path: self.root.clone(),
            source,
        })?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = &tag[..tag.len().min(16)];
        let path = self
            .root
            .join(format!(".tmp-{tag}-{}-{n}", std::process::id()));
        fs::create_dir(&path).map_err(|source| ArchiveError::Cache {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }

    /// Moves a finished unpack into place (or discards it on error or when it lost a race).
    fn commit(
        &self,
        tmp: TempDir,
        sha: String,
        result: Result<(), ArchiveError>,
    ) -> Result<UnpackedModule, ArchiveError> {
        result?;
        let module_root = module_root(tmp.path())?;
        let dir = self.root.join(&sha);
        match fs::rename(&module_root, &dir) {
            Ok(()) => Ok(UnpackedModule {
                dir,
                sha256: sha,
                reused: false,
            }),
            // Another load of the same archive finished first: use its copy.
            Err(_) if dir.is_dir() => Ok(UnpackedModule {
                dir,
                sha256: sha,
                reused: true,
            }),
            Err(source) => Err(ArchiveError::Cache { path: dir, source }),
        }
    }
}

/// A temporary directory removed on drop (whatever is left of it).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The module inside an unpacked tree: the tree itself, or its single top-level directory
/// when that directory (and not the top level) holds the manifest or an original IDL.
fn module_root(tmp: &Path) -> Result<PathBuf, ArchiveError> {
    let read = |path: &Path| -> Result<Vec<fs::DirEntry>, ArchiveError> {
        fs::read_dir(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| ArchiveError::Cache {
                path: path.to_path_buf(),
                source,
            })
    };
    let top = read(tmp)?;
    if top.is_empty() {
        return Err(ArchiveError::Empty);
    }
    let is_module = |entries: &[fs::DirEntry]| {
        entries.iter().any(|e| {
            let name = e.file_name();
            name == MANIFEST_FILE || name.as_bytes().ends_with(b".idl")
        })
    };
    if is_module(&top) {
        return Ok(tmp.to_path_buf());
    }
    if let [only] = top.as_slice() {
        let inner = only.path();
        if only.file_type().map(|t| t.is_dir()).unwrap_or(false) && is_module(&read(&inner)?) {
            return Ok(inner);
        }
    }
    Ok(tmp.to_path_buf())
}

/// Unpacks a tar or tar.gz stream into the empty directory `dest`, under `limits`.
fn unpack_tar<R: BufRead>(
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
struct DirWalk<'a> {
    hasher: Sha256,
    limits: &'a UnpackLimits,
    entries: usize,
    written: u64,
}

impl DirWalk<'_> {
    fn copy(&mut self, src: &Path, dest: &Path, rel: &Path) -> Result<(), ArchiveError> {
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
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn hex(&self) -> String {
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
fn hex(bytes: &[u8]) -> String {
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
