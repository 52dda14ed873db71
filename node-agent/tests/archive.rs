//! The agent archive cache: unpacking, reuse, and refusal of malicious archives.
//!
//! Every malicious archive is built with the `tar` crate's raw header API (which writes
//! whatever path bytes it is given) and unpacked into a cache inside a sandbox directory;
//! each test then proves that nothing exists in the sandbox but the (empty) cache.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use magi_node::archive::{AgentSource, ArchiveCache, ArchiveError, UnpackLimits, LOCKS_DIR};
use tar::{EntryType, Header};

/// A tar archive built entry by entry with raw headers.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        RawTar(Vec::new())
    }

    /// Appends an entry with exactly these path and link bytes.
    fn entry(mut self, path: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..path.len()].copy_from_slice(path);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(path.as_bytes(), EntryType::Regular, b"", data)
    }

    fn dir(self, path: &str) -> Self {
        self.entry(path.as_bytes(), EntryType::Directory, b"", b"")
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const MANIFEST: &[u8] = br#"{"name":"t","command":["python3","t.py"]}"#;

/// A sandbox holding the cache at `<sandbox>/cache`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cache(&self) -> ArchiveCache {
        ArchiveCache::new(self.dir.path().join("cache"))
    }

    fn small_cache(&self) -> ArchiveCache {
        self.cache().with_limits(UnpackLimits {
            max_bytes: 1024 * 1024,
            max_entries: 10,
        })
    }

    /// Everything under the sandbox, relative, sorted.
    fn contents(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }

    /// Asserts the refusal left nothing behind: no module, no temporary directory, nothing
    /// beside the cache.
    fn assert_untouched(&self) {
        let contents = self.contents();
        assert!(
            contents.is_empty() || contents == ["cache"],
            "files were left behind: {contents:?}"
        );
    }
}

fn refuse(tar: Vec<u8>) -> (ArchiveError, Sandbox) {
    let sandbox = Sandbox::new();
    let err = sandbox
        .small_cache()
        .unpack(&AgentSource::Bytes(tar))
        .unwrap_err();
    sandbox.assert_untouched();
    (err, sandbox)
}

#[test]
fn a_flat_tar_gz_file_unpacks_by_hash_and_is_reused() {
    let sandbox = Sandbox::new();
    let tar = gzip(
        &RawTar::new()
            .file("magi-agent.json", MANIFEST)
            .file("t.py", b"print(1)")
            .dir("lib")
            .file("lib/x.py", b"x = 1")
            .finish(),
    );
    let path = sandbox.dir.path().join("t.tar.gz");
    fs::write(&path, &tar).unwrap();
    let cache = sandbox.cache();
    let first = cache.unpack(&AgentSource::Path(path.clone())).unwrap();
    assert!(!first.reused);
    assert_eq!(first.sha256.len(), 64);
    assert_eq!(first.dir, cache.root().join(&first.sha256));
    assert_eq!(fs::read(first.dir.join("lib/x.py")).unwrap(), b"x = 1");
    assert_eq!(
        fs::read(first.dir.join("magi-agent.json")).unwrap(),
        MANIFEST
    );
    // The same bytes, by any route, are the same module.
    let again = cache.unpack(&AgentSource::Path(path)).unwrap();
    assert!(again.reused);
    assert_eq!(again.dir, first.dir);
    let by_bytes = cache.unpack(&AgentSource::Bytes(tar)).unwrap();
    assert_eq!((by_bytes.reused, by_bytes.dir), (true, first.dir));
    let leftovers: Vec<_> = fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != LOCKS_DIR)
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(&first.sha256)]);
}

#[test]
fn gzip_is_detected_by_magic_bytes_not_by_name() {
    let sandbox = Sandbox::new();
    let plain = RawTar::new().file("magi-agent.json", MANIFEST).finish();
    let misnamed_plain = sandbox.dir.path().join("a.tar.gz");
    fs::write(&misnamed_plain, &plain).unwrap();
    let misnamed_gzip = sandbox.dir.path().join("b.tar");
    fs::write(&misnamed_gzip, gzip(&plain)).unwrap();
    let cache = sandbox.cache();
    for path in [misnamed_plain, misnamed_gzip] {
        let m = cache.unpack(&AgentSource::Path(path)).unwrap();
        assert_eq!(fs::read(m.dir.join("magi-agent.json")).unwrap(), MANIFEST);
    }
}

#[test]
fn a_single_top_level_directory_holding_the_manifest_is_stripped() {
    let sandbox = Sandbox::new();
    let tar = RawTar::new()
        .dir("http_client")
        .file("http_client/magi-agent.json", MANIFEST)
        .file("http_client/t.py", b"")
        .finish();
    let m = sandbox.cache().unpack(&AgentSource::Bytes(tar)).unwrap();
    assert!(m.dir.join("magi-agent.json").is_file());
    assert!(m.dir.join("t.py").is_file());
    // A wrapper without a manifest inside stays as it is.
    let tar = RawTar::new().file("only/readme", b"hi").finish();
    let m = sandbox.cache().unpack(&AgentSource::Bytes(tar)).unwrap();
    assert!(m.dir.join("only/readme").is_file());
}

