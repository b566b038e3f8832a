//! The scale controller: keeps the AWS Auto Scaling group's desired capacity
//! ahead of the overflow the gate will send to the cloud.
//!
//! `forecast.rs` and `policy.rs` are pure (inputs and `now` as arguments);
//! `controller.rs` is the loop shell; `sdk.rs` is the real [`ScalingApi`];
//! `drill.rs` runs a DR drill against the group (raise, time, restore).
//! Invariant: the API is called only when the desired capacity changes, and
//! only with a value inside the group's own `[min, max]`.

mod api;
pub(crate) mod controller;
pub(crate) mod drill;
pub(crate) mod forecast;
pub(crate) mod policy;
mod sdk;

pub(crate) use api::{GroupState, ScalingApi};
pub(crate) use controller::{CloudCapacity, ScaleController, ScaleStatus};
pub(crate) use sdk::AutoScalingApi;
