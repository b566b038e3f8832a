//! Paused-time tests of the drill over a fake group whose instances come
//! into service `warmup` after they were asked for.

use std::sync::Mutex;

use tokio::time::Instant;

use super::*;
use crate::scale::api::GroupState;

struct Group {
    state: GroupState,
    warmup: Duration,
    raised_at: Option<Instant>,
    sets: Vec<u32>,
    fail_restore: bool,
}

struct Fake(Mutex<Group>);

impl Fake {
    fn new(desired: u32, max: u32, warmup: Duration) -> Fake {
        let state = GroupState { desired, min: 1, max, in_service: desired, pending: 0 };
        Fake(Mutex::new(Group { state, warmup, raised_at: None, sets: Vec::new(), fail_restore: false }))
    }
}

impl ScalingApi for Fake {
    fn describe_group<'a>(&'a self, _: &'a str) -> crate::aws::error::ApiFuture<'a, GroupState> {
        Box::pin(async move {
            let mut g = self.0.lock().unwrap();
            if g.raised_at.is_some_and(|t| t.elapsed() >= g.warmup) {
                g.state.in_service = g.state.desired;
            }
            Ok(g.state.clone())
        })
    }

    fn set_desired_capacity<'a>(&'a self, _: &'a str, desired: u32) -> crate::aws::error::ApiFuture<'a, ()> {
        Box::pin(async move {
            let mut g = self.0.lock().unwrap();
            if g.fail_restore && !g.sets.is_empty() {
                return Err(AwsError::Unavailable { api: "SetDesiredCapacity", message: "down".into() });
            }
            g.sets.push(desired);
            g.state.desired = desired;
            g.raised_at = Some(Instant::now());
            Ok(())
        })
    }
}

fn plan(timeout: Duration) -> DrillPlan {
    DrillPlan { group: "g".into(), dr_capacity: 8, poll: Duration::from_secs(5), timeout }
}

#[tokio::test(start_paused = true)]
async fn a_drill_times_the_capacity_and_restores_the_group() {
    let fake = Fake::new(2, 20, Duration::from_secs(90));
    let report = run(&fake, &plan(Duration::from_secs(3600)), &|| {}, Duration::ZERO).await;
    assert_eq!(report.outcome, DrillOutcome::Passed);
    assert_eq!((report.previous_desired, report.target), (Some(2), Some(8)));
    // In service after 90 s, seen at the next poll (every 5 s).
    assert_eq!(report.to_in_service, Some(Duration::from_secs(90)));
    assert!(report.restored);
    assert_eq!(fake.0.lock().unwrap().sets, vec![8, 2], "raised, then the previous capacity back");
}

#[tokio::test(start_paused = true)]
async fn the_hold_is_released_before_the_restore() {
    let fake = Fake::new(2, 20, Duration::ZERO);
    let released = std::sync::atomic::AtomicBool::new(false);
    let release = || {
        assert_eq!(fake.0.lock().unwrap().sets, vec![8], "released before the restore");
        released.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let report = run(&fake, &plan(Duration::from_secs(60)), &release, Duration::from_millis(200)).await;
    assert!(released.load(std::sync::atomic::Ordering::SeqCst) && report.restored);
}

#[tokio::test(start_paused = true)]
async fn a_slow_group_times_out_and_is_restored_anyway() {
    let fake = Fake::new(2, 5, Duration::from_secs(600));
    let report = run(&fake, &plan(Duration::from_secs(60)), &|| {}, Duration::ZERO).await;
    assert_eq!(report.outcome, DrillOutcome::TimedOut);
    assert_eq!(report.target, Some(5), "dr_capacity within the group's max");
    assert_eq!(report.to_in_service, None);
    assert!(report.restored);
    assert_eq!(fake.0.lock().unwrap().sets, vec![5, 2]);
    assert_eq!(report.to_json()["outcome"], "timed_out");
}

#[tokio::test(start_paused = true)]
async fn a_failed_restore_is_reported() {
    let fake = Fake::new(2, 20, Duration::ZERO);
    fake.0.lock().unwrap().fail_restore = true;
    let report = run(&fake, &plan(Duration::from_secs(60)), &|| {}, Duration::ZERO).await;
    assert_eq!(report.to_in_service, Some(Duration::ZERO));
    assert_eq!((report.outcome, report.restored), (DrillOutcome::Failed, false));
    assert!(report.error.unwrap().contains("down"));
}
