//! AWS plumbing shared by the scale and DNS controllers: SDK client
//! construction (standard credential and endpoint chain, explicit timeouts),
//! one error type that says whether a retry may help, jittered backoff and a
//! client-side token bucket.
//!
//! Invariants: credentials are never logged or stored here; every API call
//! made through [`retry::Retry`] is bounded in time (SDK timeouts) and in
//! attempts, and every failure is counted in `spillway_aws_errors_total`.

pub(crate) mod backoff;
mod client;
pub(crate) mod error;
pub(crate) mod ratelimit;
pub(crate) mod retry;

pub(crate) use backoff::Backoff;
pub(crate) use client::load_sdk_config;
pub use client::{sdk_config_builder, ClientOptions};
pub(crate) use error::{classify, ApiFuture, AwsError};
pub(crate) use ratelimit::RateLimiter;
pub(crate) use retry::Retry;
