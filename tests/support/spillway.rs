//! The real `spillway` binary as a child process.
//!
//! The config is written into a temporary directory; every address in test
//! configs is `127.0.0.1:0`, and the bound addresses are read from the
//! `listening <name> <addr>` lines the binary prints before `ready`. A thread
//! keeps reading stdout so the pipe never fills. stderr (the log) goes to a
//! file that is printed when a test fails. The child is killed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client;
use super::tls::write_atomic;
use super::{eventually, STARTUP};

pub const BIN: &str = env!("CARGO_BIN_EXE_spillway");

pub struct Spillway {
    child: Child,
    dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    pub admin: SocketAddr,
    listeners: HashMap<String, SocketAddr>,
    /// The process serving now: the child, or the successor of the last
    /// `upgrade` (reparented to this test process, a subreaper).
    serving: u32,
}

/// What one `Spillway::upgrade` saw.
#[derive(Debug)]
pub struct Upgrade {
    pub successor: u32,
    /// The predecessor's exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// From the signal to the predecessor's `handed over` line.
    pub handover: Duration,
    /// From the signal to the predecessor's exit (its drain included).
    pub exited: Duration,
}

impl Spillway {
    /// Starts the binary on `config` in a fresh directory and waits for `ready`.
    pub async fn start(config: &str) -> Spillway {
        Spillway::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// Starts with extra environment variables (e.g. an AWS emulator's endpoint).
    pub async fn start_env(config: &str, env: &[(&str, String)]) -> Spillway {
        Spillway::start_in_env(tempfile::tempdir().unwrap(), config, env).await
    }

    /// Starts in `dir` (which may already hold certificates the config names).
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> Spillway {
        Spillway::start_in_env(dir, config, &[]).await
    }

    /// Starts in `dir` with extra environment variables (e.g. an AWS
    /// endpoint override pointing at moto, and dummy credentials).
    pub async fn start_in_env(dir: tempfile::TempDir, config: &str, env: &[(&str, String)]) -> Spillway {
        Spillway::launch(dir, config, &["run", "--threads", "2"], env).await
    }

    /// Starts `spillway <args> --config F` with extra environment variables
    /// (e.g. `AWS_ENDPOINT_URL` and a distinct `AWS_ACCESS_KEY_ID` per instance).
    pub async fn start_with_env(config: &str, args: &[&str], env: &[(&str, String)]) -> Spillway {
        Spillway::launch(tempfile::tempdir().unwrap(), config, args, env).await
    }

    async fn launch(dir: tempfile::TempDir, config: &str, args: &[&str], env: &[(&str, String)]) -> Spillway {
        let config_path = dir.path().join("spillway.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr_path = dir.path().join("spillway.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn spillway");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let serving = child.id();
        let mut sw = Spillway {
            serving,
            child,
            dir,
            config_path,
            stderr_path,
            lines,
            admin: "0.0.0.0:0".parse().unwrap(),
            listeners: HashMap::new(),
        };
        sw.wait_ready().await;
        sw
    }

    async fn wait_ready(&mut self) {
        let lines = self.lines.clone();
        let mut exited = None;
        let deadline = tokio::time::Instant::now() + STARTUP;
        while !lines.lock().unwrap().iter().any(|l| l == "ready") {
            if let Some(status) = self.child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "spillway not ready within {STARTUP:?}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(status) = exited {
            panic!("spillway exited before ready: {status}\n{}", self.log());
        }
        for line in lines.lock().unwrap().iter() {
            if let Some((name, addr)) = parse_listening(line) {
                if name == "admin" {
                    self.admin = addr;
                } else {
                    self.listeners.insert(name, addr);
                }
            }
        }
    }

    /// Starts with `spillway.toml` a symlink to `conf/live.toml`. Editing the
    /// target with `write_unwatched` does not touch the watched directory, so
    /// only SIGHUP or `POST /reload` apply the change: the test knows which
    /// trigger did it.
    pub async fn start_linked(config: &str) -> Spillway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/live.toml"), config).unwrap();
        std::os::unix::fs::symlink("conf/live.toml", dir.path().join("spillway.toml")).unwrap();
        Spillway::start_in(dir, config).await
    }

    /// The version `spillway check` reports for `text` (checked in the
    /// config's directory so relative file paths resolve the same way).
    pub fn version_of(&self, text: &str) -> String {
        let path = self.dir().join("version-check.toml.txt");
        std::fs::write(&path, text).unwrap();
        let (code, stdout, stderr) = check(&path);
        assert_eq!(code, 0, "config does not validate:\n{stderr}");
        let (_, rest) = stdout.split_once("(version ").unwrap_or_else(|| panic!("no version in {stdout:?}"));
        rest.split(')').next().unwrap().to_string()
    }

    /// Replaces the symlink target of `start_linked` (no file event fires).
    pub fn write_unwatched(&self, text: &str) {
        write_atomic(&self.dir().join("conf/live.toml"), text.as_bytes());
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the process serving now (see `upgrade`).
    pub fn pid(&self) -> u32 {
        self.serving
    }

    /// Sends SIGUSR2 to the serving process and waits until it has handed
    /// over to its successor (the `handed over to PID` line) and exited.
    pub async fn upgrade(&mut self) -> Upgrade {
        let seen = self.handed_over().len();
        let started = tokio::time::Instant::now();
        self.signal("USR2");
        let what = format!("pid {} to hand over (SIGUSR2)", self.serving);
        eventually(Duration::from_secs(60), &what, || async { self.handed_over().len() > seen }).await;
        let handover = started.elapsed();
        let successor = self.handed_over()[seen];
        let exit_code = self.wait_pid(self.serving, Duration::from_secs(60)).await;
        let exited = started.elapsed();
        self.serving = successor;
        Upgrade { successor, exit_code, handover, exited }
    }

    /// From now on `pid` (a successor) is the serving process.
    pub fn adopt(&mut self, pid: u32) {
        self.serving = pid;
    }

    /// The pids of every `handed over to PID` line so far.
    pub fn handed_over(&self) -> Vec<u32> {
        self.stdout_lines().iter().filter_map(|l| l.strip_prefix("handed over to ")?.parse().ok()).collect()
    }

    /// Waits (bounded) for process `pid` (the child or an adopted
    /// successor) to exit: its exit code, `None` when a signal ended it.
    pub async fn wait_pid(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        if pid == self.child.id() {
            return self.wait_exit(timeout).await.code();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match waitpid(nix::unistd::Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Some(code),
                Ok(WaitStatus::Signaled(..)) => return None,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pid {pid} did not exit within {timeout:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address listener `name` was bound to at start.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self.listeners.get(name).unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listeners))
    }

    /// `http://127.0.0.1:port{path}` on listener `name`.
    pub fn url(&self, name: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(name))
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The most recent address printed for listener `name` (after reloads).
    pub fn latest_addr(&self, name: &str) -> Option<SocketAddr> {
        self.stdout_lines().iter().rev().filter_map(|l| parse_listening(l)).find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Waits until the latest address printed for listener `name` differs
    /// from `old` (stdout is read by a thread: it may lag the admin API).
    pub async fn wait_listening(&self, name: &str, old: Option<SocketAddr>) -> SocketAddr {
        let what = format!("a new `listening {name}` line");
        eventually(Duration::from_secs(10), &what, || async { self.latest_addr(name).is_some_and(|a| Some(a) != old) })
            .await;
        self.latest_addr(name).unwrap()
    }

    /// The log so far, without terminal colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr_path).unwrap_or_default())
    }

    /// Replaces the config file atomically (temp file + rename).
    pub fn write_config(&self, text: &str) {
        write_atomic(&self.config_path, text.as_bytes());
    }

    pub fn signal(&self, sig: &str) {
        if sig == "USR2" {
            // Successors outlive their parents: this process reaps them.
            nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        }
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig} failed");
    }

    /// `(VmRSS, VmHWM)` of the process, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub async fn status(&self) -> serde_json::Value {
        let resp = client::get(&self.admin_url("/status")).await.expect("GET /status");
        assert_eq!(resp.status, 200);
        resp.json()
    }

    /// The active config version as `/status` reports it.
    pub async fn version(&self) -> String {
        self.status().await["config"]["version"].as_str().unwrap().to_string()
    }

    /// The sum of every sample of metric `name` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let resp = client::get(&self.admin_url("/metrics")).await.expect("GET /metrics");
        metric_value(&resp.text(), name)
    }

