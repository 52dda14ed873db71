//! One HTTP GET, measured the way the original's `curl -w` line was: `time_total`,
//! `time_starttransfer` (first response byte), `size_download` (body bytes) and
//! `speed_download` (body bytes per second over the whole transfer).
//!
//! Each request opens its own connection, as each curl run did, optionally from a given
//! source address so that per-peer counters see the node's own address.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper::body::Body as _;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use super::io::Watched;
use super::MAX_HEAD;

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
    let first_byte = Arc::new(OnceLock::new());
    let mut fetch = Fetch::default();
    let outcome = tokio::time::timeout(
        timeout,
        transfer(target, source, first_byte.clone(), &mut fetch),
    )
    .await;
    fetch.time_total = start.elapsed().as_secs_f64();
    if let Some(at) = first_byte.get() {
        fetch.time_starttransfer = at.saturating_duration_since(start).as_secs_f64();
    }
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
    first_byte: Arc<OnceLock<Instant>>,
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
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("failed to connect to {} ({addr}): {e}", target.host))?;
    let _ = stream.set_nodelay(true);
    let request = Request::get(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .header(header::USER_AGENT, "magi-http-client")
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(String::new())
        .map_err(|e| format!("cannot ask for '{}': {e}", target.path))?;
    let seen = first_byte.clone();
    let io = TokioIo::new(Watched::new(stream).first_byte(first_byte));
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .handshake(io)
        .await
        .map_err(|e| format!("failed to send the request: {e}"))?;
    // The connection is driven beside the exchange; when it ends first (the server
    // closed), the exchange still finishes with what arrived.
    let exchange = exchange(&mut sender, request, &seen, fetch);
    tokio::pin!(exchange);
    tokio::select! {
        outcome = &mut exchange => outcome,
        _ = connection => exchange.await,
    }
}

/// Whether a body error is the server closing before the body's end.
fn closed_early(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// Sends the request and counts the response's body bytes as they arrive.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<String>,
    request: Request<String>,
    first_byte: &OnceLock<Instant>,
    fetch: &mut Fetch,
) -> Result<(), String> {
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_incomplete_message() && first_byte.get().is_none() {
            "empty reply from server".to_string()
        } else if e.is_parse_too_large() {
            "response head too large".to_string()
        } else if e.is_parse() {
            format!("bad response from server: {e}")
        } else {
            format!("failed to receive: {e}")
        }
    })?;
    fetch.http_code = response.status().as_u16();
    let headers = response.headers();
    let expected = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = response.into_body();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    fetch.size_download += data.len() as u64;
                }
            }
            Err(e) if closed_early(&e) => {
                return Err(match expected {
                    _ if chunked => "transfer closed in the middle of a chunked body".to_string(),
                    Some(total) => format!(
                        "transfer closed with {} bytes remaining to read",
                        total.saturating_sub(fetch.size_download)
                    ),
                    None => format!("failed to receive: {e}"),
                })
            }
            Err(e) if e.is_parse() => return Err(format!("bad response from server: {e}")),
            Err(e) => return Err(format!("failed to receive: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers one connection with `reply` (after reading the request head), then closes.
    async fn one_reply(reply: &'static [u8]) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let _ = s.write_all(reply).await;
        });
        Target {
            host: "servernode".into(),
            ip: "127.0.0.1".parse().unwrap(),
            port,
            path: "/getsize.py?length=5".into(),
        }
    }

    async fn fetch(reply: &'static [u8]) -> Fetch {
        get(&one_reply(reply).await, None, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn bodies_count_only_data_bytes_whatever_their_framing() {
        let f = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!((f.http_code, f.size_download, f.error), (200, 5, None));
        let f = fetch(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n").await;
        assert_eq!((f.size_download, f.error), (15, None));
        let f = fetch(b"HTTP/1.0 200 OK\r\n\r\nread to the close").await;
        assert_eq!((f.size_download, f.error), (17, None));
        let f = fetch(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!((f.http_code, f.size_download, f.error), (204, 0, None));
        assert!(f.time_starttransfer > 0.0 && f.time_starttransfer <= f.time_total);
    }

    #[tokio::test]
    async fn broken_replies_say_what_broke_like_curl() {
        let f = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody").await;
        assert_eq!(f.size_download, 4);
        assert_eq!(
            f.error.as_deref(),
            Some("transfer closed with 8 bytes remaining to read")
        );
        let f = fetch(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").await;
        assert_eq!(
            f.error.as_deref(),
            Some("transfer closed in the middle of a chunked body")
        );
        let f = fetch(b"").await;
        assert_eq!(f.error.as_deref(), Some("empty reply from server"));
        assert_eq!(f.time_starttransfer, 0.0);
        let f = fetch(b"garbage\r\n\r\n").await;
        assert!(
            f.error
                .as_deref()
                .unwrap()
                .starts_with("bad response from server"),
            "{f:?}"
        );
        let f = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").await;
        assert!(f.error.is_some(), "{f:?}");
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
