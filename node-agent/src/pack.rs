//! Packing an agent module into the bytes shipped with `loadAgent`, so that nodes need no
//! shared filesystem.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// An agent archive ready to ship: its bytes and their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// A tar or tar.gz archive.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex (the node's cache key).
    pub sha256: String,
}

/// Reads an archive file as is, or packs a directory into a deterministic tar (sorted
/// entries, zero times and owners), so the same module always has the same hash.
pub fn pack(path: &Path) -> io::Result<Packed> {
    let bytes = if path.is_dir() {
        tar_dir(path)?
    } else {
        std::fs::read(path)?
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(Packed { bytes, sha256 })
}

fn tar_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    for rel in files {
        let full = dir.join(&rel);
        let data = std::fs::read(&full)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&full)?.permissions().mode() & 0o777
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, &rel, data.as_slice())?;
    }
    builder.into_inner()
}

/// Regular files under `dir`, relative; links and special files are skipped (the node
/// would refuse them anyway).
fn collect(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = rel.join(entry.file_name());
        if kind.is_dir() {
            collect(root, &name, out)?;
        } else if kind.is_file() {
            out.push(name);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
