//! The cache's size quota: pins, and eviction of what no loaded agent uses.
//!
//! State lives in the file system, so that it holds across every node agent sharing a
//! cache directory (processes, or the embedded nodes of one `magi run`) and dies with them:
//!
//! - a **pin** is a shared `flock` on `<root>/.locks/<sha>`, held by a [`Pin`] (an agent
//!   holds one for as long as it runs); the file's modification time is the module's last
//!   use, which orders eviction;
//! - **eviction** takes an exclusive, non-blocking `flock` on the same file: it fails while
//!   anyone pins the module, which is then left alone;
//! - moving a new module into place and evicting for it happen under an exclusive `flock`
//!   on `<root>/.locks/quota`.
//!
//! An evicted module is renamed out of the way (to a `.tmp-` name, which
//! `remove_stale_temp_dirs` also cleans) before it is deleted, so a reader never sees half
//! of one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{ArchiveCache, ArchiveError, TEMP_COUNTER};

/// The default quota of a node's agent cache: 2 GiB of unpacked modules.
pub const DEFAULT_QUOTA: u64 = 2 * 1024 * 1024 * 1024;

/// The cache's bookkeeping directory under its root: pin files and the quota lock.
pub const LOCKS_DIR: &str = ".locks";
const PINS: &str = LOCKS_DIR;

/// A module that must not be evicted: held while an agent runs from it. Dropping it
/// releases the module (it stays cached, and may be evicted when room is needed).
#[derive(Debug)]
pub struct Pin {
    sha256: String,
    _lock: File,
}

