//! The bounded, ranked wait for a slot (`burst::shed` is the policy).
//!
//! Each pool's gate keeps a map of the requests waiting for one of its
//! slots, highest rank first and oldest first within a rank. A request
//! that may spill waits in its primary's map and in its cloud pool's map
//! at once; whichever slot frees first serves it. A slot is **handed
//! over**, never released and re-acquired: the gate that frees a slot
//! under its cap gives it to its first waiter (the in-flight count does
//! not move), so a newcomer cannot take it in between and the order holds.
//!
//! Every waiter is one [`Waiter`] whose state only moves forward, by
//! compare-and-swap: `WAITING` → granted by the primary or the cloud
//! (`PRIMARY`/`CLOUD`), evicted, or given up (`GONE`, a timeout or a
//! cancelled request); a granted waiter then `TAKEN` its slot. So of a
//! grant, an eviction and a cancellation racing for one waiter exactly one
//! wins, and a slot granted to a request dropped before it saw the grant
//! is handed on by [`Waiting`]'s drop: nothing leaks on any path.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::burst::ShedReason;
use crate::sync::lock;

const WAITING: u8 = 0;
/// Granted a slot of the pool the request was routed to.
pub(crate) const PRIMARY: u8 = 1;
/// Granted a slot of the route's cloud pool.
pub(crate) const CLOUD: u8 = 2;
const EVICTED: u8 = 3;
const GONE: u8 = 4;
const TAKEN: u8 = 5;

/// Place in a map: rank descending, then arrival.
type Key = (Reverse<u8>, u64);

/// One waiting request.
pub(crate) struct Waiter {
    state: AtomicU8,
    wake: Notify,
    rank: u8,
}

impl Waiter {
    fn new(rank: u8) -> Arc<Self> {
        Arc::new(Waiter { state: AtomicU8::new(WAITING), wake: Notify::new(), rank })
    }

    fn settle(&self, to: u8) -> bool {
        self.state.compare_exchange(WAITING, to, AcqRel, Acquire).is_ok()
    }
}

/// The waiters of one pool's slots, and which of them may be granted up to
/// the pool's hard cap (`max_in_flight`) rather than only under its limit.
#[derive(Default)]
struct Maps {
    all: BTreeMap<Key, (Arc<Waiter>, u8)>,
    /// Keys of `all` whose request would have been admitted up to the hard
    /// cap had nobody been waiting (a write, a pinned or calm-phase
    /// request): a slot freed above the limit but under the cap is theirs.
    hard: BTreeSet<Key>,
}

impl Maps {
    fn remove(&mut self, key: &Key) -> Option<(Arc<Waiter>, u8)> {
        self.hard.remove(key);
        self.all.remove(key)
    }
}

/// The waiters of one pool's slots.
#[derive(Default)]
pub(crate) struct Waiters {
    maps: Mutex<Maps>,
    /// `all.len()` and `hard.len()`, for the request path to read without the lock.
    len: AtomicU32,
    hard_len: AtomicU32,
    /// The first waiter's rank + 1 (0: nobody), of all and of the hard ones.
    top: AtomicU8,
    hard_top: AtomicU8,
    next: AtomicU64,
}

impl Waiters {
    /// How many wait (a cancelled one may count until it has left).
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len.load(Relaxed)
    }

    /// How many of them may take a slot up to the hard cap.
    #[inline]
    pub(crate) fn hard_len(&self) -> u32 {
        self.hard_len.load(Relaxed)
    }

    /// Whether a waiter ranking at least `rank` waits: (any, a hard one).
    #[inline]
    pub(crate) fn ahead_of(&self, rank: u8) -> (bool, bool) {
        (self.top.load(Relaxed) > rank, self.hard_top.load(Relaxed) > rank)
    }

    fn publish(&self, maps: &Maps) {
        self.len.store(maps.all.len() as u32, Relaxed);
        self.hard_len.store(maps.hard.len() as u32, Relaxed);
        let top = |key: Option<&Key>| key.map_or(0, |k| k.0 .0.saturating_add(1));
        self.top.store(top(maps.all.first_key_value().map(|(k, _)| k)), Relaxed);
        self.hard_top.store(top(maps.hard.first()), Relaxed);
    }

    /// Adds `waiter` to be granted as `side` (`hard`: up to the hard cap).
    /// With `max` waiters already there, the lowest-ranked newest one
    /// ranking below `waiter` is evicted to make room; if none does (or
    /// `max` is 0: no queue), the queue is full.
    fn push(&self, waiter: &Arc<Waiter>, side: u8, max: u32, hard: bool) -> Result<Key, ShedReason> {
        if max == 0 {
            return Err(ShedReason::QueueFull);
        }
        let mut maps = lock(&self.maps);
        while maps.all.len() >= max as usize {
            let Some((&key, (lowest, _))) = maps.all.last_key_value() else { break };
            if lowest.rank >= waiter.rank {
                return Err(ShedReason::QueueFull);
            }
            if let Some((lowest, _)) = maps.remove(&key) {
                if lowest.settle(EVICTED) {
                    lowest.wake.notify_one();
                }
            }
        }
        let key = (Reverse(waiter.rank), self.next.fetch_add(1, Relaxed));
        maps.all.insert(key, (waiter.clone(), side));
        if hard {
            maps.hard.insert(key);
        }
        self.publish(&maps);
        Ok(key)
    }

    fn remove(&self, key: &Key) {
        let mut maps = lock(&self.maps);
        if maps.remove(key).is_some() {
            self.publish(&maps);
        }
    }

    /// Hands one slot to the first waiter still waiting (`hard_only`: the
    /// first of those that may go up to the hard cap); false if none is.
    pub(crate) fn grant(&self, hard_only: bool) -> bool {
        let mut maps = lock(&self.maps);
        let mut granted = false;
        loop {
            let key = if hard_only { maps.hard.first().copied() } else { maps.all.first_key_value().map(|(k, _)| *k) };
            let Some((waiter, side)) = key.and_then(|k| maps.remove(&k)) else { break };
            if waiter.settle(side) {
                waiter.wake.notify_one();
                granted = true;
                break;
            }
        }
        self.publish(&maps);
        granted
    }
}

