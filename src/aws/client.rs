//! Builds the shared `SdkConfig`: the standard AWS credential and endpoint
//! chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_AUTO_SCALING`,
//! `AWS_ENDPOINT_URL_ROUTE_53`, profiles, instance roles), with explicit
//! timeouts so a controller never hangs on a server that accepts and stalls.
//!
//! The SDK's own retries are off (one attempt): retries are Spillway's
//! ([`super::Retry`]), jittered, counted and visible in status.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// What the caller may override; everything else comes from the standard chain.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Region for Auto Scaling (Route 53 is global); `None`: from the chain.
    pub region: Option<String>,
    /// Endpoint override (a local emulator); `None`: `AWS_ENDPOINT_URL*` or the real service.
    pub endpoint_url: Option<String>,
}

/// A loader with Spillway's timeouts and retry policy; callers may add to it
/// (e.g. tests set static dummy credentials) before `load()`.
pub fn sdk_config_builder(options: &ClientOptions) -> ConfigLoader {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(1));
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// Loads the shared config from the standard chain.
pub(crate) async fn load_sdk_config(options: &ClientOptions) -> SdkConfig {
    sdk_config_builder(options).load().await
}