#[test]
fn tardata_is_base64_of_a_plain_or_gzipped_tar_with_line_breaks_tolerated() {
    let sandbox = Sandbox::new();
    let tar = RawTar::new().file("magi-agent.json", MANIFEST).finish();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&tar);
    // Python's base64.encodebytes breaks lines every 76 characters.
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let cache = sandbox.cache();
    let m = cache.unpack(&AgentSource::TarData(wrapped)).unwrap();
    assert_eq!(fs::read(m.dir.join("magi-agent.json")).unwrap(), MANIFEST);
    let gz = base64::engine::general_purpose::STANDARD.encode(gzip(&tar));
    assert!(cache.unpack(&AgentSource::TarData(gz)).is_ok());
    let err = cache
        .unpack(&AgentSource::TarData("not base64!".into()))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Base64(_)), "{err}");
}

#[test]
fn a_directory_source_is_copied_with_a_content_hash() {
    let sandbox = Sandbox::new();
    let src = sandbox.dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(src.join("__pycache__")).unwrap();
    fs::write(src.join("magi-agent.json"), MANIFEST).unwrap();
    fs::write(src.join("sub/a.txt"), "a").unwrap();
    fs::write(src.join("__pycache__/x.pyc"), "junk").unwrap();
    let run = src.join("run.sh");
    fs::write(&run, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();

    let cache = sandbox.cache();
    let first = cache.unpack(&AgentSource::Path(src.clone())).unwrap();
    assert_eq!(fs::read(first.dir.join("sub/a.txt")).unwrap(), b"a");
    assert!(!first.dir.join("__pycache__").exists());
    let mode = fs::metadata(first.dir.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the execute bit is kept");
    // Unchanged, even with new bytecode litter: the same module.
    fs::write(src.join("__pycache__/y.pyc"), "more junk").unwrap();
    let again = cache.unpack(&AgentSource::Path(src.clone())).unwrap();
    assert_eq!((again.reused, &again.dir), (true, &first.dir));
    // Changed content: a new module.
    fs::write(src.join("sub/a.txt"), "b").unwrap();
    let changed = cache.unpack(&AgentSource::Path(src.clone())).unwrap();
    assert_ne!(changed.sha256, first.sha256);
    assert_eq!(fs::read(changed.dir.join("sub/a.txt")).unwrap(), b"b");
    // A symlink in a directory source is refused like one in an archive.
    std::os::unix::fs::symlink("/", src.join("root")).unwrap();
    let err = cache.unpack(&AgentSource::Path(src)).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Link { entry, target, .. } if entry == "root" && target == "/"),
        "{err}"
    );
}

#[test]
fn missing_device_and_oversized_source_paths_are_refused() {
    let sandbox = Sandbox::new();
    let err = sandbox
        .cache()
        .unpack(&AgentSource::Path(PathBuf::from("/nonexistent/a.tar.gz")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent source /nonexistent/a.tar.gz does not exist"
    );
    // Reading a device as an archive would never end.
    let err = sandbox
        .cache()
        .unpack(&AgentSource::Path(PathBuf::from("/dev/zero")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent source /dev/zero is neither a regular file nor a directory"
    );
    let big = sandbox.dir.path().join("big.tar");
    fs::File::create(&big)
        .unwrap()
        .set_len(8 * 1024 * 1024)
        .unwrap();
    let err = sandbox
        .small_cache()
        .unpack(&AgentSource::Path(big))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::ArchiveTooLarge { .. }), "{err}");
}

#[test]
fn parent_directory_components_are_refused() {
    for path in ["../x", "a/../../x", "./../x"] {
        let tar = RawTar::new()
            .file("magi-agent.json", MANIFEST)
            .file(path, b"owned")
            .finish();
        let (err, _sandbox) = refuse(tar);
        assert!(
            matches!(&err, ArchiveError::ParentDir { entry } if entry == path),
            "{path}: {err}"
        );
        assert!(err.to_string().contains(&format!("`{path}`")), "{err}");
    }
}

