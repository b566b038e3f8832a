//! Zero-downtime upgrade: a successor process takes the listening sockets
//! over a Unix socket (`runtime.upgrade_socket`, `SCM_RIGHTS`), as
//! HAProxy's `-x`, Envoy's hot restart and Pingora's graceful upgrade do.
//!
//! The running process listens on the socket. `SIGUSR2` or
//! `spillway upgrade` (a client of the same socket) makes it start its
//! successor (`spillway run --config … --upgrade-from SOCKET`, the binary at
//! the path this process was started from, so a newly installed one). The
//! successor validates its config first, then connects and says
//! `takeover`; this process sends every listening socket (by name and
//! configured address, the admin's too) and the state it has learnt
//! (`state.rs`) in one frame. The successor binds what is new, reuses what
//! matches, starts everything and says `ready`; only then does this
//! process answer `ack`, stop accepting and drain (`runtime.drain_timeout`,
//! the shutdown's drain), and exit 0. The sockets are the same kernel
//! objects in both processes, so connections waiting in a backlog are
//! accepted by whichever process accepts next and none is lost.
//!
//! Invariants: this process stops accepting only after a successor has
//! said `ready` and been acknowledged; a successor that fails or dies
//! before that leaves this process serving, as it was. A successor that
//! got no `ack` exits without serving. One handover at a time.

pub(crate) mod state;
pub mod systemd;
pub(crate) mod wire;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::telemetry::catalog;

use super::server::Server;
use state::Carried;
pub use wire::WireError;

/// How long a successor may take from `takeover` to `ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long either side waits for a short answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("upgrade socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("takeover refused: {0}")]
    Refused(String),
    #[error("starting the successor {exe}: {source}")]
    Spawn { exe: PathBuf, source: std::io::Error },
    #[error("the successor exited ({0}) before it took over")]
    SuccessorExited(std::process::ExitStatus),
    #[error("the successor did not take over within {0:?}")]
    SuccessorTimeout(Duration),
    #[error("an upgrade is already under way")]
    Busy,
    #[error("no `runtime.upgrade_socket` configured")]
    NotConfigured,
}

/// The first line on the upgrade socket: who is asking.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Hello {
    /// A successor, ready to receive the sockets.
    Takeover { pid: u32 },
    /// An operator (`spillway upgrade`): start a successor and report.
    Upgrade,
}

/// A step of the takeover after the handover frame.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Step {
    Ready,
    Ack,
}

/// What `spillway upgrade` is told.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum UpgradeOutcome {
    HandedOver { pid: u32 },
    Failed { error: String },
}

/// One listening socket in the handover frame; the frame's descriptors
/// are in this order, the admin's last.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SocketEntry {
    name: String,
    configured: SocketAddr,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Handover {
    pid: u32,
    listeners: Vec<SocketEntry>,
    admin: Option<SocketAddr>,
    state: Carried,
}

/// How this process starts its successor.
#[derive(Debug, Clone)]
pub struct Relaunch {
    /// The binary's path as this process was started (a newly installed
    /// binary at that path is the one that starts).
    pub exe: PathBuf,
    /// Arguments before `--upgrade-from SOCKET` (`run --config F …`).
    pub args: Vec<OsString>,
}

/// What a successor received from its predecessor, until it confirms.
pub struct Takeover {
    stream: UnixStream,
    from_pid: u32,
    listeners: Vec<(SocketEntry, Option<std::net::TcpListener>)>,
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    pub(crate) carried: Carried,
}

/// Connects to a running Spillway's upgrade socket and receives its
/// listeners and state (blocking; before the tokio runtime).
pub fn take_over(path: &Path) -> Result<Takeover, UpgradeError> {
    let socket_err = |source| UpgradeError::Socket { path: path.to_path_buf(), source };
    let mut stream = UnixStream::connect(path).map_err(socket_err)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(socket_err)?;
    wire::send_line(&mut stream, &Hello::Takeover { pid: std::process::id() })?;
    let (fds, handover): (Vec<OwnedFd>, Handover) = wire::recv_with_fds(&mut stream)?;
    let wanted = handover.listeners.len() + usize::from(handover.admin.is_some());
    if fds.len() != wanted {
        return Err(WireError::Protocol(format!("{} descriptors for {wanted} sockets", fds.len())).into());
    }
    let mut fds = fds.into_iter().map(std::net::TcpListener::from);
    let listeners = handover.listeners.into_iter().map(|entry| (entry, fds.next())).collect();
    let admin = handover.admin.zip(fds.next());
    Ok(Takeover { stream, from_pid: handover.pid, listeners, admin, carried: handover.state })
}

