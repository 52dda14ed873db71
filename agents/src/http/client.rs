//! One HTTP GET, measured the way the original's `curl -w` line was: `time_total`,
//! `time_starttransfer` (first response byte), `size_download` (body bytes) and
//! `speed_download` (body bytes per second over the whole transfer).
//!
//! Each request opens its own connection, as each curl run did, optionally from a given
//! source address so that per-peer counters see the node's own address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::{MAX_HEAD, MAX_HEADERS};

/// Where to send a GET.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The server's name, for the `Host` header and the URL (`servernode`).
    pub host: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Path and query (`/getsize.py?length=1000`).
    pub path: String,
}

impl Target {
    /// The URL as curl's `url_effective` shows it.
    pub fn url(&self) -> String {
        if self.port == 80 {
            format!("http://{}{}", self.host, self.path)
        } else {
            format!("http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// The outcome of one GET; timings are filled in as far as the transfer got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetch {
    /// The response status (0 if none arrived).
    pub http_code: u16,
    /// Seconds from start to the end (success, failure or timeout).
    pub time_total: f64,
    /// Seconds from start to the first response byte (0 if none arrived).
    pub time_starttransfer: f64,
    /// Body bytes received.
    pub size_download: u64,
    /// What went wrong, if anything (curl's stderr line).
    pub error: Option<String>,
}

impl Fetch {
    /// Body bytes per second over `time_total`, as curl's `speed_download`.
    pub fn speed_download(&self) -> f64 {
        if self.time_total > 0.0 {
            self.size_download as f64 / self.time_total
        } else {
            0.0
        }
    }
}

/// Performs one GET of `target`, from `source` if given (same address family), giving up
/// after `timeout`.
pub async fn get(target: &Target, source: Option<IpAddr>, timeout: Duration) -> Fetch {
    let start = Instant::now();
    let mut fetch = Fetch::default();
    let outcome = tokio::time::timeout(timeout, transfer(target, source, start, &mut fetch)).await;
    fetch.time_total = start.elapsed().as_secs_f64();
    fetch.error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!(
            "operation timed out after {} ms with {} bytes received",
            timeout.as_millis(),
            fetch.size_download
        )),
    };
    fetch
}

async fn transfer(
    target: &Target,
    source: Option<IpAddr>,
    start: Instant,
    fetch: &mut Fetch,
) -> Result<(), String> {
    let addr = SocketAddr::new(target.ip, target.port);
    let socket = match target.ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    if let Some(src) = source.filter(|s| s.is_ipv4() == target.ip.is_ipv4()) {
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("cannot send from {src}: {e}"))?;
    }
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("failed to connect to {} ({addr}): {e}", target.host))?;
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: magi-http-client\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        target.path, target.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("failed to send the request: {e}"))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new();
    // Read and parse the head; whatever follows it in the buffer is body.
    let (framing, leftover) = loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("failed to receive: {e}"))?;
        if n == 0 {
            return Err("empty reply from server".to_string());
        }
        if fetch.time_starttransfer == 0.0 {
            fetch.time_starttransfer = start.elapsed().as_secs_f64();
        }
        head.extend_from_slice(&buf[..n]);
        match parse_response(&head)? {
            Some((code, framing, len)) if (100..200).contains(&code) => {
                // An interim response (100 Continue): drop it and parse what follows.
                let _ = framing;
                head.drain(..len);
                if let Some((code, framing, len)) = parse_response(&head)? {
                    fetch.http_code = code;
                    break (framing, head.split_off(len));
                }
            }
            Some((code, framing, len)) => {
                fetch.http_code = code;
                break (framing, head.split_off(len));
            }
            None if head.len() >= MAX_HEAD => {
                return Err("response head too large".to_string());
            }
            None => {}
        }
    };
    let no_body = matches!(fetch.http_code, 204 | 304);
    match framing {
        _ if no_body => Ok(()),
        Framing::Length(total) => {
            let mut got = leftover.len().min(total as usize) as u64;
            fetch.size_download = got;
            while got < total {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("failed to receive: {e}"))?;
                if n == 0 {
                    return Err(format!(
                        "transfer closed with {} bytes remaining to read",
                        total - got
                    ));
                }
                got += (n as u64).min(total - got);
                fetch.size_download = got;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            fetch.size_download += decoder.feed(&leftover)?;
            while !decoder.done() {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("failed to receive: {e}"))?;
                if n == 0 {
                    return Err("transfer closed in the middle of a chunked body".to_string());
                }
                fetch.size_download += decoder.feed(&buf[..n])?;
            }
            Ok(())
        }
        Framing::Close => {
            fetch.size_download = leftover.len() as u64;
            loop {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("failed to receive: {e}"))?;
                if n == 0 {
                    return Ok(());
                }
                fetch.size_download += n as u64;
            }
        }
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// `Some((status, framing, head length))` once the head is complete.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let mut framing = Framing::Close;
            for h in resp.headers.iter() {
                let value = String::from_utf8_lossy(h.value);
                if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    framing = Framing::Chunked;
                } else if h.name.eq_ignore_ascii_case("content-length")
                    && framing != Framing::Chunked
                {
                    let n = value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| format!("bad Content-Length '{value}'"))?;
                    framing = Framing::Length(n);
                }
            }
            Ok(Some((resp.code.unwrap_or(0), framing, len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad response from server: {e}")),
    }
}

/// A chunked-body decoder that only counts data bytes.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, PartialEq)]
enum ChunkState {
    /// Reading a size line.
    #[default]
    Size,
    /// This many data bytes are left in the chunk.
    Data(u64),
    /// Reading the CRLF after a chunk's data.
    DataEnd,
    /// Reading trailers after the last chunk, until an empty line.
    Trailer,
    Done,
}

impl Chunked {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes `data`; returns how many body bytes it held.
    fn feed(&mut self, mut data: &[u8]) -> Result<u64, String> {
        let mut body = 0;
        while !data.is_empty() && !self.done() {
            match self.state {
                ChunkState::Data(left) => {
                    let n = (data.len() as u64).min(left);
                    body += n;
                    data = &data[n as usize..];
                    self.state = if left == n {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let Some(i) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > 4096 {
                            return Err("chunk header line too long".to_string());
                        }
                        return Ok(body);
                    };
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let line = String::from_utf8_lossy(&self.line).trim().to_string();
                    self.line.clear();
                    self.state = match self.state {
                        ChunkState::DataEnd => ChunkState::Size,
                        ChunkState::Trailer if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailer => ChunkState::Trailer,
                        _ => {
                            let hex = line.split(';').next().unwrap_or("").trim();
                            match u64::from_str_radix(hex, 16) {
                                Ok(0) => ChunkState::Trailer,
                                Ok(n) => ChunkState::Data(n),
                                Err(_) => return Err(format!("bad chunk size '{hex}'")),
                            }
                        }
                    };
                }
                ChunkState::Done => {}
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_count_only_data_bytes_in_any_split() {
        let body = b"5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Chunked::default();
            let n = d.feed(&body[..split]).unwrap() + d.feed(&body[split..]).unwrap();
            assert_eq!(n, 15, "split at {split}");
            assert!(d.done());
        }
        assert!(Chunked::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn response_framing_follows_the_headers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody").unwrap();
        assert_eq!(r, Some((200, Framing::Length(12), 39)));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.map(|x| x.1), Some(Framing::Chunked));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!(r.map(|x| x.1), Some(Framing::Close));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn urls_read_like_curls_url_effective() {
        let mut t = Target {
            host: "servernode".into(),
            ip: "127.0.1.2".parse().unwrap(),
            port: 80,
            path: "/getsize.py?length=5".into(),
        };
        assert_eq!(t.url(), "http://servernode/getsize.py?length=5");
        t.port = 8080;
        assert_eq!(t.url(), "http://servernode:8080/getsize.py?length=5");
    }
}
