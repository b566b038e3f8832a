//! Spillway: a hybrid burst-routing edge proxy.
//!
//! Requests go to the on-prem pool first; when a burst pushes the pool past
//! its concurrency limit or latency SLO, the overflow that may safely leave
//! (reads, from clients that did not just write) spills to the cloud pool.
//! See DESIGN.md for the three loops (gate, DNS, scale) and the module map.

pub mod app;
pub mod aws;
pub mod burst;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod dns;
pub mod gate;
pub mod notifications;
pub mod proxy;
pub mod runtime;
pub mod scale;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use app::{start, start_with, ControllerApis, Running, StartError};
