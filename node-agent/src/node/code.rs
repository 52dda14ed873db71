//! Where a `loadAgent`'s code comes from, and unpacking shipped archives off the dispatcher.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use magi_proto::daemon::LoadAgent;

use super::Node;
use crate::archive::{AgentSource, ArchiveCache, Pin};

impl Node {
    /// Where a `loadAgent` call's code comes from: bytes shipped over the bus (the
    /// orchestrator's way; already in the cache when the same bytes came before), the
    /// original's `tardata`, or a `path` (resolved through the module library when it does
    /// not exist here). Nothing heavy happens here: decoding and unpacking are left to the
    /// load's own task, so the dispatcher is never held up by them.
    /// A shipped archive is taken out of `load`, not copied: a fleet's thousand node agents
    /// each hold one while the first unpacks it.
    pub(super) fn source_of(&self, load: &mut LoadAgent) -> Result<Code, String> {
        // `DaemonCall::parse` has checked that a `sha256` is 64 hex digits.
        if load.archive.is_some() || load.sha256.is_some() {
            return Ok(Code::Shipped {
                b64: load.archive.take(),
                sha: load.sha256.clone(),
            });
        }
        if let Some(t) = &load.tardata {
            return Ok(Code::Source(AgentSource::TarData(t.clone())));
        }
        if let Some(p) = &load.path {
            let resolved = self.config.library.resolve(p).map_err(|e| e.to_string())?;
            if let Some(note) = resolved.note {
                tracing::info!(node = %self.config.name, "{note}");
            }
            return Ok(Code::Source(AgentSource::Path(resolved.path)));
        }
        Err("loadAgent names no code: give `path`, `tardata` or a shipped `archive`".into())
    }
}

/// A load's code, as found by `source_of`.
pub(super) enum Code {
    /// Shipped by the orchestrator: the archive in base64 (none when it trusts the node to
    /// have the bytes cached already) and the SHA-256 it gave.
    Shipped {
        b64: Option<String>,
        sha: Option<String>,
    },
    /// A path or the original's `tardata`.
    Source(AgentSource),
}

impl Code {
    /// The unpacked module's directory, pinned in the cache for as long as the [`Pin`]
    /// lives (the agent's lifetime): the cache quota never evicts a running agent's code.
    pub(super) async fn unpack(self, cache: &ArchiveCache) -> Result<(PathBuf, Pin), String> {
        match self {
            Code::Shipped { b64, sha } => unpack_shipped(cache, b64, sha).await,
            Code::Source(source) => cache
                .unpack_pinned_async(source)
                .await
                .map(|(m, pin)| (m.dir, pin))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Finds a shipped archive in the cache (the same bytes came before), or decodes and
/// unpacks it on a blocking thread. Node agents of one process that share a cache
/// (`magi-node --nodes N`) and get the same archive at once unpack it once: the others
/// wait for the first and then find it in the cache. One that finds it there already does
/// not wait for the lock (a fleet's thousand loads went through it one by one, each
/// holding its archive meanwhile); a module is renamed into the cache whole, so one seen
/// there is complete.
async fn unpack_shipped(
    cache: &ArchiveCache,
    b64: Option<String>,
    sha: Option<String>,
) -> Result<(PathBuf, Pin), String> {
    if let Some(hit) = cached(cache, sha.as_deref()).await {
        return Ok(hit);
    }
    let lock = sha.as_ref().map(|s| unpack_lock(&cache.root().join(s)));
    let _held = match &lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    if let Some(hit) = cached(cache, sha.as_deref()).await {
        return Ok(hit);
    }
    let b64 = b64.ok_or("the archive is not in this node's cache and none was shipped")?;
    let bytes =
        tokio::task::spawn_blocking(move || base64::engine::general_purpose::STANDARD.decode(b64))
            .await
            .map_err(|e| format!("decoding the shipped archive failed: {e}"))?
            .map_err(|e| format!("the shipped archive is not valid base64: {e}"))?;
    cache
        .unpack_pinned_async(AgentSource::Bytes(bytes))
        .await
        .map(|(m, pin)| (m.dir, pin))
        .map_err(|e| e.to_string())
}

/// The module of SHA-256 `sha`, pinned, when the cache holds it.
async fn cached(cache: &ArchiveCache, sha: Option<&str>) -> Option<(PathBuf, Pin)> {
    let sha = sha?.to_string();
    let (c, dir) = (cache.clone(), cache.root().join(&sha));
    let pin = tokio::task::spawn_blocking(move || c.pin(&sha))
        .await
        .ok()?
        .ok()?;
    dir.join(crate::manifest::MANIFEST_FILE)
        .is_file()
        .then_some((dir, pin))
}

/// One lock per cache entry being unpacked in this process.
fn unpack_lock(entry: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<PathBuf, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|_, l| l.strong_count() > 0);
    if let Some(lock) = locks.get(entry).and_then(std::sync::Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(entry.to_path_buf(), Arc::downgrade(&lock));
    lock
}
