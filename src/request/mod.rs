//! Pure facts about a client request that routing, the spill gate and the
//! upstream head must agree on: which host it is for ([`host`]) and the
//! path its rules match ([`path`]). No I/O, no clock.

pub(crate) mod host;
pub(crate) mod method;
pub(crate) mod path;
