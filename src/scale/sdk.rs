//! [`ScalingApi`] over the real `aws-sdk-autoscaling` client.

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_autoscaling::Client;

use super::{GroupState, ScalingApi};
use crate::aws::{classify, ApiFuture, AwsError};

const DESCRIBE: &str = "DescribeAutoScalingGroups";
const SET_DESIRED: &str = "SetDesiredCapacity";

/// The Auto Scaling API through the SDK.
#[derive(Debug, Clone)]
pub(crate) struct AutoScalingApi {
    client: Client,
}

impl AutoScalingApi {
    pub(crate) fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { client: Client::new(sdk) }
    }
}

fn non_negative(field: &str, value: Option<i32>) -> Result<u32, AwsError> {
    let v = value.unwrap_or(0);
    u32::try_from(v).map_err(|_| AwsError::Invalid { api: DESCRIBE, message: format!("group reports {field} = {v}") })
}

impl ScalingApi for AutoScalingApi {
    fn describe_group<'a>(&'a self, group: &'a str) -> ApiFuture<'a, GroupState> {
        Box::pin(async move {
            let out = self
                .client
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .send()
                .await
                .map_err(|e| classify(DESCRIBE, e))?;
            let g = out.auto_scaling_groups().iter().find(|g| g.auto_scaling_group_name() == Some(group)).ok_or_else(
                || AwsError::NotFound { api: DESCRIBE, message: format!("no Auto Scaling group {group:?}") },
            )?;
            let count = |state: &[LifecycleState]| {
                g.instances().iter().filter(|i| i.lifecycle_state().is_some_and(|s| state.contains(s))).count() as u32
            };
            Ok(GroupState {
                desired: non_negative("DesiredCapacity", g.desired_capacity())?,
                min: non_negative("MinSize", g.min_size())?,
                max: non_negative("MaxSize", g.max_size())?,
                in_service: count(&[LifecycleState::InService]),
                pending: count(&[LifecycleState::Pending, LifecycleState::PendingWait, LifecycleState::PendingProceed]),
            })
        })
    }

    fn set_desired_capacity<'a>(&'a self, group: &'a str, desired: u32) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let desired = i32::try_from(desired).map_err(|_| AwsError::Invalid {
                api: SET_DESIRED,
                message: format!("desired capacity {desired} too large"),
            })?;
            self.client
                .set_desired_capacity()
                .auto_scaling_group_name(group)
                .desired_capacity(desired)
                .honor_cooldown(false)
                .send()
                .await
                .map_err(|e| classify(SET_DESIRED, e))?;
            Ok(())
        })
    }
}
