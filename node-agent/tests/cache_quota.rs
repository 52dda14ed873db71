//! The agent cache's size quota: small archives that unpack big cannot fill a node's disk;
//! modules no agent uses are evicted (least recently used first), modules in use never are,
//! and what cannot fit is refused with a clear error.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use magi_node::archive::{AgentSource, ArchiveCache, ArchiveError, Pin, UnpackedModule};

const KIB: u64 = 1024;
const QUOTA: u64 = 1024 * KIB;
/// Each test module unpacks to a bit more than this (a manifest and a tag file besides).
const MODULE: u64 = 400 * KIB;

/// A gzipped module that unpacks to about `bytes`: a manifest, a tag making it unique, and
/// `bytes` of zeros (which compress to almost nothing, like the issue's 360 KB archives
/// that unpacked to 1 GB).
fn module(tag: &str, bytes: u64) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add(
        "magi-agent.json",
        br#"{"name":"t","command":["python3","t.py"]}"#,
    );
    add("tag", tag.as_bytes());
    add("zeros", &vec![0u8; bytes as usize]);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn cache(dir: &tempfile::TempDir) -> ArchiveCache {
    ArchiveCache::new(dir.path().join("cache")).with_quota(QUOTA)
}

fn unpack(cache: &ArchiveCache, tag: &str) -> Result<UnpackedModule, ArchiveError> {
    cache.unpack(&AgentSource::Bytes(module(tag, MODULE)))
}

fn unpack_pinned(cache: &ArchiveCache, tag: &str) -> (UnpackedModule, Pin) {
    cache
        .unpack_pinned(&AgentSource::Bytes(module(tag, MODULE)))
        .unwrap()
}

#[test]
fn four_archives_that_unpack_past_the_quota_leave_the_cache_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let archive = module("a", MODULE);
    assert!(archive.len() < 4 * 1024, "{} bytes", archive.len());
    let mut modules = Vec::new();
    for tag in ["a", "b", "c", "d"] {
        modules.push(unpack(&cache, tag).unwrap());
        let usage = cache.usage().unwrap();
        assert!(usage <= QUOTA, "after {tag}: {usage} bytes in the cache");
    }
    // Two fit in 1 MiB: the two most recent.
    let present: Vec<bool> = modules.iter().map(|m| m.dir.is_dir()).collect();
    assert_eq!(present, [false, false, true, true]);
    assert!(cache.usage().unwrap() > 2 * MODULE);
}

#[test]
fn a_pinned_module_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let (first, pin) = unpack_pinned(&cache, "in-use");
    for tag in ["b", "c", "d", "e"] {
        unpack(&cache, tag).unwrap();
        assert!(first.dir.join("zeros").is_file(), "evicted while pinned");
        assert!(cache.usage().unwrap() <= QUOTA);
    }
    drop(pin);
    // Released, it is the least recently used and goes first.
    unpack(&cache, "f").unwrap();
    assert!(!first.dir.exists());
}

#[test]
fn the_least_recently_used_module_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let a = unpack(&cache, "a").unwrap();
    let b = unpack(&cache, "b").unwrap();
    // Using `a` again (an agent loads it) makes `b` the older one.
    drop(cache.pin(&a.sha256).unwrap());
    unpack(&cache, "c").unwrap();
    assert!(a.dir.is_dir());
    assert!(!b.dir.exists());
}

#[test]
fn a_module_larger_than_the_quota_is_refused_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let kept = unpack(&cache, "kept").unwrap();
    let err = cache
        .unpack(&AgentSource::Bytes(module("huge", QUOTA + KIB)))
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::OverQuota { quota: QUOTA, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("more than the node's agent cache quota of 1048576 bytes"),
        "{err}"
    );
    // Nothing was evicted for it, and no temporary copy remains.
    assert!(kept.dir.is_dir());
    let names: Vec<String> = std::fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_module_that_fits_only_if_modules_in_use_went_is_refused_until_one_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let (_a, pin_a) = unpack_pinned(&cache, "a");
    let (_b, _pin_b) = unpack_pinned(&cache, "b");
    let err = unpack(&cache, "c").unwrap_err();
    match &err {
        ArchiveError::CacheFull { quota, in_use, .. } => {
            assert_eq!(*quota, QUOTA);
            assert!(*in_use > 2 * MODULE, "{in_use}");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .starts_with("the node's agent cache is full"),
        "{err}"
    );
    drop(pin_a);
    unpack(&cache, "c").unwrap();
}

#[test]
fn pinning_an_unknown_or_evicted_module_says_it_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    for bad in ["../../etc", "", &"0".repeat(64)] {
        assert!(
            matches!(cache.pin(bad), Err(ArchiveError::NotCached(_))),
            "{bad:?}"
        );
    }
    let a = unpack(&cache, "a").unwrap();
    unpack(&cache, "b").unwrap();
    unpack(&cache, "c").unwrap();
    assert!(matches!(
        cache.pin(&a.sha256),
        Err(ArchiveError::NotCached(_))
    ));
    // The same bytes again unpack again.
    assert!(!unpack(&cache, "a").unwrap().reused);
}

#[test]
fn two_caches_on_one_directory_respect_each_others_pins() {
    // Two node agents on one machine sharing a state directory.
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (cache(&dir), cache(&dir));
    let (a, _pin) = unpack_pinned(&one, "a");
    for tag in ["b", "c", "d"] {
        unpack(&two, tag).unwrap();
    }
    assert!(a.dir.is_dir());
    assert!(two.usage().unwrap() <= QUOTA);
}
