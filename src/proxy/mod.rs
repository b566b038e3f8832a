//! The data plane: listeners (TCP, TLS, HTTP/1.1 and HTTP/2), the
//! per-request service, header rewriting, error responses and the
//! readiness endpoint.

mod access;
pub mod body;
mod calm;
mod conn;
mod dataplane;
pub(crate) mod error;
pub(crate) mod headers;
pub(crate) mod idle;
pub(crate) mod listener;
mod pin;
mod ready;
mod record;
pub(crate) mod service;
mod tunnel;

pub(crate) use conn::{ActiveRequest, ConnInfo};
pub(crate) use dataplane::DataPlane;
