//! Read-after-write pinning: a client that wrote stays on-prem for `ttl`,
//! because the cloud's database replicas lag the primary.
//!
//! [`WritePins`] is a bounded map from a client key to its pin expiry, split
//! into [`SHARDS`] mutex-guarded shards so concurrent writers rarely meet. It
//! is touched only by writes (`pin`) and by reads that would spill
//! (`is_pinned`), not by every request. Each shard keeps its entries in a
//! hash map and their expiry order in a FIFO (pins are made with one `ttl`,
//! so pin order is expiry order); stale FIFO entries from re-pins are skipped
//! and compacted. Both are allocated at full size up front: no allocation on
//! the request path.
//!
//! One address cannot crowd others out: each client address may create at
//! most `per_address` session pins per `ttl` ([`WritePins::pin_client`]);
//! past that its writes pin the address itself, which keeps every client
//! behind it on-prem (correct, if coarse, for a NAT) while the pins of
//! other addresses stay. Keys are hashed with a per-process random key, so
//! a client cannot choose cookies that land in one shard or collide.
//!
//! Invariants: a shard never holds more than `ceil(capacity / SHARDS)` keys
//! (when full, the oldest pin is evicted and counted in `evictions`); a pin
//! is honoured until exactly `now + ttl` (expired when `now >= expiry`).
//! After `set_ttl` the FIFO is only approximately in expiry order until the
//! older pins have aged out, so a capacity eviction may pick a pin that is
//! not the very oldest; expiry checks stay exact.

use crate::sync::lock;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Number of shards (a power of two).
pub const SHARDS: usize = 32;

/// The pin key of a client: its session cookie's value when it has one, else
/// its address (IPv6: its /64). A keyed hash (SipHash with a per-process random key):
/// deterministic within a process, unpredictable from outside; the two
/// kinds cannot collide by construction (distinct domain tags).
pub fn client_key(session_cookie: Option<&[u8]>, client_ip: IpAddr) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let key = KEY.get_or_init(RandomState::new);
    match session_cookie {
        Some(cookie) => key.hash_one((0u8, cookie)),
        None => key.hash_one((1u8, subscriber(client_ip))),
    }
}

/// The part of an address one subscriber holds: an IPv4 address, or an
/// IPv6 /64 (one subscriber is handed a whole /64, so a per-address limit
/// on full IPv6 addresses would be no limit).
fn subscriber(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !0xffff_ffff_ffff_ffff)),
        },
        v4 => v4,
    }
}

/// The pin key of a client's address alone (`client_key(None, ip)`).
pub fn address_key(client_ip: IpAddr) -> u64 {
    client_key(None, client_ip)
}

/// What [`WritePins::pin_client`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// The client's own key (its session, or its address without one).
    Client,
    /// The address: it had made `per_address` session pins this `ttl` already.
    Address,
}

/// Per address key: session pins made in the current window, and its end.
type AddressWindows = HashMap<u64, (u32, Instant)>;

/// Bounded read-after-write pins; `Send + Sync`.
pub struct WritePins {
    shards: Box<[Padded]>,
    per_shard: usize,
    ttl_nanos: AtomicU64,
    evictions: AtomicU64,
    /// Session pins made per address in its current `ttl` window.
    addresses: Box<[Mutex<AddressWindows>]>,
    per_address: AtomicU32,
    address_pins: AtomicU64,
}

#[repr(align(64))]
struct Padded(Mutex<Shard>);

struct Shard {
    expiry: HashMap<u64, Instant>,
    order: VecDeque<(u64, Instant)>,
}

