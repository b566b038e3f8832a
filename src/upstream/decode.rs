//! Response body decoding for the upstream hop, without I/O: one `Decoder`
//! for the three ways a body is delimited (RFC 9112 §6.3) — a
//! `Content-Length`, chunked transfer coding, or the upstream closing the
//! connection — after hyper's `proto/h1/decode.rs`.
//!
//! Invariants: the decoder only ever takes bytes of its own body out of the
//! buffer (what follows stays for whoever reads next); data comes back as
//! slices of the buffer, never copied; `at_end` consumes framing only, never
//! data. Chunk-size lines and trailer sections are bounded.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::h1::{may_trail, trim_ows, WireError};

/// What a decoder produced from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The buffer ends before the body does: read more.
    NeedMore,
    /// The body is complete (for chunked: the last chunk and the trailer
    /// section were consumed).
    End,
}

/// How a response body ends, and how much of it is left.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Everything until the upstream closes the connection.
    Eof,
}

impl Decoder {
    pub(crate) fn chunked() -> Decoder {
        Decoder::Chunked(ChunkedDecoder::default())
    }

    /// Takes the next piece of the body out of `buf`: at most what is
    /// buffered, as a slice of it.
    #[inline]
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        match self {
            Decoder::Length(0) => Ok(Decoded::End),
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = (buf.len() as u64).min(*left) as usize;
                *left -= take as u64;
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Decoder::Chunked(dec) => dec.decode(buf),
            Decoder::Eof if buf.is_empty() => Ok(Decoded::NeedMore),
            Decoder::Eof => Ok(Decoded::Data(buf.split().freeze())),
        }
    }

    /// Whether the body's end is already in `buf` (for chunked: consumes
    /// the framing up to the next data, never data). Asked after data, so
    /// the end is seen with the last of it.
    #[inline]
    pub(crate) fn at_end(&mut self, buf: &mut BytesMut) -> Result<bool, WireError> {
        match self {
            Decoder::Length(left) => Ok(*left == 0),
            Decoder::Chunked(dec) => dec.at_end(buf),
            Decoder::Eof => Ok(false),
        }
    }

    /// The chunked body's trailer fields, once it is done (None if there
    /// were none, or for other framings).
    pub(crate) fn take_trailers(&mut self) -> Option<Box<HeaderMap>> {
        match self {
            Decoder::Chunked(dec) => dec.take_trailers(),
            Decoder::Length(_) | Decoder::Eof => None,
        }
    }

    /// What the upstream closing the connection means here: the end of a
    /// close-delimited body (`Ok`), or a body cut short by this many bytes
    /// (`Err`; 0 when the framing does not say how many).
    pub(crate) fn at_close(&self) -> Result<(), u64> {
        match self {
            Decoder::Eof => Ok(()),
            Decoder::Length(left) => Err(*left),
            Decoder::Chunked(_) => Err(0),
        }
    }

    /// Body bytes still to come, when the framing says.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(left) => Some(*left),
            Decoder::Chunked(_) | Decoder::Eof => None,
        }
    }
}

/// Incremental decoder for `Transfer-Encoding: chunked`. Trailer fields are
/// collected (`take_trailers`) so they can travel on as trailers, which
/// HTTP/2 clients (gRPC-web and the like) read; malformed ones and those
/// `h1::may_trail` bars are dropped.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    trailers: Option<Box<HeaderMap>>,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    Done,
}

/// Longest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

impl ChunkedDecoder {
    /// The trailer fields, once the body is done (None if there were none).
    pub(crate) fn take_trailers(&mut self) -> Option<Box<HeaderMap>> {
        self.trailers.take()
    }

