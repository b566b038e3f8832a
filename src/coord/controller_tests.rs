//! Paused-time tests of the coordination loop over an in-memory table that
//! enforces the lease conditions as DynamoDB does, and can throttle.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::control::runner::Runner;
use crate::control::Fence;
use crate::coord::api::LeaseCondition;
use crate::demo::aws_sim::SimAws;

#[derive(Default)]
struct Table {
    sites: BTreeMap<String, SiteView>,
    throttled: bool,
}

#[derive(Default)]
struct FakeDb(Mutex<Table>);

fn throttled() -> AwsError {
    AwsError::Throttled { api: "PutItem", code: "ThrottlingException".into() }
}

impl CoordApi for FakeDb {
    fn query_site<'a>(&'a self, _table: &'a str, site: &'a str) -> crate::aws::ApiFuture<'a, SiteView> {
        let t = self.0.lock().unwrap();
        let out = if t.throttled { Err(throttled()) } else { Ok(t.sites.get(site).cloned().unwrap_or_default()) };
        Box::pin(async move { out })
    }

    fn put_heartbeat<'a>(
        &'a self,
        _table: &'a str,
        site: &'a str,
        hb: &'a Heartbeat,
        _ttl: u64,
    ) -> crate::aws::ApiFuture<'a, ()> {
        let mut t = self.0.lock().unwrap();
        let out = if t.throttled {
            Err(throttled())
        } else {
            let view = t.sites.entry(site.into()).or_default();
            view.heartbeats.retain(|h| h.instance != hb.instance);
            view.heartbeats.push(hb.clone());
            Ok(())
        };
        Box::pin(async move { out })
    }

    fn put_lease<'a>(
        &'a self,
        _table: &'a str,
        site: &'a str,
        lease: &'a Lease,
        condition: &'a LeaseCondition,
    ) -> crate::aws::ApiFuture<'a, bool> {
        let mut t = self.0.lock().unwrap();
        let out = if t.throttled {
            Err(throttled())
        } else {
            let view = t.sites.entry(site.into()).or_default();
            let ok = match (condition, &view.lease) {
                (LeaseCondition::Absent, None) => true,
                (LeaseCondition::Expired { seen, now_ms }, Some(l)) => l.version == *seen && l.expires_ms <= *now_ms,
                (LeaseCondition::Held { holder, version }, Some(l)) => l.holder == *holder && l.version == *version,
                _ => false,
            };
            if ok {
                view.lease = Some(lease.clone());
            }
            Ok(ok)
        };
        Box::pin(async move { out })
    }
}

fn cfg(instance: &str) -> CoordinationConfig {
    CoordinationConfig {
        enabled: true,
        table: "t".into(),
        region: "us-east-1".into(),
        instance_id: Some(instance.into()),
        site: "dc1".into(),
        heartbeat_interval: Duration::from_secs(2),
        lease_duration: Duration::from_secs(10),
        takeover_after: Duration::from_secs(30),
        handback_after: Duration::from_secs(60),
        refuse_writes_when_stale: true,
        cover: Vec::new(),
    }
}

struct Instance {
    authority: watch::Receiver<Authority>,
    lease_dr: watch::Receiver<LeaseDr>,
    shutdown: CancellationToken,
    _config: watch::Sender<Option<CoordinationConfig>>,
    signals: watch::Sender<ControlSignals>,
}

fn start(db: &Arc<FakeDb>, instance: &str) -> Instance {
    let (signals, local) = watch::channel(ControlSignals::default());
    let (authority_tx, authority) = watch::channel(Authority::Follower);
    let peers = watch::channel((ControlSignals::default(), 0)).0;
    let sim = Arc::new(SimAws::new(1, 10));
    let takeover = Takeover::new(sim.clone(), sim, None);
    let (lease_dr_tx, lease_dr) = watch::channel(LeaseDr::default());
    let controller = CoordController::new(db.clone(), takeover, local, authority_tx, peers, lease_dr_tx);
    let (config, config_rx) = watch::channel(Some(cfg(instance)));
    let shutdown = CancellationToken::new();
    Runner::new(controller, config_rx, shutdown.clone())
        .with_wall_clock(UNIX_EPOCH + Duration::from_secs(1_000_000))
        .spawn();
    Instance { authority, lease_dr, shutdown, _config: config, signals }
}

