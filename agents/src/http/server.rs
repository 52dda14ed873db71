//! The HTTP/1.1 server: accepts connections and answers requests with [`content::route`],
//! keeping connections alive like the original's apache configuration (KeepAlive On,
//! MaxKeepAliveRequests 100, KeepAliveTimeout 30). hyper reads the requests and writes the
//! responses; this file decides what each response says.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::content::{self, Body, Response};
use super::io::Watched;
use super::MAX_HEAD;
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

async fn connection(stream: TcpStream, peer: IpAddr, hosts: Arc<Hosts>, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let served = AtomicU64::new(0);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let nth = served.fetch_add(1, Ordering::Relaxed) + 1;
        let response = answer(&request, nth, peer, &hosts, &stats);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let io = TokioIo::new(Watched::new(stream).write_limit(WRITE_TIMEOUT));
    // No `Date` header: the responses are byte for byte those of the hand-written server
    // this replaced, so the traffic counted on a link is unchanged.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .title_case_headers(true)
        .auto_date_header(false)
        .serve_connection(io, service)
        .await;
}

/// Whether the client asks to keep the connection (HTTP/1.1 unless `close`; HTTP/1.0 only
/// with `keep-alive`).
fn wants_keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(",");
    if connection.contains("close") {
        false
    } else {
        connection.contains("keep-alive") || version >= Version::HTTP_11
    }
}

/// The response to the `nth` request of a connection.
fn answer(
    request: &Request<Incoming>,
    nth: u64,
    peer: IpAddr,
    hosts: &Hosts,
    stats: &Arc<Stats>,
) -> hyper::Response<Streamed> {
    let headers = request.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // A chunked request body is not read: the connection ends after the response.
    let mut keep_alive = wants_keep_alive(request.version(), headers)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && nth < MAX_REQUESTS_PER_CONNECTION;
    let response = if length > MAX_REQUEST_BODY {
        keep_alive = false;
        Response::error(413, "request body too large")
    } else {
        content::route(
            request.method().as_str(),
            &request.uri().to_string(),
            peer,
            hosts,
        )
    };
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let head_only = request.method() == Method::HEAD;
    let length = response.body.len();
    let mut out = hyper::Response::new(Streamed {
        length,
        body: response.body,
        offset: 0,
        stats: stats.clone(),
        head_only,
    });
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static("magi-http-server"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static(if keep_alive { "keep-alive" } else { "close" }),
    );
    out
}

/// A response body sent piece by piece (at most 100 kB each, without copying the shared
/// blocks), counting the bytes sent.
pub struct Streamed {
    body: Body,
    length: u64,
    offset: u64,
    stats: Arc<Stats>,
    head_only: bool,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.head_only {
            return Poll::Ready(None);
        }
        let piece = this.body.piece(this.offset);
        if piece.is_empty() {
            return Poll::Ready(None);
        }
        this.offset += piece.len() as u64;
        this.stats
            .bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.head_only || self.offset >= self.length
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.head_only {
            0
        } else {
            self.length - self.offset
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keep_alive_follows_the_rules_of_http_1_0_and_1_1() {
        let none = HeaderMap::new();
        assert!(wants_keep_alive(Version::HTTP_11, &none));
        assert!(!wants_keep_alive(Version::HTTP_10, &none));
        assert!(wants_keep_alive(
            Version::HTTP_10,
            &connection("Keep-Alive")
        ));
        assert!(!wants_keep_alive(Version::HTTP_11, &connection("close")));
        assert!(!wants_keep_alive(
            Version::HTTP_11,
            &connection("keep-alive, Close")
        ));
    }
}
