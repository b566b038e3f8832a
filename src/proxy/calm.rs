//! `GOAWAY ENHANCE_YOUR_CALM` for an HTTP/2 client over its cancel budget.
//!
//! hyper lets a server close an HTTP/2 connection only gracefully
//! (`GOAWAY NO_ERROR`). The h2 crate under it sends `ENHANCE_YOUR_CALM`
//! itself when more than `max_pending_accept_reset_streams` streams are
//! reset before they are accepted (its rapid-reset guard). So, to tell an
//! abusive client the truth, the connection's read side hands h2 — at a
//! frame boundary of what the client sent — a run of streams opened and
//! reset at once: h2's own guard trips, and h2 sends the `GOAWAY` with the
//! right code and last-stream id and closes. The made-up streams use only
//! static-table HPACK entries, so the decoder's state is not touched, and
//! they never reach the service (h2 rejects the connection first).
//!
//! [`FrameTracker`] follows the client's byte stream (preface, then 9-byte
//! frame headers and payloads) to know where frames begin and the highest
//! stream id the client opened; it is pure and fed with each read.

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const END_STREAM_END_HEADERS: u8 = 0x5;
const CANCEL: u32 = 0x8;

/// Where the client's byte stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameTracker {
    state: State,
    max_stream: u32,
    /// A header block (HEADERS or PUSH_PROMISE without END_HEADERS) is
    /// open: only its CONTINUATION frames may follow.
    in_header_block: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// This many preface bytes matched so far.
    Preface(usize),
    /// A frame header is being read (`filled` of its 9 bytes).
    Header { buf: [u8; 9], filled: usize },
    /// This many payload bytes of the current frame are still to come.
    Payload(usize),
    /// Not HTTP/2 (or lost track): never inject.
    Off,
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker { state: State::Preface(0), max_stream: 0, in_header_block: false }
    }
}

impl FrameTracker {
    /// Follows `bytes`, the next bytes the client sent.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Preface(n) => {
                    let take = (PREFACE.len() - *n).min(bytes.len());
                    if bytes[..take] != PREFACE[*n..*n + take] {
                        self.state = State::Off;
                        return;
                    }
                    *n += take;
                    bytes = &bytes[take..];
                    if *n == PREFACE.len() {
                        self.state = State::Header { buf: [0; 9], filled: 0 };
                    }
                }
                State::Header { buf, filled } => {
                    let take = (9 - *filled).min(bytes.len());
                    buf[*filled..*filled + take].copy_from_slice(&bytes[..take]);
                    *filled += take;
                    bytes = &bytes[take..];
                    if *filled == 9 {
                        let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                        let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                        if buf[3] == HEADERS {
                            self.max_stream = self.max_stream.max(stream);
                        }
                        if matches!(buf[3], HEADERS | PUSH_PROMISE | CONTINUATION) {
                            self.in_header_block = buf[4] & END_HEADERS == 0;
                        }
                        self.state =
                            if len == 0 { State::Header { buf: [0; 9], filled: 0 } } else { State::Payload(len) };
                    }
                }
                State::Payload(left) => {
                    let take = (*left).min(bytes.len());
                    *left -= take;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::Header { buf: [0; 9], filled: 0 };
                    }
                }
            }
        }
    }

    /// Between two whole frames of an HTTP/2 connection.
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { filled: 0, .. }) && !self.in_header_block
    }

    /// Whether this can still be HTTP/2.
    pub(crate) fn is_on(&self) -> bool {
        self.state != State::Off
    }

    /// The whole preface came: this is HTTP/2.
    pub(crate) fn past_preface(&self) -> bool {
        !matches!(self.state, State::Preface(_) | State::Off)
    }

    /// `n` streams, each opened (a bodiless `GET /`) and cancelled at once,
    /// with ids above every id the client used.
    pub(crate) fn reset_run(&self, n: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(n as usize * 25);
        let first = (self.max_stream + 2) | 1;
        for i in 0..n {
            let id = first + 2 * i;
            frame_header(&mut out, 3, HEADERS, END_STREAM_END_HEADERS, id);
            out.extend_from_slice(&[0x82, 0x86, 0x84]); // :method GET, :scheme http, :path /
            frame_header(&mut out, 4, RST_STREAM, 0, id);
            out.extend_from_slice(&CANCEL.to_be_bytes());
        }
        out
    }
}

fn frame_header(out: &mut Vec<u8>, len: u32, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let flags = if kind == HEADERS { END_HEADERS } else { 0 };
        frame_header(&mut out, payload.len() as u32, kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn follows_frames_split_anywhere_and_remembers_the_highest_stream() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        bytes.extend(frame(HEADERS, 7, &[0x82, 0x86, 0x84]));
        bytes.extend(frame(0x0, 7, &[1; 300])); // DATA
        bytes.extend(frame(HEADERS, 3, &[0x82]));
        for split in [1, 2, 5, 9, 24, 25, 33, 100, bytes.len()] {
            let mut t = FrameTracker::default();
            for chunk in bytes.chunks(split) {
                t.feed(chunk);
            }
            assert!(t.at_boundary(), "split {split}");
            assert_eq!(t.max_stream, 7);
        }
        let mut t = FrameTracker::default();
        t.feed(&bytes[..bytes.len() - 1]);
        assert!(!t.at_boundary(), "inside the last frame");
    }

    #[test]
    fn never_between_a_header_block_and_its_continuation() {
        let mut t = FrameTracker::default();
        t.feed(PREFACE);
        let mut open = Vec::new();
        frame_header(&mut open, 1, HEADERS, 0, 1); // no END_HEADERS
        open.push(0x82);
        t.feed(&open);
        assert!(!t.at_boundary(), "a CONTINUATION must come next");
        let mut cont = Vec::new();
        frame_header(&mut cont, 1, CONTINUATION, END_HEADERS, 1);
        cont.push(0x84);
        t.feed(&cont);
        assert!(t.at_boundary());
    }

    #[test]
    fn http1_turns_it_off() {
        let mut t = FrameTracker::default();
        t.feed(b"GET / HTTP/1.1\r\n");
        assert!(!t.is_on() && !t.at_boundary());
        let mut t = FrameTracker::default();
        t.feed(b"PRI * HTTP/1.1");
        assert!(!t.is_on());
    }

    #[test]
    fn the_reset_run_is_whole_frames_on_new_odd_streams() {
        let mut t = FrameTracker::default();
        t.feed(PREFACE);
        t.feed(&frame(HEADERS, 41, &[0x82]));
        let run = t.reset_run(3);
        assert_eq!(run.len(), 3 * (9 + 3 + 9 + 4));
        let mut follow = t.clone();
        follow.feed(&run);
        assert!(follow.at_boundary());
        assert_eq!(follow.max_stream, 47, "streams 43, 45, 47");
        assert_eq!(&run[5..9], &43u32.to_be_bytes());
    }
}
