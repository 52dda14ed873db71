//! A background writer: one thread owns the store and batches records into transactions.
//!
//! Sending never blocks, so the orchestrator's async run loop can hand records over as
//! they arrive; the thread commits what has accumulated (up to [`MAX_BATCH`] records per
//! transaction). A failed batch is kept and retried on the next round; `flush` and
//! `close` report the error.
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use magi_proto::Record;

use crate::store::{Store, StoreError};

/// Most records committed in one transaction.
pub const MAX_BATCH: usize = 10_000;

/// Records kept in memory while the store keeps failing; past this the oldest are dropped
/// (and counted in [`WriterStats::dropped`]).
const MAX_PENDING: usize = 1_000_000;

enum Msg {
    Records(Vec<Record>),
    Flush(mpsc::Sender<Result<(), String>>),
}

/// What a writer did, returned by [`Writer::close`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records committed.
    pub stored: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Records given up on because the store failed for too long.
    pub dropped: u64,
}

/// A handle to the writer thread. Dropping it without `close` still stores what was sent.
pub struct Writer {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<(WriterStats, Option<String>)>>,
    target: String,
}

impl Writer {
    /// Starts the writer thread that owns `store`.
    pub fn spawn(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel();
        let target = store.describe();
        let thread = std::thread::Builder::new()
            .name("magi-data-writer".into())
            .spawn(move || run(store, rx))
            .ok();
        Writer {
            tx: Some(tx),
            thread,
            target,
        }
    }

    /// Opens the store at `target` on the writer's own thread and starts the writer;
    /// blocks until the store is open (or failed to open). The store lives and dies on
    /// that thread, so a PostgreSQL client never runs inside an async runtime; from async
    /// code, call this in `spawn_blocking`.
    pub fn open(target: &str) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let owned = target.to_string();
        let thread = std::thread::Builder::new()
            .name("magi-data-writer".into())
            .spawn(move || match Store::open(&owned) {
                Ok(store) => {
                    let _ = ready_tx.send(Ok(store.describe()));
                    run(store, rx)
                }
                Err(e) => {
                    let msg = e.to_string();
                    let _ = ready_tx.send(Err(e));
                    (WriterStats::default(), Some(msg))
                }
            })
            .map_err(|e| {
                StoreError::WriterClosed(format!(": cannot start the writer thread: {e}"))
            })?;
        match ready_rx.recv() {
            Ok(Ok(described)) => Ok(Writer {
                tx: Some(tx),
                thread: Some(thread),
                target: described,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(StoreError::WriterClosed(format!(
                " ({target}): the writer thread died"
            ))),
        }
    }

    /// Queues one record (never blocks).
    pub fn send(&self, record: Record) -> Result<(), StoreError> {
        self.send_batch(vec![record])
    }

    /// Queues records (never blocks).
    pub fn send_batch(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let closed = || StoreError::WriterClosed(format!(" ({})", self.target));
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(Msg::Records(records)).map_err(|_| closed())
    }

    /// Blocks until everything queued before is committed; returns the last store error
    /// if records are still waiting to be stored. From async code, call it in
    /// `spawn_blocking`.
    pub fn flush(&self) -> Result<(), StoreError> {
        let closed = || StoreError::WriterClosed(format!(" ({})", self.target));
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        let (rtx, rrx) = mpsc::channel();
        tx.send(Msg::Flush(rtx)).map_err(|_| closed())?;
        match rrx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::WriterClosed(format!(": {e}"))),
            Err(_) => Err(closed()),
        }
    }

    /// Stores everything queued, stops the thread and returns its figures (or the error
    /// that kept records from being stored).
    pub fn close(mut self) -> Result<WriterStats, StoreError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<WriterStats, StoreError> {
        drop(self.tx.take());
        let Some(thread) = self.thread.take() else {
            return Err(StoreError::WriterClosed(format!(
                " ({}): thread did not start",
                self.target
            )));
        };
        match thread.join() {
            Ok((stats, None)) => Ok(stats),
            Ok((stats, Some(e))) => Err(StoreError::WriterClosed(format!(
                ": {e} ({} stored, {} not stored)",
                stats.stored, stats.dropped
            ))),
            Err(_) => Err(StoreError::WriterClosed(format!(
                " ({}): thread panicked",
                self.target
            ))),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.finish() {
                tracing::error!("record writer: {e}");
            }
        }
    }
}

fn run(mut store: Store, rx: Receiver<Msg>) -> (WriterStats, Option<String>) {
    let mut stats = WriterStats::default();
    let mut pending: Vec<Record> = Vec::new();
    let mut last_error: Option<String> = None;
    let mut open = true;
    while open || !pending.is_empty() {
        let mut flushes = Vec::new();
        // Wait for work (or retry pending records after a pause), then drain what is queued.
        let first = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(200))
        };
        let mut take = |m: Msg, pending: &mut Vec<Record>| match m {
            Msg::Records(mut r) => pending.append(&mut r),
            Msg::Flush(reply) => flushes.push(reply),
        };
        match first {
            Ok(m) => take(m, &mut pending),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        while open && pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        while !pending.is_empty() {
            let n = pending.len().min(MAX_BATCH);
            match store.insert_batch(&pending[..n]) {
                Ok(()) => {
                    pending.drain(..n);
                    stats.stored += n as u64;
                    stats.batches += 1;
                    last_error = None;
                }
                Err(e) => {
                    tracing::warn!(
                        "record store {}: {e}; {} records kept for retry",
                        store.describe(),
                        pending.len()
                    );
                    last_error = Some(e.to_string());
                    if let Err(e) = store.reconnect() {
                        tracing::warn!(
                            "record store {}: reconnecting failed: {e}",
                            store.describe()
                        );
                    }
                    if pending.len() > MAX_PENDING {
                        let extra = pending.len() - MAX_PENDING;
                        pending.drain(..extra);
                        stats.dropped += extra as u64;
                    }
                    break;
                }
            }
        }
        if last_error.is_some() && !open {
            // Nobody will send more; one last try happened above. Give up on the rest.
            stats.dropped += pending.len() as u64;
            pending.clear();
        }
        if flushes.is_empty() {
            continue;
        }
        let flushed = store.flush().map_err(|e| e.to_string());
        for reply in flushes {
            let answer = match (&last_error, &flushed) {
                (Some(e), _) => Err(e.clone()),
                (None, Err(e)) => Err(e.clone()),
                (None, Ok(())) => Ok(()),
            };
            let _ = reply.send(answer);
        }
    }
    let _ = store.flush();
    (stats, last_error)
}
