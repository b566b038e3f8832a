//! Entry points for the `cargo fuzz` targets under `fuzz/`: one thin
//! wrapper per target over the real internal function, so the fuzzers
//! exercise the code the proxy runs without the internals becoming public.
//! Not an API: nothing outside `fuzz/` should call these.
//!
//! The wrappers translate only types (crate-private ones to plain or
//! `http` ones); every decision stays in the function they call.

use std::net::IpAddr;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, Version};

use crate::config::{self, ConfigError};
use crate::gate::Gates;
use crate::proxy::headers::{self, ClientSide};
use crate::runtime::{BuildError, Runtime};
use crate::upstream::decode::{ChunkedDecoder, Decoded};
use crate::upstream::h1::{self, RequestFraming, ResponseFraming, WireError};

/// A wire-format error from the upstream codec, as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl From<WireError> for Refused {
    fn from(e: WireError) -> Refused {
        Refused(e.to_string())
    }
}

/// How a response body is delimited (`upstream::h1::ResponseFraming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
    Upgrade,
}

impl From<ResponseFraming> for Framing {
    fn from(f: ResponseFraming) -> Framing {
        match f {
            ResponseFraming::Empty => Framing::Empty,
            ResponseFraming::Length(n) => Framing::Length(n),
            ResponseFraming::Chunked => Framing::Chunked,
            ResponseFraming::UntilClose => Framing::UntilClose,
            ResponseFraming::Upgrade => Framing::Upgrade,
        }
    }
}

/// A parsed upstream response head (`upstream::h1::ResponseHead`), with the
/// bytes the parser took out of the buffer and what it left there.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    pub keep_alive: bool,
    pub consumed: usize,
    pub rest: Bytes,
}

/// `upstream::h1::parse_response_head` over `input`, as the answer to a
/// request with `method`. `Ok(None)`: incomplete.
pub fn parse_response_head(input: &[u8], method: &Method) -> Result<Option<ResponseHead>, Refused> {
    let mut buf = BytesMut::from(input);
    let Some(head) = h1::parse_response_head(&mut buf, method)? else { return Ok(None) };
    Ok(Some(ResponseHead {
        status: head.status,
        version: head.version,
        headers: head.headers,
        framing: head.framing.into(),
        keep_alive: head.keep_alive,
        consumed: input.len() - buf.len(),
        rest: buf.freeze(),
    }))
}

/// The names `upstream::h1::is_hop_by_hop` says are never forwarded as is.
pub fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    h1::is_hop_by_hop(name)
}

/// What one call of the chunked decoder produced (`upstream::decode::Decoded`).
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Bytes),
    NeedMore,
    End,
}

/// The upstream chunked body decoder (`upstream::decode::ChunkedDecoder`).
#[derive(Debug, Default)]
pub struct Chunked(ChunkedDecoder);

impl Chunked {
    pub fn new() -> Chunked {
        Chunked::default()
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Piece, Refused> {
        Ok(match self.0.decode(buf)? {
            Decoded::Data(d) => Piece::Data(d),
            Decoded::NeedMore => Piece::NeedMore,
            Decoded::End => Piece::End,
        })
    }

    pub fn at_end(&mut self, buf: &mut BytesMut) -> Result<bool, Refused> {
        Ok(self.0.at_end(buf)?)
    }

    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.0.take_trailers().map(|t| *t)
    }
}

/// The body framing the upstream request head announces (`upstream::h1::RequestFraming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// The upstream request head the proxy writes for `req` from a client at
/// `client_ip` (over TLS or not): `upstream::h1::encode_request_head` with
/// the header lines of `proxy::headers::write_request_headers`, the target
/// and the upgrade decision taken as `upstream::client::Conn::send` and
/// `proxy::service` take them.
pub fn write_request_head(req: &Request<()>, framing: BodyFraming, client_ip: IpAddr, tls: bool) -> BytesMut {
    let framing = match framing {
        BodyFraming::Empty => RequestFraming::Empty,
        BodyFraming::Length(n) => RequestFraming::Length(n),
        BodyFraming::Chunked => RequestFraming::Chunked,
    };
    let upgrade = headers::is_websocket_upgrade(req.version(), req.method(), req.headers());
    let forwarded_for = headers::forwarded_for_value(client_ip);
    let client = ClientSide {
        forwarded_for: &forwarded_for,
        trusted: false,
        tls,
        version: req.version(),
        authority: crate::request::host::target_authority(req.uri()),
        request_id: None,
        pin_header: None,
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = BytesMut::new();
    h1::encode_request_head(&mut out, req.method(), target, framing, |out| {
        headers::write_request_headers(out, req.headers(), &client, upgrade)
    });
    out
}

/// Why a config was refused: by `config::from_str`, or when its runtime
/// snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigRefused {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The routes of a runtime snapshot built from a config.
pub struct Routes(Runtime);

/// The route a request matched: what the lookup and `never_spill` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: String,
    pub never_spill: Vec<String>,
    /// The request path is one the route never spills.
    pub path_never_spills: bool,
}

impl Routes {
    /// `config::from_str`, then `Runtime::build` (paths resolve against `base_dir`).
    pub fn from_config(text: &str, base_dir: &Path) -> Result<Routes, ConfigRefused> {
        let loaded = config::from_str(text, Path::new("fuzz.toml"), base_dir)?;
        let gates = Gates::new(&loaded.config.spill);
        Ok(Routes(Runtime::build(&loaded, None, &gates)?))
    }

    /// Every route, in the order the lookup tries them.
    pub fn all(&self) -> Vec<Matched> {
        self.0.routes.iter().map(|r| matched(r, None)).collect()
    }

    /// What the service does with a request target's path: normalise it,
    /// then `Runtime::route` for `host` and `Route::never_spills`.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<Matched> {
        let path = crate::request::path::normalize(path);
        let ignore_case = self.0.config.spill.never_spill_ignore_case;
        self.0.route(host, &path).map(|r| matched(r, Some((&path, ignore_case))))
    }
}

fn matched(route: &crate::runtime::Route, path: Option<(&str, bool)>) -> Matched {
    Matched {
        name: route.config.name.clone(),
        host: route.config.host.clone(),
        path_prefix: route.config.path_prefix.clone(),
        never_spill: route.config.never_spill.clone(),
        path_never_spills: path.is_some_and(|(p, ignore_case)| route.never_spills(p, ignore_case)),
    }
}