fn holds(i: &Instance) -> bool {
    i.authority.borrow().may_write(Instant::now())
}

async fn secs(n: f64) {
    tokio::time::sleep(Duration::from_secs_f64(n)).await;
}

#[tokio::test(start_paused = true)]
async fn one_holder_and_a_stopped_holder_is_replaced_within_lease_and_heartbeat() {
    let db = Arc::new(FakeDb::default());
    let (a, b) = (start(&db, "a"), start(&db, "b"));
    secs(0.1).await;
    assert_eq!(usize::from(holds(&a)) + usize::from(holds(&b)), 1, "exactly one holder");
    let (holder, follower) = if holds(&a) { (a, b) } else { (b, a) };
    for _ in 0..30 {
        secs(1.0).await;
        assert!(holds(&holder) && !holds(&follower), "no flapping");
    }
    assert!(!Fence::new(follower.authority.clone()).allows("SetDesiredCapacity", Instant::now()));
    holder.shutdown.cancel();
    let stopped = Instant::now();
    while !holds(&follower) {
        secs(0.1).await;
    }
    let took = stopped.elapsed();
    assert!(took <= Duration::from_secs(12), "took {took:?}: lease 10 s + heartbeat 2 s");
    assert_eq!(db.0.lock().unwrap().sites["dc1"].lease.as_ref().unwrap().version, 2, "one change of holder");
}

fn lease_state(db: &FakeDb) -> Option<DrState> {
    db.0.lock().unwrap().sites["dc1"].lease.as_ref().unwrap().dr_state
}

