//! AWS plumbing shared by the scale and DNS controllers: SDK client
//! construction (standard credential and endpoint chain, explicit timeouts),
//! one error type that says whether a retry may help, jittered backoff and a
//! client-side token bucket.
//!
//! Invariants: credentials are never logged or stored here; every API call
//! made through [`retry::Retry`] is bounded in time (SDK timeouts) and in
//! attempts, and every failure is counted in `spillway_aws_errors_total`.

pub mod backoff;
mod client;
pub mod error;
pub mod ratelimit;
pub mod retry;

pub use backoff::Backoff;
pub use client::{
    load_sdk_config, sdk_config_builder, ClientOptions, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, OPERATION_TIMEOUT,
    READ_TIMEOUT,
};
pub use error::{classify, ApiFuture, AwsError};
pub use ratelimit::{RateLimiter, TokenBucket};
pub use retry::Retry;
