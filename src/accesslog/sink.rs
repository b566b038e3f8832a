//! Where the writer's lines go: stdout, or a file. A file is opened for
//! appending, reopened when asked (SIGHUP, reload) and when the path no
//! longer names the file it has open (logrotate moved it away: the inode
//! differs or the path is gone), checked once a second. Lines a sink could
//! not write are reported back as lost, not retried.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Entry;
use crate::config::LogSink;
use crate::telemetry::LogBudget;

/// How often a file sink checks that its path still names its file.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// One destination of access-log lines.
pub(super) trait Sink: Send {
    /// Takes one formatted line (without its newline) of `entry`.
    fn push(&mut self, entry: &Entry, line: &[u8]);
    /// Writes what was pushed; returns how many lines were lost.
    fn flush(&mut self) -> u64;
    /// Housekeeping before a batch: reopen, rotation check, reconnect.
    fn maintain(&mut self, now: Instant, reopen: bool);
}

pub(super) fn open(sink: &LogSink) -> Box<dyn Sink> {
    match sink {
        LogSink::Stdout => Box::new(Lines::new(Target::Stdout)),
        LogSink::File(path) => Box::new(Lines::new(Target::File(FileTarget::new(path.clone())))),
        LogSink::Syslog(cfg) => Box::new(super::syslog::Syslog::new(cfg.clone())),
    }
}

/// Newline-separated lines, batched per tick.
struct Lines {
    target: Target,
    buf: Vec<u8>,
    pending: u64,
}

enum Target {
    Stdout,
    File(FileTarget),
}

impl Lines {
    fn new(target: Target) -> Self {
        Lines { target, buf: Vec::with_capacity(64 * 1024), pending: 0 }
    }
}

impl Sink for Lines {
    fn push(&mut self, _entry: &Entry, line: &[u8]) {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.pending += 1;
    }

    fn flush(&mut self) -> u64 {
        if self.buf.is_empty() {
            return 0;
        }
        let written = match &mut self.target {
            Target::Stdout => std::io::stdout().lock().write_all(&self.buf),
            Target::File(f) => f.write(&self.buf),
        };
        let lost = if written.is_ok() { 0 } else { self.pending };
        if let Err(e) = written {
            static FAILED: LogBudget = LogBudget::new(1);
            if let Some(suppressed) = FAILED.admit(crate::telemetry::secs(Instant::now())) {
                tracing::warn!(error = %e, lost, suppressed, "access log lines could not be written");
            }
        }
        self.buf.clear();
        self.pending = 0;
        lost
    }

    fn maintain(&mut self, now: Instant, reopen: bool) {
        if let Target::File(f) = &mut self.target {
            f.maintain(now, reopen);
        }
    }
}

/// An append-only file and the inode it was opened as.
struct FileTarget {
    path: PathBuf,
    file: Option<(File, u64)>,
    checked: Option<Instant>,
}

impl FileTarget {
    fn new(path: PathBuf) -> Self {
        FileTarget { path, file: None, checked: None }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(self.open()?);
        }
        let (file, _) = self.file.as_mut().expect("opened above");
        file.write_all(buf)
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        let ino = file.metadata()?.ino();
        Ok((file, ino))
    }

    /// Reopens when asked, or when the path names another file (or none).
    fn maintain(&mut self, now: Instant, reopen: bool) {
        let due = self.checked.is_none_or(|t| now.saturating_duration_since(t) >= ROTATION_CHECK);
        if !reopen && !due {
            return;
        }
        self.checked = Some(now);
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        let rotated = self.file.as_ref().is_some_and(|(_, ino)| current != Some(*ino));
        if reopen || rotated {
            tracing::info!(path = %self.path.display(), rotated, "reopening the access log file");
            self.file = None;
        }
    }
}
