//! Spillway: a hybrid burst-routing edge proxy.
//!
//! Requests go to the on-prem pool first; when a burst pushes the pool past
//! its concurrency limit or latency SLO, the overflow that may safely leave
//! (reads, from clients that did not just write) spills to the cloud pool.
//! See DESIGN.md for the three loops (gate, DNS, scale) and the module map.

#![warn(unreachable_pub)]

pub(crate) mod accesslog;
pub mod app;
pub mod aws;
pub mod burst;
pub(crate) mod clock;
pub(crate) mod cloudwatch;
pub mod config;
pub mod control;
pub(crate) mod coord;
pub mod demo;
pub(crate) mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod gate;
pub(crate) mod notifications;
pub mod proxy;
pub(crate) mod request;
pub(crate) mod runtime;
pub(crate) mod scale;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub(crate) mod upstream;

pub use app::{sentinel, start, start_process, Running, Sentinel, StartError, StartOptions};
