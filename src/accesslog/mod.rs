//! The access log: one line per request, written after its response ended
//! (`proxy::ActiveRequest` hands its [`Entry`] over when it drops).
//!
//! Between the data plane and the sink there is one bounded queue and one
//! writer thread. The queue is a vector behind a lock that the writer
//! swaps for an empty one (double buffering: the two vectors keep their
//! capacity, so a line costs the data plane a lock and a copy, no channel
//! slot and no wake-up). The data plane never waits for room: a full queue
//! drops the line and counts it (`spillway_access_log_dropped_total{reason=
//! "queue_full"}`), never holds the request. The writer wakes every
//! [`TICK`], takes what is queued, formats it (`format.rs`) and writes it
//! to the sink of the running config (`sink.rs`: stdout, a file reopened
//! on SIGHUP and after rotation; `syslog.rs`: RFC 5424 over TLS with
//! octet counting). It polls rather than waits on the queue, so a
//! request's hand-over never has to wake a sleeping thread.

pub(crate) mod entry;
pub(crate) mod format;
mod sink;
mod syslog;

use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use entry::{Entry, RequestId, Trace};

use crate::config::Config;
use crate::sync::lock;
use crate::telemetry::catalog;

/// How often the writer takes the queue.
const TICK: Duration = Duration::from_millis(20);

/// Room the queue starts with (it grows up to its capacity under load).
const INITIAL_ROOM: usize = 256;

/// The data plane's end of the access log.
pub(crate) struct AccessLog {
    // Entries by value: the box an entry lives in while its request runs
    // is freed on the data plane's thread (a box freed by the writer left
    // each request's malloc the slow, cross-thread path).
    queue: Arc<Queue>,
    writer_started: Mutex<bool>,
    /// The writer thread, until `close` waits for it.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    queue_full: metrics::Counter,
    reopen: Arc<AtomicBool>,
}

/// The entries waiting for the writer, at most `capacity`.
struct Queue {
    entries: Mutex<Vec<Entry>>,
    capacity: usize,
    /// The data plane is gone: the writer ends.
    closed: AtomicBool,
}

impl AccessLog {
    /// A queue of `capacity` lines (the writer starts with [`AccessLog::spawn_writer`]).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let queue = Queue {
            entries: Mutex::new(Vec::with_capacity(capacity.min(INITIAL_ROOM))),
            capacity,
            closed: AtomicBool::new(false),
        };
        AccessLog {
            queue: Arc::new(queue),
            writer_started: Mutex::new(false),
            writer: Mutex::new(None),
            queue_full: metrics::counter!(catalog::ACCESS_LOG_DROPPED, "reason" => "queue_full"),
            reopen: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues a line; never waits for room.
    #[inline]
    pub(crate) fn submit(&self, entry: Entry) {
        let mut q = lock(&self.queue.entries);
        if q.len() < self.queue.capacity {
            q.push(entry);
        } else {
            drop(q);
            self.queue_full.increment(1);
        }
    }

    /// Asks the writer to reopen its sink (SIGHUP, reload).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Starts the writer; `settings` is the running config (`None`: the
    /// server is gone, the writer ends). A second call does nothing.
    pub(crate) fn spawn_writer(&self, settings: impl Fn() -> Option<Arc<Config>> + Send + 'static) {
        let mut started = lock(&self.writer_started);
        if *started {
            return;
        }
        *started = true;
        let (queue, reopen) = (self.queue.clone(), self.reopen.clone());
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || Writer::new(reopen).run(&queue, settings));
        match spawned {
            Ok(handle) => *lock(&self.writer) = Some(handle),
            Err(e) => tracing::error!(error = %e, "cannot start the access log writer"),
        }
    }

    /// Shutdown: the writer takes what is queued, writes it and ends;
    /// waits for that at most `within`. Lines of requests that end later
    /// (connections cut at the drain deadline) are not written.
    pub(crate) async fn close(&self, within: Duration) {
        self.queue.closed.store(true, Release);
        let Some(writer) = lock(&self.writer).take() else { return };
        writer.thread().unpark();
        let deadline = std::time::Instant::now() + within;
        while !writer.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.queue.closed.store(true, Release);
        if let Some(writer) = lock(&self.writer).as_ref() {
            writer.thread().unpark();
        }
    }
}

/// The writer thread's state: the open sink and what it was opened for.
struct Writer {
    sink: Option<(crate::config::LogSink, Box<dyn sink::Sink>)>,
    reopen: Arc<AtomicBool>,
    line: Vec<u8>,
    format: format::Formatter,
    lines: metrics::Counter,
}

impl Writer {
    fn new(reopen: Arc<AtomicBool>) -> Self {
        Writer {
            sink: None,
            reopen,
            line: Vec::with_capacity(1024),
            format: format::Formatter::default(),
            lines: metrics::counter!(catalog::ACCESS_LOG_LINES),
        }
    }

    fn run(mut self, queue: &Queue, settings: impl Fn() -> Option<Arc<Config>>) {
        let mut batch = Vec::with_capacity(queue.capacity.min(INITIAL_ROOM));
        // The config of the last batch: the final one (the server gone) is
        // written with it.
        let mut last: Option<Arc<Config>> = None;
        loop {
            // `close` unparks it at once.
            std::thread::park_timeout(TICK);
            // Read before the swap: once closed, nothing more is queued,
            // so this batch is the last.
            let closed = queue.closed.load(Acquire);
            let current = settings();
            let ending = closed || current.is_none();
            let Some(config) = current.or_else(|| last.take()) else { return };
            let open = self.prepare(&config);
            // The data plane's vector is swapped for the empty one: the
            // lock is held for the swap alone.
            std::mem::swap(&mut *lock(&queue.entries), &mut batch);
            self.drain(&mut batch, &config, open);
            if ending {
                return;
            }
            last = Some(config);
        }
    }

    /// Opens (or reopens) the sink the config names; false when the log is off.
    fn prepare(&mut self, config: &Config) -> bool {
        let Some(cfg) = config.access_log.as_ref().filter(|a| a.enabled) else {
            self.sink = None;
            return false;
        };
        if self.sink.as_ref().is_none_or(|(s, _)| *s != cfg.sink) {
            self.sink = Some((cfg.sink.clone(), sink::open(&cfg.sink)));
        }
        let reopen = self.reopen.swap(false, Relaxed);
        if let Some((_, s)) = &mut self.sink {
            s.maintain(std::time::Instant::now(), reopen);
        }
        true
    }

    /// Writes the batch (and empties it).
    fn drain(&mut self, batch: &mut Vec<Entry>, config: &Config, open: bool) {
        let format = config.access_log.as_ref().map_or(crate::config::LogFormat::Json, |a| a.format);
        let mut written = 0;
        if let Some((_, sink)) = self.sink.as_mut().filter(|_| open) {
            for entry in batch.iter() {
                self.line.clear();
                self.format.line(entry, format, &mut self.line);
                sink.push(entry, &self.line);
                written += 1;
            }
        }
        batch.clear();
        if let Some((_, sink)) = &mut self.sink {
            let lost = sink.flush();
            self.lines.increment(written - lost.min(written));
            if lost > 0 {
                metrics::counter!(catalog::ACCESS_LOG_DROPPED, "reason" => "sink").increment(lost);
            }
        }
    }
}
