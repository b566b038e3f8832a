//! The scale controller: keeps the AWS Auto Scaling group's desired capacity
//! ahead of the overflow the gate will send to the cloud.
//!
//! `forecast.rs` and `policy.rs` are pure (inputs and `now` as arguments);
//! `controller.rs` is the loop shell; `sdk.rs` is the real [`ScalingApi`].
//! Invariant: the API is called only when the desired capacity changes, and
//! only with a value inside the group's own `[min, max]`.

mod api;
pub mod controller;
pub mod forecast;
pub mod policy;
mod sdk;

pub use api::{GroupState, ScalingApi};
pub use controller::{CloudCapacity, ScaleController, ScaleStatus};
pub use policy::{ScaleDecision, ScalePolicy, ScaleReason};
pub use sdk::AutoScalingApi;
