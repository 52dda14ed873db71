//! Files an agent hands back (a packet capture, a log it wrote): the node agent reads the
//! file and sends it to the run's orchestrator in chunks, as records marked with
//! [`FILE_KEY`], which the orchestrator writes into the run record
//! (`files/<node>/<agent>/<name>`) instead of the data store. Records already travel
//! checked (the broker-proven sender must be the node they name), so files need no path of
//! their own on the bus.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Object;

/// The record field that marks a file chunk.
pub const FILE_KEY: &str = "magiFile";

/// Bytes of file per chunk (before base64): well under the bus's message limit.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// Largest file an agent may hand back.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One chunk of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileChunk {
    /// The file's name in the run record (one path component).
    pub name: String,
    /// Where this chunk starts.
    pub offset: u64,
    /// The whole file's size.
    pub size: u64,
    /// The bytes, base64.
    pub data: String,
}

impl FileChunk {
    /// The record fields carrying this chunk.
    pub fn to_record(&self) -> Object {
        let mut o = Object::new();
        o.insert(
            FILE_KEY.into(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        o
    }

    /// The chunk a record carries, if it is one (`Some(Err)`: marked, but malformed).
    pub fn from_record(data: &Object) -> Option<Result<FileChunk, String>> {
        let v = data.get(FILE_KEY)?;
        Some(
            serde_json::from_value::<FileChunk>(v.clone())
                .map_err(|e| format!("a malformed file chunk: {e}"))
                .and_then(FileChunk::checked),
        )
    }

    fn checked(self) -> Result<FileChunk, String> {
        if !is_file_name(&self.name) {
            return Err(format!("{:?} is not a plain file name", self.name));
        }
        if self.size > MAX_FILE_BYTES {
            return Err(format!(
                "file {} is {} bytes, more than the {} allowed",
                self.name, self.size, MAX_FILE_BYTES
            ));
        }
        if self.offset > self.size {
            return Err(format!("a chunk of {} starts past its end", self.name));
        }
        Ok(self)
    }
}

/// Whether `name` is one plain path component: not empty, not `.`/`..`, no leading dot, no
/// separator or control character, at most 200 bytes.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_survives_a_record_and_hostile_names_and_sizes_are_refused() {
        let c = FileChunk {
            name: "capture.pcap".into(),
            offset: 0,
            size: 3,
            data: "AAAA".into(),
        };
        assert_eq!(FileChunk::from_record(&c.to_record()), Some(Ok(c.clone())));
        for name in ["../x", "a/b", ".hidden", "", "a\nb"] {
            let bad = FileChunk {
                name: name.into(),
                ..c.clone()
            };
            assert!(
                FileChunk::from_record(&bad.to_record()).unwrap().is_err(),
                "{name:?}"
            );
        }
        let huge = FileChunk {
            size: MAX_FILE_BYTES + 1,
            ..c.clone()
        };
        assert!(FileChunk::from_record(&huge.to_record()).unwrap().is_err());
        let past = FileChunk { offset: 4, ..c };
        assert!(FileChunk::from_record(&past.to_record()).unwrap().is_err());
        assert_eq!(FileChunk::from_record(&Object::new()), None);
    }
}
