//! Upstream pools: endpoints, load balancing (P2C over PeakEWMA), active
//! health probes and passive ejection, and the pooled client that carries
//! requests to them.

pub mod balance;
pub mod client;
pub mod connector;
pub mod decode;
pub mod endpoint;
pub mod h1;
pub mod health;
pub mod pool;
pub mod probe;
pub mod retry;

pub use endpoint::Endpoint;
pub use pool::{Pool, PoolError};
