//! Spillway: a hybrid burst-routing edge proxy.
//!
//! Requests go to the on-prem pool first; when a burst pushes the pool past
//! its concurrency limit or latency SLO, the overflow that may safely leave
//! (reads, from clients that did not just write) spills to the cloud pool.
//! See DESIGN.md for the three loops (gate, DNS, scale) and the module map.

pub mod aws;
pub mod config;
pub mod control;
pub mod dns;
pub mod scale;
