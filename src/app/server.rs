//! The long-lived server: holds the current runtime snapshot, the listeners,
//! reload bookkeeping, and the drain signal. Everything that must survive a
//! reload lives here; everything a reload may change lives in `Runtime`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::burst::DrSource;
use crate::config::Severity;
use crate::config::{self, ConfigError, LoadedConfig};
use crate::gate::Gates;
use crate::notifications::{Event, Kind, Settings};
use crate::proxy::listener::{self, ListenerTask};
use crate::proxy::DataPlane;

use super::activation;
use super::upgrade::Takeover;
use crate::runtime::{BuildError, Runtime};
use crate::sync::lock;
use crate::telemetry::catalog;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{key} changed from {from} to {to}: that takes a restart; keeping the running configuration")]
    NeedsRestart { key: &'static str, from: String, to: String },
    #[error("listener {name}: cannot bind {addr}: {source}")]
    Bind { name: String, addr: SocketAddr, source: std::io::Error },
}

/// What `/status` shows about configuration.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ReloadState {
    pub(crate) version: String,
    pub(crate) path: String,
    pub(crate) loaded_at: Option<String>,
    pub(crate) reloads: u64,
    pub(crate) failures: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<String>,
}

/// The channels between the data plane and the AWS controllers.
pub(crate) struct ControlPlane {
    pub(crate) signals: watch::Sender<crate::control::ControlSignals>,
    pub(crate) scale: watch::Sender<Option<crate::config::ScaleConfig>>,
    pub(crate) dns: watch::Sender<Option<crate::config::DnsConfig>>,
    pub(crate) coordination: watch::Sender<Option<crate::config::CoordinationConfig>>,
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
    pub(crate) handle: Mutex<Option<super::control::ControlHandle>>,
    /// The scale controller's report of in-service cloud capacity.
    pub(crate) capacity: Mutex<Option<watch::Receiver<Option<crate::scale::CloudCapacity>>>>,
}

impl ControlPlane {
    fn new(config: &crate::config::Config) -> Self {
        ControlPlane {
            signals: watch::channel(crate::control::ControlSignals::default()).0,
            scale: watch::channel(config.scale.clone()).0,
            dns: watch::channel(config.dns.clone()).0,
            coordination: watch::channel(config.coordination.clone()).0,
            shutdown: tokio_util::sync::CancellationToken::new(),
            handle: Mutex::new(None),
            capacity: Mutex::new(None),
        }
    }

