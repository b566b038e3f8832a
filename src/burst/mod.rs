//! Burst policy, pure: load signals, the adaptive concurrency limit, the
//! spill gate with its hysteresis, read-after-write pinning (the in-process
//! map, `pins`, and the signed cookie any instance honours, `pin_token`), and the
//! disaster-recovery state machine (`dr`).
//!
//! Nothing here does I/O, spawns, reads a clock or draws a random number:
//! time comes in as `now: Instant` or durations. The request path
//! ([`LoadSignals::begin`]/[`end`](LoadSignals::end)/[`record`](LoadSignals::record)
//! and [`decide`]) is lock-free and allocation-free; [`WritePins`] takes a
//! sharded mutex only for writes and would-spill reads.
//!
//! One tick of a pool's controller (in the I/O shell, every `spill.tick`):
//!
//! ```text
//! let w = signals.take_window(now);
//! let limit = match mode { Adaptive => limit.update(&w, now).min(max_in_flight), Static => slo_limit.update(&w) };
//! let phase = spill.observe(pressure(&w, limit, latency_slo), now);
//! // publish (limit, phase) for the request path, e.g. in atomics
//! ```
//!
//! One request: `in_flight = signals.begin()`, fill [`GateInputs`], [`decide`];
//! on `Cloud` or `Queue` call `signals.end()` at once (the request leaves the
//! primary; a queued request is handed a slot, `shed`), else
//! `record` the outcome and `end()` when it completes. A write calls
//! [`WritePins::pin`] with [`client_key`]; a read asks
//! [`WritePins::is_pinned`] only when it is over the limit (the only case
//! where `pinned` can change the decision).

pub mod dr;
pub mod gate;
mod histogram;
pub mod limit;
pub mod pin_token;
pub mod pins;
pub mod shed;
pub mod signals;

#[cfg(test)]
mod sim;

pub use dr::{
    DrCommand, DrMachine, DrObservation, DrPolicy, DrReason, DrRefusal, DrSource, DrState, DrTransition, EngageMode,
    LeaseAck, RpoGuard, WriteHold,
};
pub use gate::{
    decide, pressure, GateInputs, OutageTimer, Pressure, QueueReason, SpillController, SpillDecision, SpillPhase,
    SpillReason, StayReason,
};
pub use limit::{ConcurrencyLimit, LearntLimit, LimitParams, QueueAllowance, SloLimit};
pub use pin_token::{pin_window, PinKeyError, PinKeys, PinVerdict};
pub use pins::{address_key, client_key, Pinned, WritePins};
pub use shed::{rank, retry_after, wait_rank, Priority, ShedReason};
pub use signals::{LoadSignals, Outcome, SignalsConfig, WindowStats};