    /// Consumes framing from `buf` and returns the next piece of data, at
    /// most what is buffered (a slice of it, not a copy).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        self.step(buf, true)
    }

    /// Consumes framing only, up to the next data: whether the body's end
    /// (last chunk and trailers) is already in `buf`.
    pub(crate) fn at_end(&mut self, buf: &mut BytesMut) -> Result<bool, WireError> {
        Ok(self.step(buf, false)? == Decoded::End)
    }

    fn step(&mut self, buf: &mut BytesMut, want_data: bool) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(size) = size_line(buf)? else { return Ok(Decoded::NeedMore) };
                    self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() || !want_data {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(take).freeze();
                    self.state =
                        if take as u64 == left { ChunkState::DataEnd } else { ChunkState::Data(left - take as u64) };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("missing CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    if !self.trailer_line(buf)? {
                        return Ok(Decoded::NeedMore);
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }

    /// Consumes one trailer line (the empty one ends the body); false when
    /// the line is not all here yet.
    fn trailer_line(&mut self, buf: &mut BytesMut) -> Result<bool, WireError> {
        let Some(eol) = find_crlf(buf) else {
            if self.trailer_bytes + buf.len() > MAX_TRAILERS {
                return Err(WireError::Chunked("trailer section too long"));
            }
            return Ok(false);
        };
        self.trailer_bytes += eol + 2;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(WireError::Chunked("trailer section too long"));
        }
        if eol == 0 {
            self.state = ChunkState::Done;
        } else if let Some((name, value)) = trailer_field(&buf[..eol]) {
            self.trailers.get_or_insert_with(Box::default).append(name, value);
        }
        buf.advance(eol + 2);
        Ok(true)
    }
}

/// Consumes one chunk-size line (extensions ignored) and returns the size;
/// None when the line is not all here yet.
fn size_line(buf: &mut BytesMut) -> Result<Option<u64>, WireError> {
    let Some(eol) = find_crlf(buf) else {
        // A line of MAX_CHUNK_LINE bytes is accepted whole, so its CR may
        // already be here while the LF is not: the verdict must not depend
        // on where a read ended.
        let complete_so_far = buf.len() - usize::from(buf.last() == Some(&b'\r'));
        if complete_so_far > MAX_CHUNK_LINE {
            return Err(WireError::Chunked("chunk size line too long"));
        }
        return Ok(None);
    };
    if eol > MAX_CHUNK_LINE {
        return Err(WireError::Chunked("chunk size line too long"));
    }
    let line = &buf[..eol];
    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let digits = trim_ows(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = (d as char).to_digit(16).ok_or(WireError::Chunked("invalid chunk size"))?;
        size = size * 16 + u64::from(v);
    }
    buf.advance(eol + 2);
    Ok(Some(size))
}

