//! One error type for every AWS call, classified by whose fault it is and
//! whether a retry may help. SDK errors are mapped here and nowhere else.

use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why an AWS call failed. `api` names the operation (e.g. `"SetDesiredCapacity"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AwsError {
    /// The service rate-limited us: back off and retry.
    #[error("{api}: throttled ({code})")]
    Throttled { api: &'static str, code: String },
    /// An earlier change is still being applied (Route 53 `PriorRequestNotComplete`,
    /// Auto Scaling `ScalingActivityInProgress`): retry later.
    #[error("{api}: an earlier request is not complete ({code})")]
    Busy { api: &'static str, code: String },
    /// Connection refused, timed out, or a 5xx: the service is unreachable; retry later.
    #[error("{api}: service unavailable: {message}")]
    Unavailable { api: &'static str, message: String },
    /// The group, zone or change does not exist: a config problem, no retry helps.
    #[error("{api}: not found: {message}")]
    NotFound { api: &'static str, message: String },
    /// The service refused the request (validation, access): no retry helps.
    #[error("{api}: rejected ({code}): {message}")]
    Rejected { api: &'static str, code: String, message: String },
    /// Spillway refused to make the call (out-of-range value, bad answer).
    #[error("{api}: refused by Spillway: {message}")]
    Invalid { api: &'static str, message: String },
}

impl AwsError {
    /// The operation that failed.
    pub(crate) fn api(&self) -> &'static str {
        match self {
            Self::Throttled { api, .. }
            | Self::Busy { api, .. }
            | Self::Unavailable { api, .. }
            | Self::NotFound { api, .. }
            | Self::Rejected { api, .. }
            | Self::Invalid { api, .. } => api,
        }
    }

    /// A short static label for metrics and status.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Busy { .. } => "busy",
            Self::Unavailable { .. } => "unavailable",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Invalid { .. } => "invalid",
        }
    }

    /// Whether the same call may succeed later.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Busy { .. } | Self::Unavailable { .. })
    }
}

const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ProvisionedThroughputExceededException",
];
const BUSY_CODES: &[&str] = &["PriorRequestNotComplete", "ScalingActivityInProgress"];
const NOT_FOUND_CODES: &[&str] =
    &["NoSuchHostedZone", "NoSuchChange", "ResourceNotFound", "ResourceNotFoundException", "NoSuchAutoScalingGroup"];
const UNAVAILABLE_CODES: &[&str] = &["ServiceUnavailable", "InternalFailure", "InternalError", "ServiceFailure"];

/// Maps an SDK error of any operation (both SDKs share the error type) to [`AwsError`].
pub(crate) fn classify<E>(api: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let message = DisplayErrorContext(&err).to_string();
    match (&err, code) {
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => AwsError::Unavailable { api, message },
        (SdkError::ConstructionFailure(_), _) => AwsError::Invalid { api, message },
        (_, Some(code)) => classify_code(api, code, status, message),
        _ if status.is_some_and(|s| s >= 500) => AwsError::Unavailable { api, message },
        _ => AwsError::Rejected { api, code: status.map_or_else(|| "unknown".into(), |s| s.to_string()), message },
    }
}

fn classify_code(api: &'static str, code: String, status: Option<u16>, message: String) -> AwsError {
    let c = code.as_str();
    if THROTTLE_CODES.contains(&c) || status == Some(429) {
        AwsError::Throttled { api, code }
    } else if BUSY_CODES.contains(&c) {
        AwsError::Busy { api, code }
    } else if NOT_FOUND_CODES.contains(&c) {
        AwsError::NotFound { api, message }
    } else if UNAVAILABLE_CODES.contains(&c) || status.is_some_and(|s| s >= 500) {
        AwsError::Unavailable { api, message }
    } else {
        AwsError::Rejected { api, code, message }
    }
}

/// The boxed future an API trait method returns (object-safe async).
pub(crate) type ApiFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, AwsError>> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_retryable_kinds() {
        let t = classify_code("X", "Throttling".into(), Some(400), String::new());
        assert_eq!(t.kind(), "throttled");
        assert!(t.retryable());
        let b = classify_code("X", "PriorRequestNotComplete".into(), Some(400), String::new());
        assert_eq!(b.kind(), "busy");
        assert!(b.retryable());
        let n = classify_code("X", "NoSuchHostedZone".into(), Some(404), String::new());
        assert!(!n.retryable());
        let r = classify_code("X", "ValidationError".into(), Some(400), String::new());
        assert_eq!(r.kind(), "rejected");
        assert!(!r.retryable());
        let u = classify_code("X", "Weird".into(), Some(503), String::new());
        assert_eq!(u.kind(), "unavailable");
    }
}