    /// The controllers' inputs, for `control::start`.
    pub(crate) fn inputs(&self) -> crate::control::ControlInputs {
        crate::control::ControlInputs {
            signals: self.signals.subscribe(),
            scale: self.scale.subscribe(),
            dns: self.dns.subscribe(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Hands a reloaded config's controller sections to the controllers.
    fn reconfigure(&self, config: &crate::config::Config) {
        self.scale.send_if_modified(|s| replace_if_changed(s, &config.scale));
        self.dns.send_if_modified(|d| replace_if_changed(d, &config.dns));
        self.coordination.send_if_modified(|c| replace_if_changed(c, &config.coordination));
    }

    /// Warm cloud capacity in requests/s, once the scale controller has read the group.
    pub(crate) fn warm_rps(&self) -> Option<f64> {
        let cap = lock(&self.capacity);
        cap.as_ref().and_then(|rx| rx.borrow().as_ref().map(|c| c.warm_rps))
    }

    /// The site's DR as coordination sets it for this instance's machine
    /// (see `ControlHandle::dr_source`): where its state comes from, the
    /// lease's holder, and the write fence. A non-holder follows the
    /// lease's state only from a read younger than `2 × heartbeat_interval`
    /// (one failed Query tolerated), else its writes are held; so after the
    /// holder's move is in the lease (acknowledged at `w`), no instance
    /// admits a write to the old database later than two heartbeat
    /// intervals and a tick after `w`, and none to the new one before the fence,
    /// `3 × heartbeat_interval + 2 × spill.tick`, has passed since it
    /// learnt the move (the holder: since `w`): a heartbeat of margin for
    /// a late tick. Before the controllers started, nothing was read.
    pub(crate) fn site_dr(&self, config: &crate::config::Config) -> super::ticker::SiteDr {
        let Some(c) = config.coordination.as_ref().filter(|c| c.enabled) else {
            return super::ticker::SiteDr::default();
        };
        let fresh = c.heartbeat_interval.saturating_mul(2);
        let fence = c.heartbeat_interval.saturating_mul(3) + config.spill.tick.saturating_mul(2);
        // No controllers yet (the process is starting): nothing read, writes held.
        let mut site = lock(&self.handle).as_ref().map_or_else(
            || super::ticker::SiteDr {
                source: DrSource::Stale,
                valid_until: Some(std::time::Instant::now()),
                ..Default::default()
            },
            |h| h.dr_source(fresh),
        );
        if !c.refuse_writes_when_stale {
            // The operator's choice: keep the state and keep writing (a split is possible if the holder moves writes meanwhile).
            site.valid_until = None;
            if site.source == DrSource::Stale {
                site.source = DrSource::Lease { state: None };
            }
        }
        super::ticker::SiteDr { fence: Some(fence), ..site }
    }

    /// The coordination document for `/status` (`null` without `[coordination]`).
    pub(crate) fn coordination_status(&self) -> serde_json::Value {
        lock(&self.handle).as_ref().map_or(serde_json::Value::Null, |h| h.coordination_status())
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        match &*lock(&self.handle) {
            Some(h) => h.status(),
            None => serde_json::json!({ "running": false }),
        }
    }
}

fn replace_if_changed<T: PartialEq + Clone>(slot: &mut T, next: &T) -> bool {
    let changed = slot != next;
    if changed {
        *slot = next.clone();
    }
    changed
}

pub(crate) struct Server {
    /// What the listeners and the service are handed.
    pub(crate) data: Arc<DataPlane>,
    /// Set once at start (needs the runtime to exist).
    pub(crate) notifier: std::sync::OnceLock<crate::notifications::Notifier>,
    pub(crate) control: ControlPlane,
    pub(crate) config_path: PathBuf,
    pub(crate) reload_state: Mutex<ReloadState>,
    listeners: tokio::sync::Mutex<BTreeMap<String, ListenerTask>>,
    reload_lock: tokio::sync::Mutex<()>,
    /// The controllers' APIs, kept from start for a reload that adds the
    /// first controller section.
    pub(crate) controller_apis: std::sync::OnceLock<super::ControllerApis>,
    /// The last notification events (the dashboard shows them).
    pub(crate) recent_events: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// How many events the dashboard's "last events" keeps.
const RECENT_EVENTS: usize = 20;

impl Server {
    pub(crate) fn new(loaded: &LoadedConfig) -> Result<Arc<Server>, BuildError> {
        let gates = Gates::new(&loaded.config.spill);
        let runtime = Runtime::build(loaded, None, &gates)?;
        let state = ReloadState {
            version: loaded.version.clone(),
            path: loaded.path.display().to_string(),
            loaded_at: Some(timestamp()),
            ..ReloadState::default()
        };
        Ok(Arc::new(Server {
            notifier: std::sync::OnceLock::new(),
            control: ControlPlane::new(&runtime.config),
            data: Arc::new(DataPlane::new(runtime, gates)),
            config_path: loaded.path.clone(),
            reload_state: Mutex::new(state),
            listeners: tokio::sync::Mutex::new(BTreeMap::new()),
            reload_lock: tokio::sync::Mutex::new(()),
            controller_apis: std::sync::OnceLock::new(),
            recent_events: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_EVENTS)),
        }))
    }

    /// Queues a notification (no-op before `start`).
    pub(crate) fn notify(&self, event: Event) {
        self.remember(&event);
        if let Some(n) = self.notifier.get() {
            n.send(event);
        }
    }

    /// Keeps the event for the dashboard's "last events" (newest last).
    fn remember(&self, event: &Event) {
        let site = self.data.runtime.load().config.runtime.site.clone();
        let mut recent = lock(&self.recent_events);
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event.to_json(&site));
    }

    /// Activates the first snapshot and binds every listener (or takes it
    /// over from a predecessor process).
    pub(crate) async fn start(self: &Arc<Self>, takeover: Option<&mut Takeover>) -> Result<(), ReloadError> {
        let weak = Arc::downgrade(self);
        let notifier = crate::notifications::Notifier::spawn(move || {
            let server = weak.upgrade()?;
            let rt = server.data.runtime.load();
            Some(Settings { site: rt.config.runtime.site.clone(), notify: rt.config.notify.clone() })
        });
        let _ = self.notifier.set(notifier);
        let weak = Arc::downgrade(self);
        self.data.access_log.spawn_writer(move || Some(weak.upgrade()?.data.runtime.load().config.clone()));
        let rt = self.data.runtime.load_full();
        activation::activate(&rt, None);
        activation::initial_probes(&rt, Duration::from_secs(5)).await;
        tokio::spawn(super::ticker::run(self.clone()));
        let bound = bind_new(&rt, &BTreeMap::new(), takeover)?;
        self.start_bound(bound).await
    }

    /// Duplicates of the listening sockets, by name and configured address,
    /// for a successor process.
    pub(crate) fn handover_sockets(&self) -> Vec<(String, SocketAddr, socket2::Socket)> {
        let listeners = self.listeners.blocking_lock();
        listeners
            .values()
            .filter_map(|t| match t.socket.try_clone() {
                Ok(s) => Some((t.name.clone(), t.configured, s)),
                Err(e) => {
                    tracing::error!(listener = %t.name, error = %e, "cannot hand this listener over: the successor binds it");
                    None
                }
            })
            .collect()
    }

    async fn start_bound(self: &Arc<Self>, bound: Vec<(String, tokio::net::TcpListener)>) -> Result<(), ReloadError> {
        let rt = self.data.runtime.load_full();
        let mut listeners = self.listeners.lock().await;
        for (name, socket) in bound {
            let l = &rt.listeners[&name];
            // A listener that moves to a new address keeps its caps: its
            // connections still open on the old address keep counting.
            let caps = listeners.get(&name).map(|t| t.caps.clone());
            let task = listener::start(self.data.clone(), l, socket, caps).map_err(|source| ReloadError::Bind {
                name: name.clone(),
                addr: l.config.listen,
                source,
            })?;
            tracing::info!(listener = %name, addr = %task.local, tls = l.config.tls.is_some(), "listening");
            println!("listening {name} {}", task.local);
            if let Some(old) = listeners.insert(name, task) {
                old.stop();
            }
        }
        // A listener that kept its address takes new caps in place.
        for (name, task) in listeners.iter() {
            if let Some(l) = rt.listeners.get(name) {
                let before = task.caps.sizes();
                task.caps.resize(&l.config);
                if before != (l.config.max_connections, l.config.max_tunnels) {
                    tracing::info!(
                        listener = %name,
                        max_connections = l.config.max_connections,
                        max_tunnels = l.config.max_tunnels,
                        "listener caps resized"
                    );
                }
            }
        }
        Ok(())
    }

    /// The addresses listeners are bound to, by name.
    pub(crate) async fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.lock().await.values().map(|t| (t.name.clone(), t.local)).collect()
    }