#[tokio::test(start_paused = true)]
async fn the_holders_dr_state_reaches_its_followers_through_the_lease() {
    let db = Arc::new(FakeDb::default());
    let (a, b) = (start(&db, "a"), start(&db, "b"));
    secs(0.1).await;
    let (holder, follower) = if holds(&a) { (a, b) } else { (b, a) };
    // The follower's own machine says dr_active: followers never write it anywhere but their heartbeat.
    follower.signals.send_modify(|s| s.dr_state = DrState::DrActive);
    holder.signals.send_modify(|s| s.dr_state = DrState::DrPending);
    secs(4.1).await;
    let seen = follower.lease_dr.borrow().read.clone().expect("the follower reads the lease");
    let holder_id = db.0.lock().unwrap().sites["dc1"].lease.as_ref().unwrap().holder.clone();
    assert_eq!((seen.state, seen.holder), (Some(DrState::DrPending), Some(holder_id)));
    assert_eq!(follower.lease_dr.borrow().written, None, "a follower writes no lease");
    let written = holder.lease_dr.borrow().written.expect("the holder's writes are acknowledged");
    assert_eq!((written.inherited, written.ack.state), (None, DrState::DrPending), "a new site: nothing inherited");
    assert_eq!(lease_state(&db), Some(DrState::DrPending));
    // A change at the holder is in the lease, and at the follower, within two heartbeats.
    holder.signals.send_modify(|s| s.dr_state = DrState::DrActive);
    secs(4.1).await;
    assert_eq!(follower.lease_dr.borrow().read.as_ref().and_then(|r| r.state), Some(DrState::DrActive));
    // The follower's machine lags (it says normal) when the holder stops:
    // the new holder writes the state the lease carried, not its own, until
    // its machine has taken it.
    follower.signals.send_modify(|s| s.dr_state = DrState::Normal);
    holder.shutdown.cancel();
    while !holds(&follower) {
        secs(0.1).await;
    }
    let written = follower.lease_dr.borrow().written.expect("acquired");
    assert_eq!((written.inherited, written.ack.state), (Some(DrState::DrActive), DrState::DrActive));
    secs(4.1).await;
    assert_eq!(lease_state(&db), Some(DrState::DrActive), "renewals keep the inherited state");
    // Its machine says it took it (under this version); from then on its
    // own decisions are written, even one that left the inherited state
    // before the next renewal.
    follower.signals.send_modify(|s| (s.dr_state, s.dr_synced) = (DrState::FailbackPending, Some(written.version)));
    secs(2.1).await;
    assert_eq!(lease_state(&db), Some(DrState::FailbackPending));
    // A sync to another version says nothing about this one.
    follower.signals.send_modify(|s| (s.dr_state, s.dr_synced) = (DrState::Normal, Some(written.version + 1)));
    secs(2.1).await;
    assert_eq!(lease_state(&db), Some(DrState::DrActive), "back to the inherited state until synced");
    assert_eq!(follower.lease_dr.borrow().written.map(|w| w.inherited), Some(Some(DrState::DrActive)));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_holder_continues_the_sites_dr_state_instead_of_writing_a_fresh_normal() {
    let db = Arc::new(FakeDb::default());
    let a = start(&db, "a");
    secs(0.1).await;
    a.signals.send_modify(|s| s.dr_state = DrState::DrActive);
    secs(2.1).await;
    assert_eq!(lease_state(&db), Some(DrState::DrActive));
    // The process dies and a new one with the same instance id starts
    // within the lease: it renews "its" lease (same holder, same version)
    // but carries on the lease's state, not its fresh machine's normal.
    a.shutdown.cancel();
    let again = start(&db, "a");
    secs(0.1).await;
    assert!(holds(&again));
    let written = again.lease_dr.borrow().written.expect("renewed");
    assert_eq!(
        (written.version, written.inherited, written.ack.state),
        (1, Some(DrState::DrActive), DrState::DrActive)
    );
    for _ in 0..3 {
        secs(2.0).await;
        assert_eq!(lease_state(&db), Some(DrState::DrActive), "until its machine took it");
    }
    // After the lease expired (the process was gone longer): acquired at version 2, same inheritance.
    again.shutdown.cancel();
    secs(11.0).await;
    let third = start(&db, "c");
    // (Each runner's wall clock starts at the same instant: the new one waits its own lease duration.)
    for _ in 0..300 {
        if holds(&third) {
            break;
        }
        secs(0.1).await;
    }
    let written = third.lease_dr.borrow().written.expect("acquired");
    assert_eq!(
        (written.version, written.inherited, written.ack.state),
        (2, Some(DrState::DrActive), DrState::DrActive)
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_cannot_renew_stops_acting_before_its_lease_expires() {
    let db = Arc::new(FakeDb::default());
    let a = start(&db, "a");
    secs(3.0).await;
    assert!(holds(&a));
    db.0.lock().unwrap().throttled = true;
    let throttled_at = Instant::now();
    let fence = Fence::new(a.authority.clone());
    while fence.holder(Instant::now()).is_some() {
        secs(0.05).await;
    }
    let stopped = throttled_at.elapsed();
    // The last renewal was at most one heartbeat before; acting stops a third of a lease before expiry.
    assert!(stopped <= Duration::from_secs_f64(10.0 * 2.0 / 3.0), "stopped after {stopped:?}");
    secs(5.0).await;
    assert_eq!(*a.authority.borrow(), Authority::Follower, "the loop stepped down too");
    db.0.lock().unwrap().throttled = false;
    secs(2.5).await;
    assert!(holds(&a), "renewed (same holder, same version) once DynamoDB answers");
    assert_eq!(db.0.lock().unwrap().sites["dc1"].lease.as_ref().unwrap().version, 1);
}

const WALL_MS: u64 = 1_000_000_000;

fn wall_now(start: Instant) -> u64 {
    WALL_MS + u64::try_from(start.elapsed().as_millis()).unwrap()
}

fn heartbeat(instance: &str, at_ms: u64, streak_since_ms: u64) -> Heartbeat {
    Heartbeat { instance: instance.into(), at_ms, streak_since_ms, signals: ControlSignals::default() }
}

#[tokio::test(start_paused = true)]
async fn a_lost_site_is_taken_over_written_once_and_handed_back() {
    let start = Instant::now();
    let db = Arc::new(FakeDb::default());
    // dc2's holder renewed 100 s ago and heartbeated then: lost for longer than takeover_after.
    let old = WALL_MS - 100_000;
    let lease = Lease {
        holder: "z".into(),
        holder_site: "dc2".into(),
        version: 3,
        renewed_ms: old,
        expires_ms: old + 10_000,
        mode: LeaseMode::Normal,
        dr_state: Some(crate::burst::DrState::FailbackPending),
    };
    let view = SiteView { lease: Some(lease), heartbeats: vec![heartbeat("z", old, old - 1000)] };
    db.0.lock().unwrap().sites.insert("dc2".into(), view);
    let mut c = cfg("a");
    let dns = crate::dns::records::tests::cfg();
    c.cover =
        vec![crate::config::CoverConfig { site: "dc2".into(), auto_scaling_group: "g".into(), dr_capacity: 8, dns }];
    let sim = Arc::new(SimAws::new(1, 10));
    let (_signals, local) = watch::channel(ControlSignals::default());
    let (authority_tx, _authority) = watch::channel(Authority::Follower);
    let peers = watch::channel((ControlSignals::default(), 0)).0;
    let takeover = Takeover::new(sim.clone(), sim.clone(), None);
    let controller =
        CoordController::new(db.clone(), takeover, local, authority_tx, peers, watch::channel(LeaseDr::default()).0);
    let (_config, config_rx) = watch::channel(Some(c));
    let shutdown = CancellationToken::new();
    let runner = Runner::new(controller, config_rx, shutdown.clone())
        .with_wall_clock(UNIX_EPOCH + Duration::from_millis(WALL_MS));
    let status = runner.status();
    runner.spawn();
    secs(0.5).await;
    let lease = |db: &FakeDb| db.0.lock().unwrap().sites["dc2"].lease.clone().unwrap();
    assert_eq!((lease(&db).holder.as_str(), lease(&db).version, lease(&db).mode), ("a", 4, LeaseMode::Lost));
    assert_eq!(lease(&db).dr_state, Some(DrState::FailbackPending), "the lost site's DR state is carried, not decided");
    assert_eq!(sim.desired(), 8, "the group at dr_capacity");
    let mut w = sim.weights();
    w.sort();
    assert_eq!(w, vec![("aws".to_string(), 255), ("dc1".to_string(), 0)], "both records to AWS in one batch");
    // dc2 heartbeats again, for less than handback_after: kept.
    let now = wall_now(start);
    db.0.lock().unwrap().sites.get_mut("dc2").unwrap().heartbeats = vec![heartbeat("z", now, now - 50_000)];
    secs(2.0).await;
    assert!(lease(&db).expires_ms > 0, "kept");
    assert_eq!(lease(&db).dr_state, Some(DrState::FailbackPending), "every lost-mode write carries it");
    let st = lock_status(&status);
    assert_eq!(st["role"], "holder");
    assert_eq!(st["covers"]["dc2"]["records_to_aws"], true, "{st}");
    // Past handback_after: released for dc2 to take.
    let now = wall_now(start);
    db.0.lock().unwrap().sites.get_mut("dc2").unwrap().heartbeats = vec![heartbeat("z", now, now - 61_000)];
    secs(2.0).await;
    assert_eq!((lease(&db).expires_ms, lease(&db).version), (0, 4), "handed back");
    assert_eq!(lease(&db).dr_state, Some(DrState::FailbackPending), "for dc2's next holder to continue");
    assert_eq!(lock_status(&status)["covers"]["dc2"]["step"], "handed_back");
    shutdown.cancel();
}

fn lock_status(status: &Arc<Mutex<CoordStatus>>) -> serde_json::Value {
    status.lock().unwrap().to_json(Instant::now())
}
