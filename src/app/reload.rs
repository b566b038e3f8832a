//! Reload triggers: file changes (debounced) of the config and of the
//! listeners' certificate and key files, SIGHUP. All only say "the config
//! may have changed"; the server re-reads, validates and swaps, and a file
//! that fails validation (a certificate and key that do not make a pair)
//! leaves the running config, and its certificates, in place.
//!
//! The watch is on the file's directory, not the file: editors save by
//! writing a temp file and renaming it over the original, which replaces the
//! watched inode. Debouncing waits for a quiet period so a file saved in two
//! steps is read once, complete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    File,
    Signal,
    /// A listener's certificate or key file changed.
    Certificate,
}

impl Trigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "sighup",
            Trigger::Certificate => "certificate",
        }
    }
}

/// Watches `path`; the returned watcher must be kept alive.
pub(crate) fn watch_file(
    path: &Path,
    debounce: Duration,
    tx: mpsc::Sender<Trigger>,
) -> notify::Result<notify::RecommendedWatcher> {
    watch_paths(std::slice::from_ref(&path.to_path_buf()), debounce, tx, Trigger::File)
}

/// Watches the directories of `paths` for events on their file names and
/// sends `trigger` after each quiet period; the watcher must be kept alive.
fn watch_paths(
    paths: &[PathBuf],
    debounce: Duration,
    tx: mpsc::Sender<Trigger>,
    trigger: Trigger,
) -> notify::Result<notify::RecommendedWatcher> {
    let names: Vec<PathBuf> = paths.iter().filter_map(|p| p.file_name().map(PathBuf::from)).collect();
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf())
        .collect();
    dirs.sort();
    dirs.dedup();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event.paths.iter().any(|p| p.file_name().is_some_and(|f| names.iter().any(|n| n == f)));
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Quiet period: keep swallowing events until none for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(debounce, raw_rx.recv()).await {}
            if tx.send(trigger).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

/// How long certificate and key files must be quiet before a reload (a
/// certificate and its key are usually replaced one after the other).
const CERTIFICATE_DEBOUNCE: Duration = Duration::from_millis(300);

/// The watch on the running config's certificate and key files: replacing
/// them on disk reloads, so certificates rotate without SIGHUP.
pub(crate) struct CertificateWatch {
    tx: mpsc::Sender<Trigger>,
    files: Vec<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl CertificateWatch {
    pub(crate) fn new(tx: mpsc::Sender<Trigger>) -> Self {
        CertificateWatch { tx, files: Vec::new(), watcher: None }
    }

    /// Watches the files `config`'s TLS listeners name (anew only when
    /// the set changed); a watch that cannot be set up is logged.
    pub(crate) fn follow(&mut self, config: &Config) {
        let mut files: Vec<PathBuf> = config
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .flat_map(|t| [t.cert_path.clone(), t.key_path.clone()])
            .collect();
        files.sort();
        files.dedup();
        if files == self.files {
            return;
        }
        self.watcher = None;
        if !files.is_empty() {
            match watch_paths(&files, CERTIFICATE_DEBOUNCE, self.tx.clone(), Trigger::Certificate) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => tracing::error!(error = %e, "cannot watch the certificate files: rotate with SIGHUP"),
            }
        }
        self.files = files;
    }
}

/// Forwards SIGHUP as a reload trigger.
pub(crate) fn watch_sighup(tx: mpsc::Sender<Trigger>) -> std::io::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if tx.send(Trigger::Signal).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
