//! Upstream pools: endpoints, load balancing (P2C over PeakEWMA), active
//! health probes and passive ejection, and the pooled client that carries
//! requests to them.

pub(crate) mod balance;
pub(crate) mod client;
pub(crate) mod connector;
pub(crate) mod decode;
pub(crate) mod endpoint;
pub(crate) mod h1;
pub(crate) mod health;
pub(crate) mod pool;
pub(crate) mod probe;
pub(crate) mod retry;

pub(crate) use endpoint::Endpoint;
pub(crate) use pool::{Pool, PoolError};