    /// `POST /reload` (as JSON, which the admin asks of a call without a
    /// token): the status and the JSON answer.
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let json = vec![("content-type", "application/json".to_string())];
        let resp =
            client::request(http::Method::POST, &self.admin_url("/reload"), json, &[]).await.expect("POST /reload");
        (resp.status, resp.json())
    }

    /// Waits until `/status` reports `version` as the active config.
    pub async fn wait_version(&self, version: &str) {
        eventually(Duration::from_secs(10), &format!("config version {version}"), || async {
            self.version().await == version
        })
        .await;
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "spillway did not exit within {timeout:?}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spillway {
    fn drop(&mut self) {
        if self.serving != self.child.id() {
            let pid = nix::unistd::Pid::from_raw(self.serving as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- spillway log ({}) ----\n{}", self.config_path.display(), self.log());
        }
    }
}

/// Removes `ESC [ ... m` colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let mut words = line.strip_prefix("listening ")?.split_whitespace();
    let name = words.next()?.to_string();
    let addr = words.next()?.parse().ok()?;
    Some((name, addr))
}

/// Sums the samples of a Prometheus metric (any labels).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Runs `spillway check --config path`: (exit code, stdout, stderr).
pub fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(BIN).args(["check", "--config"]).arg(path).output().expect("run spillway check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
