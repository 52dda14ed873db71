//! A file an agent hands back (`{"kind":"file","path":...}`): read here and sent to the
//! run's orchestrator in chunks ([`magi_proto::file`]), which writes it into the run record.
//!
//! The node agent may run as root while the agent does not: it reads only a regular file
//! that the agent's own user owns (opened without following a last symbolic link, checked
//! on the open file), so an agent cannot make it send `/etc/shadow`.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use magi_bus::NodePort;
use magi_proto::file::{is_file_name, FileChunk, CHUNK_BYTES, MAX_FILE_BYTES};
use magi_proto::Record;

use super::{exception, Node};

impl Node {
    /// Sends `path` to the run in chunks, off the dispatcher; a refusal or a failure is
    /// reported to the run as a warning (`RuntimeException` of type `MagiWarning`).
    pub(super) fn hand_back_file(&self, run: &str, agent: &str, path: &str, name: Option<String>) {
        let owner = self.config.sandbox.as_ref().map(|s| s.user.uid);
        let port = self.port.clone();
        let (run, agent, node, path) = (
            run.to_string(),
            agent.to_string(),
            self.config.name.clone(),
            path.to_string(),
        );
        tokio::spawn(async move {
            let name = name.unwrap_or_else(|| {
                Path::new(&path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let result = send_file(&port, &run, &agent, &node, &path, &name, owner).await;
            if let Err(e) = result {
                let error = format!("file {path} not fetched into the run record: {e}");
                tracing::warn!(node, run, agent, "{error}");
                let t = exception(&run, &node, &agent, "file", &error, Some("MagiWarning"));
                let _ = port.send_trigger(t).await;
            }
        });
    }
}

async fn send_file(
    port: &Arc<dyn NodePort>,
    run: &str,
    agent: &str,
    node: &str,
    path: &str,
    name: &str,
    owner: Option<u32>,
) -> Result<(), String> {
    if !is_file_name(name) {
        return Err(format!("{name:?} is not a plain file name"));
    }
    let path_owned = path.to_string();
    let bytes = tokio::task::spawn_blocking(move || read_owned(&path_owned, owner))
        .await
        .map_err(|e| e.to_string())??;
    let size = bytes.len() as u64;
    let b64 = base64::engine::general_purpose::STANDARD;
    // An empty file is one empty chunk, so that it exists in the record too.
    let chunks: Vec<&[u8]> = match bytes.is_empty() {
        true => vec![&[][..]],
        false => bytes.chunks(CHUNK_BYTES).collect(),
    };
    let mut offset = 0u64;
    for chunk in chunks {
        let data = FileChunk {
            name: name.to_string(),
            offset,
            size,
            data: b64.encode(chunk),
        }
        .to_record();
        let record = Record {
            run: run.to_string(),
            agent: agent.to_string(),
            host: node.to_string(),
            created: magi_proto::epoch_now(),
            data,
        };
        port.send_record(record).await.map_err(|e| e.to_string())?;
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// Reads a regular file, owned by `owner` when given, of at most [`MAX_FILE_BYTES`].
fn read_owned(path: &str, owner: Option<u32>) -> Result<Vec<u8>, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if let Some(uid) = owner {
        if meta.uid() != uid {
            return Err(format!(
                "it belongs to uid {}, not to the agent's user (uid {uid})",
                meta.uid()
            ));
        }
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "it is {} bytes, more than the {MAX_FILE_BYTES} allowed",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref()
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it grew past the {MAX_FILE_BYTES} bytes allowed"));
    }
    Ok(bytes)
}
