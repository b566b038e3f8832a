//! When a proxied request is sent again, as a pure function of how its
//! attempt failed: no I/O, no clock. `proxy::service::forward` asks it
//! after every failure and does what it says.
//!
//! The rules (only failures where the request was not processed are
//! retried):
//! - a connect failure of an idempotent request: once, on another endpoint;
//! - a request not one byte of which reached the upstream (`NotSent`):
//!   again, whatever its method, on a fresh connection to the same endpoint;
//! - a bodyless request on a reused connection that closed without a byte
//!   of answer (`NoResponse`, the keep-alive race): the same, only if
//!   idempotent;
//! - anything else: never.
//!
//! Invariant (why the loop ends): the client hands a request back
//! (`NotSent`, `NoResponse`) only from a reused connection, and
//! `ResendFresh` uses a new one; `TryAnotherEndpoint` happens at most once.

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection to the endpoint (nothing was sent).
    Connect,
    /// Not one byte of the request reached the upstream.
    NotSent,
    /// The request went out on a reused connection that closed without a
    /// byte of response: the keep-alive race.
    NoResponse,
    /// The request may have been processed.
    Failed,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Give up: the failure is the answer.
    Done,
    /// Send the request again on a new connection to the same endpoint.
    ResendFresh,
    /// Send the request to another endpoint of the pool.
    TryAnotherEndpoint,
}

/// The retry decision. `idempotent`: the method may be sent twice without
/// changing the outcome (RFC 9110 §9.2.2) and the request is no upgrade;
/// `moved_endpoint`: a connect failure already sent this request to another
/// endpoint.
pub(crate) fn after_failure(failure: Failure, idempotent: bool, moved_endpoint: bool) -> Retry {
    match failure {
        Failure::Connect if idempotent && !moved_endpoint => Retry::TryAnotherEndpoint,
        Failure::NotSent => Retry::ResendFresh,
        Failure::NoResponse if idempotent => Retry::ResendFresh,
        Failure::Connect | Failure::NoResponse | Failure::Failed => Retry::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_retry() {
        use Failure::*;
        use Retry::*;
        // (failure, idempotent, moved_endpoint) -> retry, every combination.
        let table = [
            ((Connect, true, false), TryAnotherEndpoint),
            ((Connect, true, true), Done),
            ((Connect, false, false), Done),
            ((Connect, false, true), Done),
            ((NotSent, true, false), ResendFresh),
            ((NotSent, true, true), ResendFresh),
            ((NotSent, false, false), ResendFresh),
            ((NotSent, false, true), ResendFresh),
            ((NoResponse, true, false), ResendFresh),
            ((NoResponse, true, true), ResendFresh),
            ((NoResponse, false, false), Done),
            ((NoResponse, false, true), Done),
            ((Failed, true, false), Done),
            ((Failed, true, true), Done),
            ((Failed, false, false), Done),
            ((Failed, false, true), Done),
        ];
        for ((failure, idempotent, moved), want) in table {
            assert_eq!(
                after_failure(failure, idempotent, moved),
                want,
                "{failure:?} idempotent={idempotent} moved={moved}"
            );
        }
    }

    #[test]
    fn a_request_that_reached_an_endpoint_stays_there() {
        for failure in [Failure::NotSent, Failure::NoResponse, Failure::Failed] {
            for (idempotent, moved) in [(true, true), (true, false), (false, true), (false, false)] {
                assert_ne!(after_failure(failure, idempotent, moved), Retry::TryAnotherEndpoint);
            }
        }
    }
}
