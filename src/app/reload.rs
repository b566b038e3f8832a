//! Reload triggers: file changes (debounced), SIGHUP. Both only say "the
//! config may have changed"; the server re-reads, validates and swaps, and a
//! file that fails validation leaves the running config in place.
//!
//! The watch is on the file's directory, not the file: editors save by
//! writing a temp file and renaming it over the original, which replaces the
//! watched inode. Debouncing waits for a quiet period so a file saved in two
//! steps is read once, complete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    File,
    Signal,
}

impl Trigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "sighup",
        }
    }
}

/// Watches `path`; the returned watcher must be kept alive.
pub(crate) fn watch_file(
    path: &Path,
    debounce: Duration,
    tx: mpsc::Sender<Trigger>,
) -> notify::Result<notify::RecommendedWatcher> {
    let file: PathBuf = path.file_name().map(PathBuf::from).unwrap_or_default();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event.paths.iter().any(|p| p.file_name() == Some(file.as_os_str()));
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Quiet period: keep swallowing events until none for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(debounce, raw_rx.recv()).await {}
            if tx.send(Trigger::File).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
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
