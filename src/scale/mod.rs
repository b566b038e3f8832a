//! The scale controller: keeps the AWS Auto Scaling group's desired capacity
//! ahead of the overflow the gate will send to the cloud.
//!
//! `forecast.rs` and `policy.rs` are pure (inputs and `now` as arguments);
//! `controller.rs` is the loop shell; `sdk.rs` is the real [`ScalingApi`].
//! Invariant: the API is called only when the desired capacity changes, and
//! only with a value inside the group's own `[min, max]`.

pub mod controller;
pub mod forecast;
pub mod policy;
mod sdk;

pub use controller::{CloudCapacity, ScaleController, ScaleStatus};
pub use policy::{ScaleDecision, ScalePolicy, ScaleReason};
pub use sdk::AutoScalingApi;

use crate::aws::ApiFuture;

/// An Auto Scaling group as the controller sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Instances in the `InService` lifecycle state (warm capacity).
    pub in_service: u32,
    /// Instances still launching or warming.
    pub pending: u32,
}

/// The two Auto Scaling calls the controller makes (real SDK or a test fake).
pub trait ScalingApi: Send + Sync {
    /// `DescribeAutoScalingGroups` for one group; `NotFound` if it does not exist.
    fn describe_group<'a>(&'a self, group: &'a str) -> ApiFuture<'a, GroupState>;
    /// `SetDesiredCapacity` (without honouring the group's cooldown: the policy has its own).
    fn set_desired_capacity<'a>(&'a self, group: &'a str, desired: u32) -> ApiFuture<'a, ()>;
}
