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
//! The cache has a size quota ([`DEFAULT_QUOTA`], [`ArchiveCache::with_quota`]): before a
//! new module is moved into place, the least recently used modules that no loaded agent
//! uses are evicted until it fits; a module larger than the quota alone, or one that does
//! not fit while everything cached is in use, is refused. An agent holds a [`Pin`] on its
//! module for as long as it runs; see `quota.rs`.
//!
//! The original's archives are flat (files at the top level). An archive that wraps
//! everything in a single top-level directory holding the manifest (or an original `.idl`)
//! is accepted too: that directory becomes the module.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::manifest::MANIFEST_FILE;

mod quota;
mod unpack;

pub use quota::{parse_quota, Pin, DEFAULT_QUOTA, LOCKS_DIR};

use unpack::{hex, unpack_tar, DirWalk, HashingReader};

/// SHA-256 of bytes as lowercase hex: how archives, cache entries and procedures are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The cache's directory name under a node's state directory.
pub const CACHE_SUBDIR: &str = "agent-cache";

/// Directory names skipped when a directory source is copied: build and VCS litter that is
/// not part of a module and would change its hash.
pub(super) const SKIPPED_DIR_NAMES: &[&str] = &["__pycache__", ".git"];

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
    pub(super) fn max_stream_bytes(&self) -> u64 {
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
    /// A module was asked for by hash and is not in the cache (never unpacked, or evicted).
    #[error("agent module {0} is not in the agent cache")]
    NotCached(String),
    /// The module alone is larger than the cache's quota.
    #[error("agent module unpacks to {size} bytes, more than the node's agent cache quota of {quota} bytes")]
    OverQuota {
        /// The module's unpacked size.
        size: u64,
        /// The quota.
        quota: u64,
    },
    /// The module does not fit and nothing cached can be evicted: the rest is in use.
    #[error(
        "the node's agent cache is full: {size} more bytes do not fit in its quota of {quota} \
         bytes, and {in_use} bytes are held by loaded agents (unload some, or raise the quota)"
    )]
    CacheFull {
        /// The module's unpacked size.
        size: u64,
        /// The quota.
        quota: u64,
        /// Bytes of cached modules in use (pinned).
        in_use: u64,
    },
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
    quota: u64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArchiveCache {
    /// A cache rooted at `root` (created on first use), with default limits.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ArchiveCache {
            root: root.into(),
            limits: UnpackLimits::default(),
            quota: DEFAULT_QUOTA,
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

    /// The same cache with another size quota: the most bytes its unpacked modules take
    /// together (see the module docs).
    pub fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = bytes;
        self
    }

    /// The size quota, in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
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
        self.unpack_pinned_async(source).await.map(|(m, _)| m)
    }

    /// Unpacks `source` on a blocking thread (see [`ArchiveCache::unpack_pinned`]).
    pub async fn unpack_pinned_async(
        &self,
        source: AgentSource,
    ) -> Result<(UnpackedModule, Pin), ArchiveError> {
        let cache = self.clone();
        match tokio::task::spawn_blocking(move || cache.unpack_pinned(&source)).await {
            Ok(result) => result,
            Err(e) => Err(ArchiveError::Cache {
                path: self.root.clone(),
                source: io::Error::other(format!("unpack task failed: {e}")),
            }),
        }
    }

    /// Unpacks `source` into the cache, or finds it there; blocking file I/O. The module is
    /// not pinned: a later unpack may evict it. An agent about to run uses
    /// [`ArchiveCache::unpack_pinned`].
    pub fn unpack(&self, source: &AgentSource) -> Result<UnpackedModule, ArchiveError> {
        self.unpack_pinned(source).map(|(m, _)| m)
    }

    /// Unpacks `source` into the cache, or finds it there, and pins it: it is not evicted
    /// while the [`Pin`] lives. Blocking file I/O.
    pub fn unpack_pinned(
        &self,
        source: &AgentSource,
    ) -> Result<(UnpackedModule, Pin), ArchiveError> {
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

    fn unpack_bytes(&self, bytes: &[u8]) -> Result<(UnpackedModule, Pin), ArchiveError> {
        let sha = sha256_hex(bytes);
        if let Some(found) = self.cached(&sha) {
            return Ok(found);
        }
        let tmp = self.temp_dir(&sha)?;
        let result = unpack_tar(bytes, tmp.path(), &self.limits);
        self.commit(tmp, sha, result)
    }

    fn unpack_file(&self, path: &Path) -> Result<(UnpackedModule, Pin), ArchiveError> {
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

    fn unpack_dir(&self, src: &Path) -> Result<(UnpackedModule, Pin), ArchiveError> {
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

    /// The module `sha`, pinned, when the cache has it.
    fn cached(&self, sha: &str) -> Option<(UnpackedModule, Pin)> {
        let pin = self.pin(sha).ok()?;
        let module = UnpackedModule {
            dir: self.root.join(sha),
            sha256: sha.to_string(),
            reused: true,
        };
        Some((module, pin))
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

    /// Moves a finished unpack into place, making room for it under the quota, and pins
    /// it; discards it on error or when another unpack of the same bytes finished first.
    fn commit(
        &self,
        tmp: TempDir,
        sha: String,
        result: Result<(), ArchiveError>,
    ) -> Result<(UnpackedModule, Pin), ArchiveError> {
        result?;
        let module_root = module_root(tmp.path())?;
        let size = quota::tree_size(&module_root).map_err(|source| ArchiveError::Cache {
            path: module_root.clone(),
            source,
        })?;
        if size > self.quota {
            return Err(ArchiveError::OverQuota {
                size,
                quota: self.quota,
            });
        }
        // Evicting and moving into place happen under the cache's lock, so that two unpacks
        // (of this node or of another sharing the cache) never count the same free room.
        let _lock = self.lock_quota()?;
        let dir = self.root.join(&sha);
        let reused = dir.is_dir();
        if !reused {
            self.make_room(size, &sha)?;
            if let Err(source) = fs::rename(&module_root, &dir) {
                if !dir.is_dir() {
                    return Err(ArchiveError::Cache { path: dir, source });
                }
            }
        }
        let pin = self.lock_pin(&sha)?;
        let module = UnpackedModule {
            dir,
            sha256: sha,
            reused,
        };
        Ok((module, pin))
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
