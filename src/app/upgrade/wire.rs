//! The upgrade socket's framing: newline-ended JSON lines, and one frame
//! that carries file descriptors (`SCM_RIGHTS`, through `nix`): an 8-byte
//! big-endian length sent together with the descriptors, then that many
//! bytes of JSON. Blocking I/O on a `std` Unix stream with timeouts; the
//! callers run it off the async workers.
//!
//! Invariant: every descriptor received is owned (`OwnedFd`, close-on-exec
//! from `MSG_CMSG_CLOEXEC`) before anything can fail, so an error path
//! closes them all.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Most descriptors one handover carries (listeners plus the admin's).
pub(crate) const MAX_FDS: usize = 64;
/// Largest JSON document either side accepts.
const MAX_JSON: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("upgrade socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upgrade socket: {0}")]
    Sys(#[from] nix::errno::Errno),
    #[error("upgrade socket: malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("upgrade socket: {0}")]
    Protocol(String),
}

/// Sends `fds` and the JSON of `value` as one frame.
pub(crate) fn send_with_fds<T: serde::Serialize>(
    stream: &mut UnixStream,
    fds: &[RawFd],
    value: &T,
) -> Result<(), WireError> {
    if fds.len() > MAX_FDS {
        return Err(WireError::Protocol(format!("{} descriptors, at most {MAX_FDS} fit one handover", fds.len())));
    }
    let json = serde_json::to_vec(value)?;
    let len = (json.len() as u64).to_be_bytes();
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(&len)], cmsgs, MsgFlags::empty(), None)?;
    stream.write_all(&len[sent..])?;
    stream.write_all(&json)?;
    Ok(())
}

/// Receives one frame of [`send_with_fds`]: the descriptors and the value.
pub(crate) fn recv_with_fds<T: serde::de::DeserializeOwned>(
    stream: &mut UnixStream,
) -> Result<(Vec<OwnedFd>, T), WireError> {
    let mut len = [0u8; 8];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (got, fds) = {
        let mut iov = [IoSliceMut::new(&mut len)];
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these descriptors in
                // this process for us; nothing else owns them.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(WireError::Protocol(format!("more than {MAX_FDS} descriptors sent")));
        }
        (msg.bytes, fds)
    };
    if got == 0 {
        return Err(WireError::Protocol("closed before the handover".into()));
    }
    stream.read_exact(&mut len[got..])?;
    let n = u64::from_be_bytes(len);
    if n > MAX_JSON {
        return Err(WireError::Protocol(format!("a {n}-byte document is over {MAX_JSON} bytes")));
    }
    let mut json = vec![0; n as usize];
    stream.read_exact(&mut json)?;
    Ok((fds, serde_json::from_slice(&json)?))
}

/// Writes one JSON line.
pub(crate) fn send_line<T: serde::Serialize>(stream: &mut UnixStream, value: &T) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(())
}

/// Reads one JSON line (at most `MAX_JSON` bytes); EOF is an error.
pub(crate) fn recv_line<T: serde::de::DeserializeOwned>(stream: &mut UnixStream) -> Result<T, WireError> {
    let mut line = Vec::new();
    // One byte at a time through a fresh reader would lose what it
    // buffered past the newline; a `take` of a reference keeps the
    // stream's position exact only with a one-byte buffer.
    let mut reader = BufReader::with_capacity(1, (&mut *stream).take(MAX_JSON));
    reader.read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(WireError::Protocol("closed in the middle of a message".into()));
    }
    Ok(serde_json::from_slice(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_and_a_document_cross_in_one_frame() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        send_with_fds(&mut a, &[listener.as_raw_fd()], &serde_json::json!({ "addr": addr.to_string() })).unwrap();
        send_line(&mut a, &"after").unwrap();
        let (fds, doc): (Vec<OwnedFd>, serde_json::Value) = recv_with_fds(&mut b).unwrap();
        assert_eq!(fds.len(), 1);
        assert_eq!(doc["addr"], addr.to_string());
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr, "the same socket, not a copy of its address");
        assert_eq!(recv_line::<String>(&mut b).unwrap(), "after", "nothing read past the frame");
    }

    #[test]
    fn a_closed_peer_is_an_error_not_an_empty_handover() {
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(recv_with_fds::<serde_json::Value>(&mut b).is_err());
        assert!(recv_line::<serde_json::Value>(&mut b).is_err());
    }
}
