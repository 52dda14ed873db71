//! The HTTP/1.1 server: accepts connections and answers requests with [`content::route`],
//! keeping connections alive like the original's apache configuration (KeepAlive On,
//! MaxKeepAliveRequests 100, KeepAliveTimeout 30).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::content::{self, Response};
use super::{MAX_HEAD, MAX_HEADERS};
use crate::hosts::Hosts;

/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: u64 = 100;
/// How long an idle connection (or a slow head) is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write may stall before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request body the server reads (and discards).
pub const MAX_REQUEST_BODY: u64 = 1 << 20;

/// Counters of what the server did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Body bytes sent.
    pub bytes: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// Binds a listening socket on `addr` (address reuse on, so a restart does not wait for
/// TIME_WAIT; port reuse on, so servers of several runs on one node share the port).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves until the returned future is dropped (which also drops every connection).
pub async fn serve(listener: TcpListener, hosts: Arc<Hosts>, stats: Arc<Stats>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(connection(stream, peer.ip(), hosts.clone(), stats.clone()));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct Head {
    method: String,
    target: String,
    keep_alive: bool,
    content_length: u64,
    chunked: bool,
}

enum Parsed {
    Complete(Head, usize),
    Partial,
    Bad(Response),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let version = req.version.unwrap_or(1);
            let mut keep_alive = version >= 1;
            let mut content_length = 0;
            let mut chunked = false;
            for h in req.headers.iter() {
                let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if h.name.eq_ignore_ascii_case("connection") {
                    if value.contains("close") {
                        keep_alive = false;
                    } else if value.contains("keep-alive") {
                        keep_alive = true;
                    }
                } else if h.name.eq_ignore_ascii_case("content-length") {
                    match value.trim().parse::<u64>() {
                        Ok(n) => content_length = n,
                        Err(_) => return Parsed::Bad(Response::error(400, "bad Content-Length")),
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = true;
                }
            }
            Parsed::Complete(
                Head {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    keep_alive,
                    content_length,
                    chunked,
                },
                len,
            )
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            Parsed::Bad(Response::error(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Bad(Response::error(431, "too many request headers"))
        }
        Err(e) => Parsed::Bad(Response::error(400, &format!("bad request: {e}"))),
    }
}

async fn connection(mut stream: TcpStream, peer: IpAddr, hosts: Arc<Hosts>, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut served = 0u64;
    loop {
        // Read until a whole head is buffered.
        let (head, head_len) = loop {
            if !buf.is_empty() {
                match parse_head(&buf) {
                    Parsed::Complete(head, len) => break (head, len),
                    Parsed::Partial => {}
                    Parsed::Bad(response) => {
                        let _ = respond(&mut stream, "GET", &response, false, &stats).await;
                        return;
                    }
                }
            }
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return, // closed, failed or idle
            }
        };
        buf.drain(..head_len);

        // Discard a request body; a chunked or oversized one ends the connection after
        // the response, since this server does not read it.
        let mut keep_alive = head.keep_alive && !head.chunked;
        if head.content_length > MAX_REQUEST_BODY {
            let r = Response::error(413, "request body too large");
            let _ = respond(&mut stream, &head.method, &r, false, &stats).await;
            return;
        }
        let mut body_left = head.content_length;
        let from_buf = body_left.min(buf.len() as u64) as usize;
        buf.drain(..from_buf);
        body_left -= from_buf as u64;
        while body_left > 0 {
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => {
                    let used = (n as u64).min(body_left) as usize;
                    body_left -= used as u64;
                    buf.extend_from_slice(&chunk[used..n]);
                }
                _ => return,
            }
        }

        let response = content::route(&head.method, &head.target, peer, &hosts);
        served += 1;
        if served >= MAX_REQUESTS_PER_CONNECTION {
            keep_alive = false;
        }
        if respond(&mut stream, &head.method, &response, keep_alive, &stats)
            .await
            .is_err()
            || !keep_alive
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    method: &str,
    response: &Response,
    keep_alive: bool,
    stats: &Stats,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nServer: magi-http-server\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nConnection: {}\r\n\r\n",
        response.status,
        response.reason(),
        response.content_type,
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    write(stream, head.as_bytes()).await?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if method == "HEAD" {
        return Ok(());
    }
    let mut offset = 0u64;
    loop {
        let piece = response.body.piece(offset);
        if piece.is_empty() {
            return Ok(());
        }
        write(stream, piece).await?;
        offset += piece.len() as u64;
        stats.bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write stalled",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_keep_alive_rules_of_http_1_0_and_1_1() {
        let Parsed::Complete(h, len) = parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nrest") else {
            panic!("not complete")
        };
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.keep_alive, len),
            ("GET", "/x", true, 28)
        );
        let Parsed::Complete(h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!h.keep_alive);
        let Parsed::Complete(h, _) =
            parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(h.keep_alive);
        let Parsed::Complete(h, _) = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!h.keep_alive);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHo"),
            Parsed::Partial
        ));
        assert!(matches!(parse_head(b"\x01\x02 junk\r\n\r\n"), Parsed::Bad(r) if r.status == 400));
        let big = vec![b'a'; MAX_HEAD + 1];
        let mut req = b"GET /".to_vec();
        req.extend_from_slice(&big);
        assert!(matches!(parse_head(&req), Parsed::Bad(r) if r.status == 431));
    }
}
