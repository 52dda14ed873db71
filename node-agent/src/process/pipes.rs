//! Reading and writing an agent's pipes: protocol lines in and out (bounded), stderr to
//! its log and a tail kept for error messages.

use super::*;

/// Writes protocol lines to the agent's stdin until the handle is dropped or the pipe breaks.
pub(super) async fn write_lines(mut stdin: ChildStdin, mut lines: mpsc::UnboundedReceiver<String>) {
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: an agent reading EOF stops, as if told to.
}

/// Outcome of reading one bounded line.
enum LineRead {
    Eof,
    Line,
    /// A line longer than the limit; the buffer holds its start. The total length is given.
    TooLong(usize),
}

/// Reads one `\n`-terminated line into `buf` (without the newline), keeping at most `max`
/// bytes: the rest of an overlong line is read and dropped, so memory stays bounded.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut total = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match total {
                0 => LineRead::Eof,
                n if n > max => LineRead::TooLong(n),
                _ => LineRead::Line,
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        total = total.saturating_add(chunk.len());
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if total > max {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

/// Quotes at most [`GARBAGE_QUOTE`] bytes of a line.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= GARBAGE_QUOTE {
        return text.into_owned();
    }
    let mut end = GARBAGE_QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Reads the agent's stdout, turning protocol lines into events.
pub(super) async fn read_protocol(
    stdout: ChildStdout,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<AgentEvent>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut ready = Some(ready);
    let mut buf = Vec::new();
    loop {
        let event = match read_bounded_line(&mut reader, &mut buf, MAX_LINE).await {
            Ok(LineRead::Eof) | Err(_) => break,
            Ok(LineRead::TooLong(total)) => AgentEvent::Garbage {
                line: format!(
                    "{} ({total} bytes, over the {MAX_LINE}-byte line limit)",
                    quote(&buf)
                ),
            },
            Ok(LineRead::Line) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<FromAgent>(&buf) {
                    Err(_) => AgentEvent::Garbage { line: quote(&buf) },
                    Ok(FromAgent::Ready) => match ready.take() {
                        Some(tx) => {
                            let _ = tx.send(Ok(()));
                            continue;
                        }
                        None => AgentEvent::Garbage { line: quote(&buf) },
                    },
                    Ok(FromAgent::Error { id: None, error }) if ready.is_some() => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(error));
                        }
                        continue;
                    }
                    Ok(FromAgent::Return { id, value }) => {
                        if lock(&shared.state).pending.remove(&id) {
                            AgentEvent::Returned { id, value }
                        } else {
                            // An answer to no pending call: a protocol violation.
                            AgentEvent::Garbage { line: quote(&buf) }
                        }
                    }
                    Ok(FromAgent::Error {
                        id: Some(id),
                        error,
                    }) => {
                        if lock(&shared.state).pending.remove(&id) {
                            AgentEvent::Failed {
                                id: Some(id),
                                error,
                            }
                        } else {
                            AgentEvent::Garbage { line: quote(&buf) }
                        }
                    }
                    Ok(FromAgent::Error { id: None, error }) => {
                        AgentEvent::Failed { id: None, error }
                    }
                    Ok(FromAgent::Trigger { event, args }) => AgentEvent::Trigger { event, args },
                    Ok(FromAgent::Record { data }) => AgentEvent::Record { data },
                    Ok(FromAgent::Log { level, message }) => AgentEvent::Log { level, message },
                    Ok(FromAgent::File { path, name }) => AgentEvent::File { path, name },
                }
            }
        };
        // The receiver may be gone (nobody listens any more); keep draining regardless,
        // so that the agent never blocks on a full pipe.
        let _ = events.send(event);
    }
}

/// Reads the agent's stderr: keeps its tail, and appends it to a log file or to `tracing`.
pub(super) async fn read_stderr(stderr: ChildStderr, shared: Arc<Shared>, log: Option<PathBuf>) {
    let mut file = match &log {
        Some(path) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(agent = %shared.name, log = %path.display(), "cannot open the agent's stderr log: {e}");
                None
            }
        },
        None => None,
    };
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut buf, MAX_STDERR_LINE).await {
            Ok(LineRead::Eof) | Err(_) => break,
            Ok(LineRead::Line) | Ok(LineRead::TooLong(_)) => {}
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        if let Some(f) = file.as_mut() {
            let mut bytes = buf.clone();
            bytes.push(b'\n');
            if f.write_all(&bytes).await.is_err() {
                file = None;
            }
        } else {
            tracing::debug!(agent = %shared.name, "stderr: {line}");
        }
        let mut tail = lock(&shared.stderr_tail);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    if let Some(mut f) = file {
        let _ = f.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(String, Option<usize>)> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_bounded_line(&mut reader, &mut buf, max).await.unwrap() {
                LineRead::Eof => return out,
                LineRead::Line => out.push((String::from_utf8_lossy(&buf).into_owned(), None)),
                LineRead::TooLong(n) => {
                    out.push((String::from_utf8_lossy(&buf).into_owned(), Some(n)))
                }
            }
        }
    }

    #[tokio::test]
    async fn overlong_lines_are_cut_and_the_next_line_is_intact() {
        let got = lines(b"short\n0123456789abcdef\nnext\nlast", 8).await;
        assert_eq!(
            got,
            [
                ("short".to_string(), None),
                ("01234567".to_string(), Some(16)),
                ("next".to_string(), None),
                ("last".to_string(), None),
            ]
        );
    }

    #[test]
    fn exits_describe_themselves() {
        let mut exit = AgentExit {
            code: Some(3),
            signal: None,
            stderr_tail: vec![],
            pending: vec![],
            stopped: false,
        };
        assert_eq!(exit.to_string(), "exited with code 3");
        exit.code = None;
        exit.signal = Some(libc::SIGKILL);
        assert_eq!(exit.to_string(), "was killed by signal 9 (SIGKILL)");
    }
}