impl Pin {
    /// The pinned module's SHA-256.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The cache's exclusive lock, held while making room and moving a module in.
pub(super) struct QuotaLock(#[allow(dead_code)] File);

fn is_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Bytes of the regular files under `dir` (links are never in the cache).
pub(super) fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        total += if meta.is_dir() {
            tree_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// One module in the cache, as eviction sees it.
struct Cached {
    sha: String,
    size: u64,
    last_used: SystemTime,
}

impl ArchiveCache {
    fn cache_error(&self, path: &Path, source: io::Error) -> ArchiveError {
        ArchiveError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Pins the cached module `sha` (a 64-digit hex SHA-256), so it is not evicted while
    /// the [`Pin`] lives; [`ArchiveError::NotCached`] when the cache does not have it.
    pub fn pin(&self, sha: &str) -> Result<Pin, ArchiveError> {
        let not_cached = || ArchiveError::NotCached(sha.chars().take(64).collect());
        if !is_sha(sha) || !self.root().join(sha).is_dir() {
            return Err(not_cached());
        }
        let pin = self.lock_pin(sha)?;
        // Evicted between the look and the lock: the eviction held the lock, so by now
        // the directory is gone.
        if !self.root().join(sha).is_dir() {
            return Err(not_cached());
        }
        Ok(pin)
    }

    /// Takes a shared lock on the pin file of `sha` and marks the module used now.
    pub(super) fn lock_pin(&self, sha: &str) -> Result<Pin, ArchiveError> {
        let pins = self.root().join(PINS);
        fs::create_dir_all(&pins).map_err(|e| self.cache_error(&pins, e))?;
        let path = pins.join(sha);
        loop {
            let file = open_lock_file(&path).map_err(|e| self.cache_error(&path, e))?;
            flock(&file, libc::LOCK_SH).map_err(|e| self.cache_error(&path, e))?;
            // An eviction removes the pin file under its exclusive lock: a lock taken on
            // the removed file protects nothing, so take it again on the present one.
            let same = match (file.metadata(), fs::metadata(&path)) {
                (Ok(held), Ok(present)) => held.ino() == present.ino(),
                _ => false,
            };
            if same {
                let _ = file.set_modified(SystemTime::now());
                return Ok(Pin {
                    sha256: sha.to_string(),
                    _lock: file,
                });
            }
        }
    }

    /// The cache's exclusive lock (see the module docs).
    pub(super) fn lock_quota(&self) -> Result<QuotaLock, ArchiveError> {
        let dir = self.root().join(LOCKS_DIR);
        fs::create_dir_all(&dir).map_err(|e| self.cache_error(&dir, e))?;
        let path = dir.join("quota");
        let file = open_lock_file(&path).map_err(|e| self.cache_error(&path, e))?;
        flock(&file, libc::LOCK_EX).map_err(|e| self.cache_error(&path, e))?;
        Ok(QuotaLock(file))
    }

    /// The bytes the cached modules take together.
    pub fn usage(&self) -> Result<u64, ArchiveError> {
        Ok(self.modules()?.iter().map(|m| m.size).sum())
    }

    /// Every module in the cache.
    fn modules(&self) -> Result<Vec<Cached>, ArchiveError> {
        let entries = match fs::read_dir(self.root()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.cache_error(self.root(), e)),
        };
        let mut modules = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.cache_error(self.root(), e))?;
            let Some(sha) = entry
                .file_name()
                .to_str()
                .filter(|n| is_sha(n))
                .map(String::from)
            else {
                continue;
            };
            let path = entry.path();
            let size = tree_size(&path).map_err(|e| self.cache_error(&path, e))?;
            let used_file = self.root().join(PINS).join(&sha);
            let last_used = fs::metadata(&used_file)
                .or_else(|_| fs::metadata(&path))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            modules.push(Cached {
                sha,
                size,
                last_used,
            });
        }
        Ok(modules)
    }

    /// Evicts the least recently used unpinned modules (never `keep`) until `size` more
    /// bytes fit in the quota. Called under [`ArchiveCache::lock_quota`].
    pub(super) fn make_room(&self, size: u64, keep: &str) -> Result<(), ArchiveError> {
        let mut modules = self.modules()?;
        modules.retain(|m| m.sha != keep);
        let mut total: u64 = modules.iter().map(|m| m.size).sum();
        let fits = |total: u64| total.saturating_add(size) <= self.quota();
        modules.sort_by_key(|m| m.last_used);
        let mut in_use = 0;
        for module in modules {
            if fits(total) {
                return Ok(());
            }
            if self.evict(&module.sha)? {
                total -= module.size;
                tracing::info!(sha = %module.sha, bytes = module.size, "evicted an agent module from the cache");
            } else {
                in_use += module.size;
            }
        }
        if fits(total) {
            return Ok(());
        }
        Err(ArchiveError::CacheFull {
            size,
            quota: self.quota(),
            in_use,
        })
    }

    /// Removes module `sha` unless it is pinned; whether it was removed.
    fn evict(&self, sha: &str) -> Result<bool, ArchiveError> {
        let pins = self.root().join(PINS);
        fs::create_dir_all(&pins).map_err(|e| self.cache_error(&pins, e))?;
        let pin_path = pins.join(sha);
        let lock = open_lock_file(&pin_path).map_err(|e| self.cache_error(&pin_path, e))?;
        match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(self.cache_error(&pin_path, e)),
        }
        let dir = self.root().join(sha);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let doomed = self
            .root()
            .join(format!(".tmp-evict-{}-{n}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(|e| self.cache_error(&dir, e))?;
        let _ = fs::remove_file(&pin_path);
        drop(lock);
        fs::remove_dir_all(&doomed).map_err(|e| self.cache_error(&doomed, e))?;
        Ok(true)
    }
}

/// Parses a quota for a command-line flag: bytes, or a number with `K`, `M`, `G` or `T`
/// (powers of 1024, an optional `iB`/`B` after it): `2G`, `512MiB`, `1073741824`.
pub fn parse_quota(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{text:?}: give bytes, or a number with K, M, G or T"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{text:?}: give bytes, or a number with K, M, G or T"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_bytes_or_binary_units() {
        assert_eq!(parse_quota("2G"), Ok(DEFAULT_QUOTA));
        assert_eq!(parse_quota("512MiB"), Ok(512 << 20));
        assert_eq!(parse_quota("1024"), Ok(1024));
        for bad in ["", "G", "2X", "-1G", "99999999999T"] {
            assert!(parse_quota(bad).is_err(), "{bad:?}");
        }
    }
}
