//! The upstream chunked body decoder (`upstream::decode::ChunkedDecoder`),
//! read as the client reads it: the same wire gives the same body, trailers
//! and verdict however the bytes are split into reads, and the decoder
//! never takes bytes that follow the body.
#![no_main]

use bytes::BytesMut;
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use spillway::fuzzing::{Chunked, Piece};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The whole body, its trailers, and what was read past it.
    Body {
        data: Vec<u8>,
        trailers: Option<HeaderMap>,
        rest: Vec<u8>,
    },
    /// The wire ended inside the body.
    Cut {
        data: Vec<u8>,
    },
    Refused,
}

/// Feeds `wire` in reads of the sizes `splits` gives in turn (cycled).
fn read(wire: &[u8], splits: &[usize]) -> Outcome {
    let mut dec = Chunked::new();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let (mut fed, mut turn) = (0, 0);
    loop {
        let piece = match dec.decode(&mut buf) {
            Ok(p) => p,
            Err(_) => return Outcome::Refused,
        };
        match piece {
            Piece::Data(d) => {
                assert!(!d.is_empty(), "empty data piece");
                data.extend_from_slice(&d);
                match dec.at_end(&mut buf) {
                    Ok(true) => return Outcome::Body { data, trailers: dec.take_trailers(), rest: buf.to_vec() },
                    Ok(false) => {}
                    Err(_) => return Outcome::Refused,
                }
            }
            Piece::End => return Outcome::Body { data, trailers: dec.take_trailers(), rest: buf.to_vec() },
            Piece::NeedMore if fed == wire.len() => return Outcome::Cut { data },
            Piece::NeedMore => {
                let n = splits[turn % splits.len()];
                turn += 1;
                let end = (fed + n).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many split sizes follow (0-15); then the sizes; then the wire.
    let Some((&n, rest)) = input.split_first() else { return };
    let n = usize::from(n & 15).min(rest.len());
    let (sizes, wire) = rest.split_at(n);
    let mut splits: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();
    if splits.is_empty() {
        splits.push(7);
    }

    let whole = read(wire, &[wire.len().max(1)]);
    if let Outcome::Body { data, rest, .. } = &whole {
        assert!(data.len() <= wire.len());
        assert!(wire.ends_with(rest), "the decoder took bytes after the body");
    }
    let mut others = vec![read(wire, &splits)];
    if wire.len() <= 1024 {
        others.push(read(wire, &[1]));
    }
    for got in others {
        match (&whole, &got) {
            (Outcome::Body { data, trailers, rest }, Outcome::Body { data: d, trailers: t, rest: r }) => {
                assert_eq!(data, d, "body differs by split {splits:?}");
                assert_eq!(trailers, t, "trailers differ by split {splits:?}");
                assert!(rest.starts_with(r), "read past the body differs by split {splits:?}");
            }
            (Outcome::Cut { data }, Outcome::Cut { data: d }) => assert_eq!(data, d, "split {splits:?}"),
            (Outcome::Refused, Outcome::Refused) => {}
            (a, b) => panic!("verdict differs by split {splits:?}: whole {a:?}, split {b:?}"),
        }
    }
});