impl WritePins {
    /// At most `capacity` clients (rounded up to a multiple of [`SHARDS`]).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Padded(Mutex::new(Shard::with_capacity(per_shard)))).collect();
        let addresses = (0..SHARDS).map(|_| Mutex::new(HashMap::with_capacity(per_shard + 1))).collect();
        Self {
            shards,
            per_shard,
            ttl_nanos: AtomicU64::new(nanos(ttl)),
            evictions: AtomicU64::new(0),
            addresses,
            per_address: AtomicU32::new(u32::MAX),
            address_pins: AtomicU64::new(0),
        }
    }

    /// At most `n` session pins per address per `ttl` (config reload too).
    pub fn set_per_address(&self, n: u32) {
        self.per_address.store(n.max(1), Relaxed);
    }

    /// Pins a client after a write: its own `key`, unless that is a new
    /// session pin and its `address` has made `per_address` of them this
    /// `ttl` already; then the address is pinned instead.
    pub fn pin_client(&self, key: u64, address: u64, now: Instant) -> Pinned {
        if key == address || self.is_pinned(key, now) || self.admit_session(address, now) {
            self.pin(key, now);
            return Pinned::Client;
        }
        self.pin(address, now);
        self.address_pins.fetch_add(1, Relaxed);
        Pinned::Address
    }

    /// Whether the client (its session or its whole address) wrote within `ttl`.
    pub fn is_client_pinned(&self, key: u64, address: u64, now: Instant) -> bool {
        self.is_pinned(key, now) || (key != address && self.is_pinned(address, now))
    }

    /// Counts one more session pin for `address`, if its budget allows.
    /// The count map is bounded like the pins: when a shard is full of
    /// live windows, a new address is refused (and pinned whole).
    fn admit_session(&self, address: u64, now: Instant) -> bool {
        let max = self.per_address.load(Relaxed);
        let mut shard = lock(&self.addresses[(address >> 58) as usize % SHARDS]);
        if !shard.contains_key(&address) && shard.len() >= self.per_shard {
            shard.retain(|_, (_, until)| now < *until);
            if shard.len() >= self.per_shard {
                return false;
            }
        }
        let ttl = self.ttl();
        let (count, until) = shard.entry(address).or_insert((0, now + ttl));
        if now >= *until {
            *count = 0;
            *until = now + ttl;
        }
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Writes that pinned their whole address (it was over `per_address`).
    pub fn address_pins(&self) -> u64 {
        self.address_pins.load(Relaxed)
    }

    /// Pin `key` until `now + ttl` (re-pinning extends).
    pub fn pin(&self, key: u64, now: Instant) {
        let expires = now + self.ttl();
        let mut shard = self.shard(key);
        shard.purge(now);
        if !shard.expiry.contains_key(&key) && shard.expiry.len() >= self.per_shard {
            shard.evict_oldest();
            self.evictions.fetch_add(1, Relaxed);
        }
        shard.expiry.insert(key, expires);
        shard.order.push_back((key, expires));
        shard.compact(self.per_shard);
        debug_assert!(shard.expiry.len() <= self.per_shard);
    }

    /// Whether `key` wrote within the last `ttl`.
    pub fn is_pinned(&self, key: u64, now: Instant) -> bool {
        let mut shard = self.shard(key);
        shard.purge(now);
        shard.expiry.get(&key).is_some_and(|expires| now < *expires)
    }

    /// Keys held, including expired ones not purged yet.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).expiry.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pins dropped for capacity before they expired (a metric).
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_nanos.load(Relaxed))
    }

    /// New TTL for later pins (config reload); existing pins keep their expiry.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_nanos.store(nanos(ttl), Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        // Keys are hashes already; take high bits, the map uses the low ones.
        lock(&self.shards[(key >> 58) as usize % SHARDS].0)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shard {
    fn with_capacity(keys: usize) -> Self {
        Self { expiry: HashMap::with_capacity(keys + 1), order: VecDeque::with_capacity(2 * keys + 2) }
    }

    /// Whether a FIFO entry is still the key's current pin.
    fn is_live(&self, key: u64, expires: Instant) -> bool {
        self.expiry.get(&key) == Some(&expires)
    }

    /// Drop expired pins from the front of the FIFO.
    fn purge(&mut self, now: Instant) {
        while let Some(&(key, expires)) = self.order.front() {
            if self.is_live(key, expires) && now < expires {
                break;
            }
            self.order.pop_front();
            if self.is_live(key, expires) {
                self.expiry.remove(&key);
            }
        }
    }

    /// Drop the oldest live pin.
    fn evict_oldest(&mut self) {
        while let Some((key, expires)) = self.order.pop_front() {
            if self.is_live(key, expires) {
                self.expiry.remove(&key);
                return;
            }
        }
    }

    /// Rebuild the FIFO without stale entries once they make up half of it.
    fn compact(&mut self, keys: usize) {
        if self.order.len() <= 2 * keys + 1 {
            return;
        }
        let expiry = &self.expiry;
        self.order.retain(|(key, expires)| expiry.get(key) == Some(expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const TTL: Duration = Duration::from_secs(90);

    #[test]
    fn pins_expire_after_ttl_and_repin_extends() {
        let pins = WritePins::new(100, TTL);
        let t0 = Instant::now();
        assert!(!pins.is_pinned(7, t0));
        pins.pin(7, t0);
        assert!(pins.is_pinned(7, t0 + TTL - Duration::from_nanos(1)));
        assert!(!pins.is_pinned(7, t0 + TTL));
        pins.pin(7, t0 + TTL);
        pins.pin(7, t0 + TTL * 2 - Duration::from_secs(1));
        assert!(pins.is_pinned(7, t0 + TTL * 2));
        assert_eq!(pins.len(), 1);
        assert!(!pins.is_pinned(7, t0 + TTL * 3));
        assert!(pins.is_empty(), "expired pins are purged");
        assert_eq!(pins.evictions(), 0);
    }

    #[test]
    fn bounded_with_oldest_evicted_and_counted() {
        let seed = 99;
        let mut rng = fastrand::Rng::with_seed(seed);
        let pins = WritePins::new(SHARDS * 8, TTL);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..50_000 {
            now += Duration::from_millis(1);
            pins.pin(rng.u64(..), now);
            assert!(pins.len() <= pins.capacity(), "seed {seed}");
        }
        assert_eq!(pins.len(), pins.capacity());
        assert_eq!(pins.evictions(), 50_000 - pins.capacity() as u64);
        let newest = rng.u64(..);
        pins.pin(newest, now);
        assert!(pins.is_pinned(newest, now));
    }

    #[test]
    fn eviction_takes_the_oldest_pin_and_spares_refreshed_ones() {
        let pins = WritePins::new(SHARDS * 2, TTL);
        let t0 = Instant::now();
        let key = |n: u64| n; // high bits zero: all in shard 0
        pins.pin(key(1), t0);
        pins.pin(key(2), t0 + Duration::from_secs(1));
        pins.pin(key(1), t0 + Duration::from_secs(2));
        pins.pin(key(3), t0 + Duration::from_secs(3));
        let now = t0 + Duration::from_secs(3);
        assert!(!pins.is_pinned(key(2), now), "2 was the oldest live pin");
        assert!(pins.is_pinned(key(1), now) && pins.is_pinned(key(3), now));
        assert_eq!(pins.evictions(), 1);
    }

    #[test]
    fn repeated_repins_do_not_grow_the_fifo() {
        let pins = WritePins::new(SHARDS, TTL);
        let t0 = Instant::now();
        for n in 0..10_000 {
            pins.pin(5, t0 + Duration::from_millis(n));
        }
        let shard = lock(&pins.shards[0].0);
        assert!(shard.order.len() <= 3, "fifo {}", shard.order.len());
    }

    #[test]
    fn set_ttl_applies_to_new_pins() {
        let pins = WritePins::new(64, TTL);
        let t0 = Instant::now();
        pins.pin(1, t0);
        pins.set_ttl(Duration::from_secs(1));
        pins.pin(2, t0);
        assert!(pins.is_pinned(1, t0 + Duration::from_secs(2)));
        assert!(!pins.is_pinned(2, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn an_address_over_its_session_budget_pins_itself_and_spares_the_others() {
        let pins = WritePins::new(SHARDS * 64, TTL);
        pins.set_per_address(3);
        let t0 = Instant::now();
        let attacker = address_key([198, 51, 100, 9].into());
        let victim_addr = address_key([203, 0, 113, 5].into());
        let victim = client_key(Some(b"victim"), [203, 0, 113, 5].into());
        assert_eq!(pins.pin_client(victim, victim_addr, t0), Pinned::Client);
        for n in 0..1000u32 {
            let cookie = n.to_le_bytes();
            let key = client_key(Some(&cookie), [198, 51, 100, 9].into());
            let expect = if n < 3 { Pinned::Client } else { Pinned::Address };
            assert_eq!(pins.pin_client(key, attacker, t0), expect, "pin {n}");
        }
        assert!(pins.len() <= 5, "three sessions and the address: {}", pins.len());
        assert_eq!(pins.address_pins(), 997);
        assert!(pins.is_client_pinned(victim, victim_addr, t0), "the other address keeps its pin");
        let fresh = client_key(Some(b"fresh"), [198, 51, 100, 9].into());
        assert!(pins.is_client_pinned(fresh, attacker, t0), "anyone behind the address is kept on-prem");
        assert!(!pins.is_client_pinned(fresh, attacker, t0 + TTL), "until the ttl passes");
        assert_eq!(pins.pin_client(fresh, attacker, t0 + TTL), Pinned::Client, "a new window, a new budget");
    }

    #[test]
    fn a_known_session_repins_without_spending_budget() {
        let pins = WritePins::new(SHARDS * 64, TTL);
        pins.set_per_address(1);
        let t0 = Instant::now();
        let addr = address_key([192, 0, 2, 1].into());
        let key = client_key(Some(b"s"), [192, 0, 2, 1].into());
        for n in 0..10 {
            assert_eq!(pins.pin_client(key, addr, t0 + Duration::from_secs(n)), Pinned::Client);
        }
        assert_eq!(pins.pin_client(addr, addr, t0), Pinned::Client, "a cookie-less client is its address");
    }

    #[test]
    fn an_ipv6_subscriber_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), address_key("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn client_key_prefers_the_cookie() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(client_key(Some(b"abc"), ip), client_key(Some(b"abc"), other));
        assert_ne!(client_key(Some(b"abc"), ip), client_key(Some(b"abd"), ip));
        assert_ne!(client_key(None, ip), client_key(None, other));
        assert_eq!(client_key(None, ip), client_key(None, ip));
    }
}
