//! What the scale controller needs of Auto Scaling: the group as it sees
//! it and the two calls it makes, behind a trait (the real SDK in `sdk.rs`,
//! the demo's simulation and tests' fakes).

use crate::aws::error::ApiFuture;

/// An Auto Scaling group as the controller sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    pub(crate) desired: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    /// Instances in the `InService` lifecycle state (warm capacity).
    pub(crate) in_service: u32,
    /// Instances still launching or warming.
    pub(crate) pending: u32,
}

/// The two Auto Scaling calls the controller makes (real SDK or a test fake).
pub(crate) trait ScalingApi: Send + Sync {
    /// `DescribeAutoScalingGroups` for one group; `NotFound` if it does not exist.
    fn describe_group<'a>(&'a self, group: &'a str) -> ApiFuture<'a, GroupState>;
    /// `SetDesiredCapacity` (without honouring the group's cooldown: the policy has its own).
    fn set_desired_capacity<'a>(&'a self, group: &'a str, desired: u32) -> ApiFuture<'a, ()>;
}