impl Takeover {
    /// The predecessor's listener for `name` at `configured`: the same name
    /// and address, else (a renamed listener) the same fixed address.
    pub(crate) fn take_listener(&mut self, name: &str, configured: SocketAddr) -> Option<std::net::TcpListener> {
        let exact =
            self.listeners.iter().position(|(e, s)| s.is_some() && e.name == name && e.configured == configured);
        let same_addr = || {
            let fixed = configured.port() != 0;
            self.listeners.iter().position(|(e, s)| fixed && s.is_some() && e.configured == configured)
        };
        let i = exact.or_else(same_addr)?;
        self.listeners[i].1.take()
    }

    /// The predecessor's admin listener, when it was configured at `configured`.
    pub(crate) fn take_admin(&mut self, configured: SocketAddr) -> Option<std::net::TcpListener> {
        match self.admin.take() {
            Some((addr, socket)) if addr == configured => Some(socket),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// Everything is started: tells the predecessor, and waits for its
    /// acknowledgement (it then stops accepting). Sockets not taken are
    /// closed here (their listeners are not in this config).
    pub(crate) fn confirm(mut self) -> Result<u32, UpgradeError> {
        for (entry, socket) in self.listeners.drain(..) {
            if socket.is_some() {
                tracing::info!(listener = %entry.name, addr = %entry.configured, "listener not in the new config: closed");
            }
        }
        wire::send_line(&mut self.stream, &Step::Ready)?;
        match wire::recv_line::<Step>(&mut self.stream)? {
            Step::Ack => Ok(self.from_pid),
            Step::Ready => Err(WireError::Protocol("unexpected `ready`".into()).into()),
        }
    }
}

/// The running process's side: the upgrade socket and the successor.
pub(crate) struct Upgrader {
    server: Arc<Server>,
    socket_path: PathBuf,
    relaunch: Option<Relaunch>,
    /// The admin listener (its configured address and a duplicate of it).
    admin: Option<(SocketAddr, socket2::Socket)>,
    /// Stops the admin's accept loop once a successor took over.
    admin_task: Mutex<Option<tokio::task::AbortHandle>>,
    handed_over: CancellationToken,
    /// A takeover is under way (one at a time).
    handing: AtomicBool,
    /// A successor is being started (one at a time).
    spawning: AtomicBool,
    /// Takeovers begun (a failure is counted once: by the takeover when
    /// there was one, else by the start of the successor).
    takeovers: std::sync::atomic::AtomicU64,
    /// Connections on the upgrade socket served at once (`MAX_PEERS`).
    peers: Arc<tokio::sync::Semaphore>,
}

/// Connections on the upgrade socket served at once: a takeover and an
/// operator's `spillway upgrade` need two; more are closed at once.
const MAX_PEERS: usize = 4;
/// The longest first line: `{"kind":"takeover","pid":4294967295}` is 36 bytes.
const MAX_HELLO: usize = 1024;

/// Reads the first line on the upgrade socket (asynchronously: a peer that
/// dribbles bytes holds no blocking thread), at most `MAX_HELLO` bytes, and
/// nothing after its newline: a peer speaks only when answered.
async fn read_hello(stream: &mut tokio::net::UnixStream) -> Result<Hello, String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the end of its first line".into());
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            if end + 1 != line.len() {
                return Err("bytes after the first line, before any answer".into());
            }
            return serde_json::from_slice(&line).map_err(|e| e.to_string());
        }
        if line.len() > MAX_HELLO {
            return Err(format!("a first line over {MAX_HELLO} bytes"));
        }
    }
}

/// Whether a peer of the upgrade socket may use it: this process's user or
/// root (the socket file is 0600, but only from its `chmod` on; the
/// credentials hold from the first byte), and a successor that names
/// itself by its own pid.
fn peer_allowed(peer: &tokio::net::unix::UCred, hello: Option<&Hello>) -> Result<(), String> {
    let me = nix::unistd::Uid::effective().as_raw();
    if peer.uid() != me && peer.uid() != 0 {
        return Err(format!("a peer of user {} (this process runs as {me})", peer.uid()));
    }
    match hello {
        Some(Hello::Takeover { pid }) if peer.pid().and_then(|p| u32::try_from(p).ok()) != Some(*pid) => {
            Err(format!("a takeover naming pid {pid} from pid {:?}", peer.pid()))
        }
        _ => Ok(()),
    }
}

