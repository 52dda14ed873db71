//! The socket under hyper, watched: when the first byte arrived (curl's
//! `time_starttransfer`, for the client) and how long a write may stall (for the server,
//! whose peer may stop reading). hyper itself has neither.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A stream that notes its first received byte and fails a write stalled past a limit.
pub struct Watched<S> {
    inner: S,
    first_byte: Option<Arc<OnceLock<Instant>>>,
    write_limit: Option<Duration>,
    stall: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    /// Wraps `inner`, watching nothing yet.
    pub fn new(inner: S) -> Self {
        Watched {
            inner,
            first_byte: None,
            write_limit: None,
            stall: None,
        }
    }

    /// Sets `at` to the time the first byte is read.
    pub fn first_byte(mut self, at: Arc<OnceLock<Instant>>) -> Self {
        self.first_byte = Some(at);
        self
    }

    /// Fails a write (or flush) that makes no progress for `limit`.
    pub fn write_limit(mut self, limit: Duration) -> Self {
        self.write_limit = Some(limit);
        self
    }

    /// After a write attempt: progress clears the stall clock; no progress starts it (or
    /// checks it).
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stall = None;
            return r;
        }
        let Some(limit) = self.write_limit else {
            return r;
        };
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write stalled",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(at)) = (&r, &this.first_byte) {
            if buf.filled().len() > before && at.get().is_none() {
                let _ = at.set(Instant::now());
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.watch_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_first_byte_is_timed_once() {
        let (a, mut b) = tokio::io::duplex(64);
        let at = Arc::new(OnceLock::new());
        let mut w = Watched::new(a).first_byte(at.clone());
        b.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        w.read_exact(&mut buf).await.unwrap();
        let first = *at.get().expect("timed");
        b.write_all(b"y").await.unwrap();
        w.read_exact(&mut buf).await.unwrap();
        assert_eq!(at.get(), Some(&first));
    }

    #[tokio::test]
    async fn a_write_stalled_past_its_limit_fails() {
        // Nobody reads the other end: the 8-byte pipe fills and the write stalls.
        let (a, _b) = tokio::io::duplex(8);
        let mut w = Watched::new(a).write_limit(Duration::from_millis(100));
        let t = Instant::now();
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}
