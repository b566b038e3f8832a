//! The systemd readiness protocol (`sd_notify`), enough for `Type=notify`
//! with `NotifyAccess=all`: a process that is ready says so and names
//! itself the main process, so a successor started by an upgrade becomes
//! the service's main process before its predecessor exits. Without
//! `$NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `READY=1` and `MAINPID=<this process>`; an error is logged only.
pub fn notify_ready() {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let message = format!("MAINPID={}\nREADY=1\n", std::process::id());
    if let Err(e) = send(&target, message.as_bytes()) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

fn send(target: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    match target.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)?;
        }
        None => {
            socket.send_to(message, target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_socket_receives_ready_and_the_main_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