/// `name: value` of one trailer line, if well-formed and a field that may
/// travel as a trailer (`h1::may_trail`, the rule request trailers follow too).
fn trailer_field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = HeaderValue::from_bytes(trim_ows(&line[colon + 1..])).ok()?;
    may_trail(&name).then_some((name, value))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::h1::{chunk_prefix, chunked_end};

    #[derive(Debug, PartialEq)]
    enum Failure {
        Wire(WireError),
        /// The upstream closed this many bytes short (0: unknown).
        Cut(u64),
    }

    impl From<WireError> for Failure {
        fn from(e: WireError) -> Failure {
            Failure::Wire(e)
        }
    }

    /// Reads a body as the client does: `wire` arrives `split` bytes at a
    /// time, the end is looked for after each piece of data, and the
    /// upstream closes after the last byte. Returns the body and what was
    /// left in the buffer after it.
    fn read_body(mut dec: Decoder, wire: &[u8], split: usize) -> Result<(Vec<u8>, Vec<u8>), Failure> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => {
                    out.extend_from_slice(&d);
                    if dec.at_end(&mut buf)? {
                        return Ok((out, buf.to_vec()));
                    }
                }
                Decoded::End => return Ok((out, buf.to_vec())),
                Decoded::NeedMore if fed == wire.len() => {
                    dec.at_close().map_err(Failure::Cut)?;
                    return Ok((out, buf.to_vec()));
                }
                Decoded::NeedMore => {
                    let end = (fed + split).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    const CHUNKED: &[u8] = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn every_framing_decodes_at_every_split() {
        // (decoder, wire, body, what may be left after it)
        type Case = (fn() -> Decoder, &'static [u8], &'static [u8], &'static [u8]);
        let cases: [Case; 3] = [
            (|| Decoder::Length(16), b"hello 0123456789NEXT", b"hello 0123456789", b"NEXT"),
            (Decoder::chunked, CHUNKED, b"hello 0123456789", b"NEXT"),
            (|| Decoder::Eof, b"hello 0123456789NEXT", b"hello 0123456789NEXT", b""),
        ];
        for (new, wire, body, after) in cases {
            for split in 1..=wire.len() {
                let (got, left) = read_body(new(), wire, split).unwrap();
                assert_eq!(got, body, "split {split} of {:?}", String::from_utf8_lossy(wire));
                // Bytes after the body stay for the next response.
                assert!(after.starts_with(&left), "split {split}: left {left:?}");
            }
        }
    }

    #[test]
    fn a_close_before_the_end_cuts_the_body_and_a_close_delimited_one_ends() {
        let wire = &CHUNKED[..CHUNKED.len() - 10];
        for split in 1..=wire.len() {
            assert_eq!(read_body(Decoder::Length(10), b"abcd", split), Err(Failure::Cut(6)));
            assert_eq!(read_body(Decoder::chunked(), wire, split), Err(Failure::Cut(0)));
        }
        assert_eq!(read_body(Decoder::Eof, b"", 1).unwrap().0, b"");
        assert_eq!(read_body(Decoder::Length(0), b"NEXT", 1).unwrap(), (vec![], vec![]));
        assert_eq!((Decoder::Length(3).remaining(), Decoder::Eof.remaining()), (Some(3), None));
    }

    #[test]
    fn trailers_are_collected_and_limits_hold_with_or_without_crlf() {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\nX-Sum: 7\r\nbad line\r\nConnection: close\r\n\r\n"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"a")));
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::End);
        let t = dec.take_trailers().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t["x-sum"], "7");
        // A line of exactly the limit is accepted however the reads split
        // it (fuzz finding: split between its CR and LF it was refused).
        let edge = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE - 2));
        for split in [1, 17, MAX_CHUNK_LINE, MAX_CHUNK_LINE + 1, edge.len()] {
            let mut dec = ChunkedDecoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in edge.as_bytes().chunks(split) {
                buf.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut buf).unwrap() {
                        Decoded::Data(d) => got.extend_from_slice(&d),
                        Decoded::End => break,
                        _ => break,
                    }
                }
            }
            assert_eq!(got, b"a", "split {split}");
        }
        // A chunk-size line over the limit is refused even when complete.
        let long = format!("1;{}\r\na\r\n", "e".repeat(MAX_CHUNK_LINE));
        let mut buf = BytesMut::from(long.as_str());
        assert!(ChunkedDecoder::default().decode(&mut buf).is_err());
        // So is a trailer section of many short lines.
        let many = format!("0\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_TRAILERS / 8 + 1));
        let mut buf = BytesMut::from(many.as_str());
        assert!(ChunkedDecoder::default().decode(&mut buf).is_err());
        // Only a chunked body has trailers.
        assert!(Decoder::Length(1).take_trailers().is_none());
    }

    #[test]
    fn looking_for_the_end_never_consumes_data() {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"2\r\nab\r\n1\r\n \r\n0\r\n\r\n"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"ab")));
        assert!(!dec.at_end(&mut buf).unwrap());
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b" ")));
        assert!(dec.at_end(&mut buf).unwrap());
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"1234567890123456\r\n", b";\r\n"] {
            for split in [1, 64] {
                let got = read_body(Decoder::chunked(), bad, split);
                assert!(matches!(got, Err(Failure::Wire(WireError::Chunked(_)))), "{:?}", String::from_utf8_lossy(bad));
            }
        }
    }

    #[test]
    fn chunk_framing_round_trips() {
        let mut wire = Vec::new();
        for part in [&b"abc"[..], &[b'x'; 300]] {
            wire.extend_from_slice(&chunk_prefix(part.len()));
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("1"));
        wire.extend_from_slice(&chunked_end(Some(&t)));
        let (body, _) = read_body(Decoder::chunked(), &wire, 7).unwrap();
        assert_eq!(body.len(), 303);
    }
}