#[test]
fn absolute_paths_are_refused_and_not_written() {
    let target = std::env::temp_dir().join(format!("magi-archive-test-{}", std::process::id()));
    let tar = RawTar::new()
        .file(target.to_str().unwrap(), b"owned")
        .finish();
    let (err, _sandbox) = refuse(tar);
    assert!(matches!(err, ArchiveError::AbsolutePath { .. }), "{err}");
    assert!(err.to_string().contains(target.to_str().unwrap()), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_symlink_to_the_root_is_refused_before_anything_can_write_through_it() {
    let tar = RawTar::new()
        .entry(b"escape", EntryType::Symlink, b"/", b"")
        .file("escape/tmp/owned", b"owned")
        .finish();
    let (err, _sandbox) = refuse(tar);
    assert_eq!(
        err.to_string(),
        "agent archive entry `escape` is a symbolic link to `/`; links are not allowed in agent modules"
    );
}

#[test]
fn hard_links_are_refused_in_or_out() {
    for target in [
        &b"../../../etc/passwd"[..],
        b"/etc/passwd",
        b"magi-agent.json",
    ] {
        let tar = RawTar::new()
            .file("magi-agent.json", MANIFEST)
            .entry(b"link", EntryType::Link, target, b"")
            .finish();
        let (err, _sandbox) = refuse(tar);
        assert!(
            matches!(&err, ArchiveError::Link { kind: "hard link", entry, .. } if entry == "link"),
            "{err}"
        );
    }
}

#[test]
fn devices_and_fifos_are_refused() {
    for (kind, word) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
    ] {
        let tar = RawTar::new().entry(b"dev", kind, b"", b"").finish();
        let (err, _sandbox) = refuse(tar);
        assert!(err.to_string().contains(word), "{err}");
        assert!(matches!(err, ArchiveError::Special { .. }));
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_size_limit() {
    // One entry claiming, and holding, 64 MiB of zeros: about 64 KiB compressed.
    let size = 64 * 1024 * 1024;
    let mut h = Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"bomb");
    h.set_entry_type(EntryType::Regular);
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..size / zeros.len() {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1024 * 1024);
    let (err, _sandbox) = refuse(bomb);
    assert_eq!(
        err.to_string(),
        "agent archive is too large: more than 1048576 bytes unpacked (at entry `bomb`)"
    );
}

#[test]
fn the_size_limit_counts_all_files_together() {
    let chunk = vec![b'x'; 400 * 1024];
    let tar = RawTar::new()
        .file("a", &chunk)
        .file("b", &chunk)
        .file("c", &chunk)
        .finish();
    let (err, _sandbox) = refuse(tar);
    assert!(
        matches!(&err, ArchiveError::TooLarge { entry, .. } if entry == "c"),
        "{err}"
    );
}

#[test]
fn an_oversized_header_cannot_exhaust_memory() {
    // A GNU long-name header of 8 MiB: the tar reader would buffer it whole; the cap on
    // the decompressed stream stops it first.
    let name = vec![b'a'; 8 * 1024 * 1024];
    let tar = RawTar::new()
        .entry(b"././@LongLink", EntryType::GNULongName, b"", &name)
        .file("x", b"")
        .finish();
    let (err, _sandbox) = refuse(gzip(&tar));
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
}

#[test]
fn too_many_entries_are_refused() {
    let mut tar = RawTar::new();
    for i in 0..11 {
        tar = tar.file(&format!("f{i}"), b"");
    }
    let (err, _sandbox) = refuse(tar.finish());
    assert_eq!(
        err.to_string(),
        "agent archive has more than 10 entries (at entry `f10`)"
    );
}

#[test]
fn truncated_corrupt_and_empty_archives_are_refused() {
    let whole = RawTar::new().file("a", &[b'x'; 2000]).finish();
    let (err, _) = refuse(whole[..1500].to_vec());
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    let (err, _) = refuse(b"this is not a tar archive at all".repeat(40));
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    let (err, _) = refuse(RawTar::new().finish());
    assert_eq!(err.to_string(), "agent archive is empty");
    let (err, _) = refuse(RawTar::new().dir("d").finish());
    assert!(matches!(err, ArchiveError::Empty), "{err}");
}

#[test]
fn concurrent_loads_of_one_archive_share_one_module() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let tar = gzip(
        &RawTar::new()
            .file("magi-agent.json", MANIFEST)
            .file("big", &vec![b'y'; 256 * 1024])
            .finish(),
    );
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| cache.unpack(&AgentSource::Bytes(tar.clone())).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dir = &results[0].dir;
    assert!(results.iter().all(|r| &r.dir == dir));
    assert_eq!(fs::read(dir.join("big")).unwrap().len(), 256 * 1024);
    let names: Vec<_> = fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != LOCKS_DIR)
        .collect();
    assert_eq!(
        names,
        [results[0].sha256.clone()],
        "temporary directories left"
    );
}

#[tokio::test]
async fn unpack_async_runs_off_the_runtime() {
    let sandbox = Sandbox::new();
    let tar = RawTar::new().file("magi-agent.json", MANIFEST).finish();
    let m = sandbox
        .cache()
        .unpack_async(AgentSource::Bytes(tar))
        .await
        .unwrap();
    assert!(m.dir.join("magi-agent.json").is_file());
}

#[test]
fn stale_temporary_directories_are_removed_and_modules_kept() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    assert_eq!(
        cache
            .remove_stale_temp_dirs(std::time::Duration::ZERO)
            .unwrap(),
        0
    );
    let tar = RawTar::new().file("magi-agent.json", MANIFEST).finish();
    let module = cache.unpack(&AgentSource::Bytes(tar)).unwrap();
    fs::create_dir_all(cache.root().join(".tmp-0123-99-0/half")).unwrap();
    let young = cache
        .remove_stale_temp_dirs(std::time::Duration::from_secs(3600))
        .unwrap();
    assert_eq!(young, 0);
    let removed = cache
        .remove_stale_temp_dirs(std::time::Duration::ZERO)
        .unwrap();
    assert_eq!(removed, 1);
    assert!(module.dir.join("magi-agent.json").is_file());
    assert!(!cache.root().join(".tmp-0123-99-0").exists());
}