impl Upgrader {
    pub(crate) fn new(
        server: Arc<Server>,
        socket_path: PathBuf,
        relaunch: Option<Relaunch>,
        admin: Option<(SocketAddr, socket2::Socket)>,
        admin_task: Option<tokio::task::AbortHandle>,
    ) -> Arc<Self> {
        Arc::new(Upgrader {
            server,
            socket_path,
            relaunch,
            admin,
            admin_task: Mutex::new(admin_task),
            handed_over: CancellationToken::new(),
            handing: AtomicBool::new(false),
            spawning: AtomicBool::new(false),
            takeovers: std::sync::atomic::AtomicU64::new(0),
            peers: Arc::new(tokio::sync::Semaphore::new(MAX_PEERS)),
        })
    }

    /// Resolves once a successor has taken over.
    pub(crate) fn handed_over(&self) -> CancellationToken {
        self.handed_over.clone()
    }

    /// Binds the upgrade socket (a new file renamed over the path, so the
    /// path never points at nothing) and serves it until a handover.
    pub(crate) fn listen(self: &Arc<Self>) -> Result<(), UpgradeError> {
        let path = &self.socket_path;
        let socket_err = |source| UpgradeError::Socket { path: path.clone(), source };
        let mut fresh = path.clone().into_os_string();
        fresh.push(format!(".{}", std::process::id()));
        let fresh = PathBuf::from(fresh);
        let _ = std::fs::remove_file(&fresh);
        let listener = std::os::unix::net::UnixListener::bind(&fresh).map_err(socket_err)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600)).map_err(socket_err)?;
        std::fs::rename(&fresh, path).map_err(socket_err)?;
        listener.set_nonblocking(true).map_err(socket_err)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(socket_err)?;
        tracing::info!(socket = %path.display(), "upgrade socket listening");
        tokio::spawn(self.clone().accept_loop(listener));
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let accepted = tokio::select! {
                () = self.handed_over.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(self.clone().serve(stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve(self: Arc<Self>, mut stream: tokio::net::UnixStream) {
        let Ok(_slot) = self.peers.clone().try_acquire_owned() else {
            return tracing::warn!("upgrade socket: {MAX_PEERS} connections already open, one more closed");
        };
        let peer = match stream.peer_cred() {
            Ok(peer) => peer,
            Err(e) => return tracing::warn!(error = %e, "upgrade socket: no peer credentials"),
        };
        if let Err(why) = peer_allowed(&peer, None) {
            return tracing::warn!(refused = %why, "upgrade socket: peer refused");
        }
        let hello = match tokio::time::timeout(ANSWER_TIMEOUT, read_hello(&mut stream)).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(e)) => return tracing::warn!(error = %e, "upgrade socket: bad request"),
            Err(_) => return tracing::warn!("upgrade socket: no request within {ANSWER_TIMEOUT:?}"),
        };
        if let Err(why) = peer_allowed(&peer, Some(&hello)) {
            return tracing::warn!(refused = %why, "upgrade socket: peer refused");
        }
        let mut stream = match stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)) {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "upgrade socket: connection unusable"),
        };
        let me = self.clone();
        match hello {
            Hello::Takeover { pid } => {
                let result = tokio::task::spawn_blocking(move || me.hand_over(&mut stream, pid)).await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        metrics::counter!(catalog::UPGRADES, "result" => "failed").increment(1);
                        tracing::error!(successor = pid, error = %e, "upgrade failed; this process keeps serving");
                    }
                    Err(e) => tracing::error!(error = %e, "upgrade handler failed; this process keeps serving"),
                }
            }
            Hello::Upgrade => {
                let outcome = match self.start_successor().await {
                    Ok(pid) => UpgradeOutcome::HandedOver { pid },
                    Err(e) => UpgradeOutcome::Failed { error: e.to_string() },
                };
                let _ = tokio::task::spawn_blocking(move || wire::send_line(&mut stream, &outcome)).await;
            }
        }
    }

    /// Sends the sockets and state to successor `pid`, waits for its
    /// `ready`, acknowledges and marks the handover (blocking).
    fn hand_over(&self, stream: &mut UnixStream, pid: u32) -> Result<(), UpgradeError> {
        if self.handing.swap(true, SeqCst) || self.handed_over.is_cancelled() {
            // Closing the connection tells the successor.
            return Err(UpgradeError::Refused("another successor is taking over".into()));
        }
        let _one = HandingGuard(&self.handing);
        self.takeovers.fetch_add(1, SeqCst);
        let started = Instant::now();
        let sockets = self.server.handover_sockets();
        let mut fds: Vec<_> = sockets.iter().map(|(_, _, s)| s.as_raw_fd()).collect();
        if let Some((_, admin)) = &self.admin {
            fds.push(admin.as_raw_fd());
        }
        let handover = Handover {
            pid: std::process::id(),
            listeners: sockets
                .iter()
                .map(|(name, configured, _)| SocketEntry { name: name.clone(), configured: *configured })
                .collect(),
            admin: self.admin.as_ref().map(|(addr, _)| *addr),
            state: state::collect(&self.server, Instant::now()),
        };
        wire::send_with_fds(stream, &fds, &handover)?;
        drop(sockets);
        stream.set_read_timeout(Some(READY_TIMEOUT)).map_err(WireError::Io)?;
        match wire::recv_line::<Step>(stream)? {
            Step::Ready => {}
            other => return Err(WireError::Protocol(format!("expected `ready`, got {other:?}")).into()),
        }
        wire::send_line(stream, &Step::Ack)?;
        if let Some(task) = crate::sync::lock(&self.admin_task).take() {
            task.abort();
        }
        self.handed_over.cancel();
        metrics::counter!(catalog::UPGRADES, "result" => "handed_over").increment(1);
        let took = started.elapsed();
        tracing::info!(successor = pid, ?took, "handed the listeners over; draining");
        println!("handed over to {pid}");
        Ok(())
    }

    /// Starts the successor and waits until it took over or failed.
    pub(crate) async fn start_successor(self: &Arc<Self>) -> Result<u32, UpgradeError> {
        let relaunch = self.relaunch.as_ref().ok_or(UpgradeError::NotConfigured)?;
        if self.spawning.swap(true, SeqCst) {
            return Err(UpgradeError::Busy);
        }
        let _one = HandingGuard(&self.spawning);
        let takeovers = self.takeovers.load(SeqCst);
        let mut child = tokio::process::Command::new(&relaunch.exe)
            .args(&relaunch.args)
            .arg("--upgrade-from")
            .arg(&self.socket_path)
            .spawn()
            .map_err(|source| UpgradeError::Spawn { exe: relaunch.exe.clone(), source })?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(successor = pid, exe = %relaunch.exe.display(), "upgrade: successor started");
        let bound = READY_TIMEOUT + ANSWER_TIMEOUT * 2;
        let result = tokio::select! {
            () = self.handed_over.cancelled() => return Ok(pid),
            status = child.wait() => match status {
                Ok(status) => Err(UpgradeError::SuccessorExited(status)),
                Err(source) => Err(UpgradeError::Spawn { exe: relaunch.exe.clone(), source }),
            },
            () = tokio::time::sleep(bound) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(UpgradeError::SuccessorTimeout(bound))
            }
        };
        if let Err(e) = &result {
            if self.takeovers.load(SeqCst) == takeovers {
                metrics::counter!(catalog::UPGRADES, "result" => "failed").increment(1);
            }
            tracing::error!(successor = pid, error = %e, "upgrade failed; this process keeps serving");
        }
        result
    }

    /// Starts a successor on every SIGUSR2.
    pub(crate) fn watch_sigusr2(self: &Arc<Self>) -> std::io::Result<()> {
        let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
        let me = self.clone();
        tokio::spawn(async move {
            while usr2.recv().await.is_some() {
                tracing::info!("SIGUSR2: upgrading");
                let _ = me.start_successor().await;
                if me.handed_over.is_cancelled() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Clears a one-at-a-time flag when dropped.
struct HandingGuard<'a>(&'a AtomicBool);

impl Drop for HandingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

/// `spillway upgrade`: asks the process on `socket` to start its successor
/// and reports how that ended (blocking).
pub fn request(socket: &Path) -> Result<UpgradeOutcome, UpgradeError> {
    let socket_err = |source| UpgradeError::Socket { path: socket.to_path_buf(), source };
    let mut stream = UnixStream::connect(socket).map_err(socket_err)?;
    stream.set_read_timeout(Some(READY_TIMEOUT + ANSWER_TIMEOUT * 3)).map_err(socket_err)?;
    wire::send_line(&mut stream, &Hello::Upgrade)?;
    Ok(wire::recv_line(&mut stream)?)
}