    /// The listeners' bound addresses and caps in effect (`max_connections`,
    /// `max_tunnels`), by name.
    pub(crate) async fn listener_caps(&self) -> Vec<(String, SocketAddr, (usize, usize))> {
        self.listeners.lock().await.values().map(|t| (t.name.clone(), t.local, t.caps.sizes())).collect()
    }

    /// Re-reads the config file; on any error the running snapshot stays.
    pub(crate) async fn reload(self: &Arc<Self>, trigger: &str) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        // SIGHUP (or any reload) also reopens the access log's file.
        self.data.access_log.reopen();
        let result = self.try_reload().await;
        if result.is_ok() {
            super::start_controllers_after_reload(self).await;
        }
        let mut st = lock(&self.reload_state);
        match &result {
            Ok(version) => {
                let changed = *version != st.version;
                st.version = version.clone();
                st.loaded_at = Some(timestamp());
                st.reloads += 1;
                st.last_error = None;
                metrics::counter!(catalog::CONFIG_RELOADS).increment(1);
                // Ends a reload_failed episode, if one is open (else goes nowhere).
                self.notify(Event::resolve(
                    Kind::ReloadFailed,
                    "config",
                    format!("Spillway reloaded its configuration ({version})"),
                    SystemTime::now(),
                ));
                tracing::info!(%trigger, %version, changed, "configuration reloaded");
            }
            Err(e) => {
                st.failures += 1;
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(timestamp());
                metrics::counter!(catalog::CONFIG_RELOAD_FAILURES).increment(1);
                let summary = format!("Spillway reload ({trigger}) failed; the previous configuration keeps serving");
                self.notify(
                    Event::trigger(Kind::ReloadFailed, Severity::Error, "config", summary, SystemTime::now())
                        .with_details(serde_json::json!({ "error": e.to_string(), "active_version": st.version })),
                );
                tracing::error!(%trigger, error = %e, "configuration reload failed; the previous configuration keeps serving");
            }
        }
        result
    }

    async fn try_reload(self: &Arc<Self>) -> Result<String, ReloadError> {
        let loaded = config::load(&self.config_path)?;
        let old = self.data.runtime.load_full();
        // The admin listener is bound once; a token rule checked against a
        // new address it is not listening on would protect nothing.
        if loaded.config.admin.listen != old.config.admin.listen {
            return Err(ReloadError::NeedsRestart {
                key: "admin.listen",
                from: old.config.admin.listen.to_string(),
                to: loaded.config.admin.listen.to_string(),
            });
        }
        let next = Arc::new(Runtime::build(&loaded, Some(&old), &self.data.gates)?);
        let current: BTreeMap<String, (SocketAddr, Option<socket2::Socket>)> = self
            .listeners
            .lock()
            .await
            .values()
            .map(|t| (t.name.clone(), (t.configured, t.socket.try_clone().ok())))
            .collect();
        let bound = bind_new(&next, &current, None)?;
        self.data.runtime.store(next.clone());
        self.data.gates.reconfigure(&next.config.spill);
        self.control.reconfigure(&next.config);
        activation::activate(&next, Some(&old));
        // Listeners that were removed stop accepting; their connections drain.
        {
            let mut listeners = self.listeners.lock().await;
            let gone: Vec<String> = listeners.keys().filter(|n| !next.listeners.contains_key(*n)).cloned().collect();
            for name in gone {
                if let Some(task) = listeners.remove(&name) {
                    tracing::info!(listener = %name, "listener removed");
                    task.stop();
                }
            }
        }
        self.start_bound(bound).await?;
        Ok(loaded.version)
    }

    /// Stops accepting, asks every connection to finish, and waits up to
    /// `timeout` for them. Returns the number still open at the deadline.
    pub(crate) async fn shutdown(&self, timeout: Duration) -> usize {
        self.data.begin_shutdown();
        for (_, task) in std::mem::take(&mut *self.listeners.lock().await) {
            task.stop();
        }
        self.data.begin_drain();
        self.control.shutdown.cancel();
        let _ = tokio::time::timeout(timeout, self.data.connections.drained()).await;
        let open = self.data.connections.open();
        // The lines of the requests that ended during the drain.
        self.data.access_log.close(Duration::from_secs(2)).await;
        open
    }
}