/// Where a waiting request may be served: its primary's gate, and the
/// cloud's when it may spill. Implemented by `PoolGate`.
pub(crate) trait SlotSource {
    fn waiters(&self) -> &Waiters;
    /// Gives back a slot granted to a request that is gone.
    fn release(&self);
}

/// One request's wait; dropping it (a cancelled request) leaves both maps
/// and hands on a slot it was granted but never took.
pub(crate) struct Waiting<'a, G: SlotSource> {
    waiter: Arc<Waiter>,
    primary: (&'a G, Key),
    cloud: Option<(&'a G, Key)>,
}

impl<'a, G: SlotSource> Waiting<'a, G> {
    /// Joins `primary`'s queue (bounded by `max`; `hard`: the request may
    /// take a primary slot up to the hard cap) and, if given, `cloud`'s.
    pub(crate) fn join(
        primary: &'a G,
        cloud: Option<&'a G>,
        rank: u8,
        max: u32,
        hard: bool,
    ) -> Result<Self, ShedReason> {
        let waiter = Waiter::new(rank);
        let key = primary.waiters().push(&waiter, PRIMARY, max, hard)?;
        let mut waiting = Waiting { waiter, primary: (primary, key), cloud: None };
        if let Some(c) = cloud {
            // The cloud's map is bounded by its primaries' ones: no eviction there.
            if let Ok(k) = c.waiters().push(&waiting.waiter, CLOUD, u32::MAX, false) {
                waiting.cloud = Some((c, k));
            }
        }
        Ok(waiting)
    }

    /// Waits until a slot is granted (`PRIMARY` or `CLOUD`: the caller
    /// adopts it on that gate), the request is evicted, or `deadline`.
    pub(crate) async fn granted(&mut self, deadline: tokio::time::Instant) -> Result<u8, ShedReason> {
        loop {
            let notified = self.waiter.wake.notified();
            match self.waiter.state.load(Acquire) {
                side @ (PRIMARY | CLOUD) => {
                    self.waiter.state.store(TAKEN, Relaxed);
                    return Ok(side);
                }
                EVICTED => return Err(ShedReason::Evicted),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() && self.waiter.settle(GONE) {
                return Err(ShedReason::QueueTimeout);
            }
        }
    }
}

impl<G: SlotSource> Drop for Waiting<'_, G> {
    fn drop(&mut self) {
        // Cancelled while waiting: nobody may grant it any more.
        self.waiter.settle(GONE);
        let (primary, key) = self.primary;
        primary.waiters().remove(&key);
        if let Some((cloud, key)) = self.cloud {
            cloud.waiters().remove(&key);
        }
        // Granted, but the request went before it saw the grant.
        match self.waiter.state.swap(TAKEN, AcqRel) {
            PRIMARY => primary.release(),
            CLOUD => {
                if let Some((cloud, _)) = self.cloud {
                    cloud.release();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;
    use std::time::Duration;

    /// A pool with `free` slots handed out by `release`.
    #[derive(Default)]
    struct Slots {
        waiters: Waiters,
        released: AtomicI32,
    }

    impl SlotSource for Slots {
        fn waiters(&self) -> &Waiters {
            &self.waiters
        }
        fn release(&self) {
            if !self.waiters.grant(false) {
                self.released.fetch_add(1, Relaxed);
            }
        }
    }

    fn deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_to_the_highest_rank_then_the_oldest() {
        let pool = Slots::default();
        let mut low = Waiting::join(&pool, None, 0, 10, false).unwrap();
        let mut high_old = Waiting::join(&pool, None, 4, 10, false).unwrap();
        let mut high_new = Waiting::join(&pool, None, 4, 10, false).unwrap();
        assert_eq!(pool.waiters.len(), 3);
        assert!(pool.waiters.grant(false));
        assert_eq!(high_old.granted(deadline()).await, Ok(PRIMARY));
        assert!(pool.waiters.grant(false));
        assert_eq!(high_new.granted(deadline()).await, Ok(PRIMARY));
        assert!(pool.waiters.grant(false));
        assert_eq!(low.granted(deadline()).await, Ok(PRIMARY));
        assert!(!pool.waiters.grant(false), "nobody left");
        assert_eq!(pool.waiters.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_evicts_only_a_lower_rank() {
        let pool = Slots::default();
        let mut low = Waiting::join(&pool, None, 0, 2, false).unwrap();
        let _normal = Waiting::join(&pool, None, 2, 2, false).unwrap();
        assert_eq!(Waiting::join(&pool, None, 0, 2, false).err(), Some(ShedReason::QueueFull), "same rank: refused");
        let _high = Waiting::join(&pool, None, 4, 2, false).unwrap();
        assert_eq!(low.granted(deadline()).await, Err(ShedReason::Evicted));
        assert_eq!(pool.waiters.len(), 2);
        assert_eq!(Waiting::join(&pool, None, 2, 2, false).err(), Some(ShedReason::QueueFull));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_times_out_and_leaves_both_queues() {
        let (primary, cloud) = (Slots::default(), Slots::default());
        let mut w = Waiting::join(&primary, Some(&cloud), 2, 10, false).unwrap();
        assert_eq!((primary.waiters.len(), cloud.waiters.len()), (1, 1));
        let t = tokio::time::Instant::now() + Duration::from_millis(250);
        assert_eq!(w.granted(t).await, Err(ShedReason::QueueTimeout));
        drop(w);
        assert_eq!((primary.waiters.len(), cloud.waiters.len()), (0, 0));
        assert!(!cloud.waiters.grant(false));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_slot_of_either_pool_serves_and_the_other_is_not_taken() {
        let (primary, cloud) = (Slots::default(), Slots::default());
        let mut w = Waiting::join(&primary, Some(&cloud), 2, 10, false).unwrap();
        assert!(cloud.waiters.grant(false));
        assert!(!primary.waiters.grant(false), "already served by the cloud: the primary's slot stays free");
        assert_eq!(w.granted(deadline()).await, Ok(CLOUD));
        drop(w);
        assert_eq!(
            (primary.released.load(Relaxed), cloud.released.load(Relaxed)),
            (0, 0),
            "a taken slot is the caller's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_to_a_cancelled_request_is_handed_on() {
        let pool = Slots::default();
        let first = Waiting::join(&pool, None, 2, 10, false).unwrap();
        let mut second = Waiting::join(&pool, None, 2, 10, false).unwrap();
        assert!(pool.waiters.grant(false));
        // Dropped before it polled again, as an HTTP/2 reset drops the request's future.
        drop(first);
        assert_eq!(second.granted(deadline()).await, Ok(PRIMARY), "the slot went on to the next");
        drop(second);
        let third = Waiting::join(&pool, None, 2, 10, false).unwrap();
        assert!(pool.waiters.grant(false));
        drop(third);
        assert_eq!(pool.released.load(Relaxed), 1, "nobody waits: the slot is released");
        assert_eq!(pool.waiters.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_is_never_granted() {
        let pool = Slots::default();
        for _ in 0..100 {
            let mut w = Waiting::join(&pool, None, 2, 10, false).unwrap();
            let t = tokio::time::Instant::now() + Duration::from_millis(10);
            assert!(tokio::time::timeout_at(t, w.granted(deadline())).await.is_err());
            drop(w);
        }
        assert_eq!(pool.waiters.len(), 0);
        assert!(!pool.waiters.grant(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_above_the_limit_goes_only_to_a_hard_waiter_and_no_queue_is_no_queue() {
        let pool = Slots::default();
        let mut read = Waiting::join(&pool, None, 4, 10, false).unwrap();
        let mut write = Waiting::join(&pool, None, 3, 10, true).unwrap();
        assert_eq!((pool.waiters.len(), pool.waiters.hard_len()), (2, 1));
        assert!(pool.waiters.grant(true), "a slot under the hard cap: the write's, though the read ranks higher");
        assert_eq!(write.granted(deadline()).await, Ok(PRIMARY));
        assert!(!pool.waiters.grant(true), "no hard waiter left");
        assert!(pool.waiters.grant(false));
        assert_eq!(read.granted(deadline()).await, Ok(PRIMARY));
        assert_eq!((pool.waiters.len(), pool.waiters.hard_len()), (0, 0));
        assert_eq!(Waiting::join(&pool, None, 7, 0, true).err(), Some(ShedReason::QueueFull), "max_queue = 0");
        // An evicted hard waiter leaves the hard set too.
        let mut low = Waiting::join(&pool, None, 1, 1, true).unwrap();
        let _high = Waiting::join(&pool, None, 5, 1, false).unwrap();
        assert_eq!(low.granted(deadline()).await, Err(ShedReason::Evicted));
        assert_eq!((pool.waiters.len(), pool.waiters.hard_len()), (1, 0));
    }
}