/// Binds the listeners of `rt` that are new or whose address changed;
/// those a predecessor process hands over are taken, not bound, and an
/// address a current listener gives up (removed, renamed or re-addressed
/// in the same reload) is taken over from it (a duplicate of its socket):
/// the socket never closes, so no connection is refused, and no second
/// bind fails with "address in use".
fn bind_new(
    rt: &Runtime,
    current: &BTreeMap<String, (SocketAddr, Option<socket2::Socket>)>,
    mut takeover: Option<&mut Takeover>,
) -> Result<Vec<(String, tokio::net::TcpListener)>, ReloadError> {
    let mut out = Vec::new();
    for (name, l) in &rt.listeners {
        let addr = l.config.listen;
        if current.get(name).map(|(a, _)| a) == Some(&addr) {
            continue;
        }
        // Port 0 asks for any free port: nothing to take over.
        let vacated = (addr.port() != 0)
            .then(|| {
                current.iter().find(|(other, (at, _))| {
                    *at == addr && rt.listeners.get(*other).is_none_or(|o| o.config.listen != addr)
                })
            })
            .flatten()
            .and_then(|(other, (_, socket))| Some((other, socket.as_ref()?.try_clone().ok()?)));
        let socket = if let Some((from, socket)) = vacated {
            tracing::info!(listener = %name, %addr, from = %from, "listener takes the address over from another listener");
            listener::adopt(socket.into())
        } else {
            match takeover.as_deref_mut().and_then(|t| t.take_listener(name, addr)) {
                Some(socket) => listener::adopt(socket),
                None => listener::bind(addr),
            }
        }
        .map_err(|source| ReloadError::Bind { name: name.clone(), addr, source })?;
        out.push((name.clone(), socket));
    }
    Ok(out)
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
