//! Leader election (`strom-lease`) against the simulated API server.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use std::time::Duration;
use strom_e2e::kube_sim::ApiServer;
use strom_lease::{ElectionConfig, LeaderElector, LeaderStatus, LeaseLock};
use tokio::time::{Instant, timeout};

/// Short timings: a 2 s lease, renewed every 200 ms, given up after 1.5 s.
const FAST: ElectionConfig = ElectionConfig {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_millis(1500),
    retry_period: Duration::from_millis(200),
};

fn elector(server: &ApiServer, identity: &str) -> LeaderElector {
    LeaderElector::new(
        LeaseLock {
            api: Api::default_namespaced(server.client()),
            name: "strom-leader".into(),
            identity: identity.into(),
        },
        FAST,
    )
    .expect("a valid config")
}

async fn lease(server: &ApiServer) -> Lease {
    Api::<Lease>::default_namespaced(server.client())
        .get("strom-leader")
        .await
        .expect("the lease")
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn transitions(l: &Lease) -> i32 {
    l.spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

#[tokio::test]
async fn of_two_candidates_exactly_one_leads() {
    let server = ApiServer::start().await.unwrap();
    let mut a = elector(&server, "a").spawn();
    let mut b = elector(&server, "b").spawn();
    timeout(Duration::from_secs(5), async {
        tokio::select! {
            _ = a.wait_for_leadership() => {}
            _ = b.wait_for_leadership() => {}
        }
    })
    .await
    .expect("a leader within 5 s");
    // Over several renewals, never two leaders and never none.
    for _ in 0..15 {
        assert!(a.is_leader() != b.is_leader());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = if a.is_leader() { "a" } else { "b" };
    assert_eq!(holder(&lease(&server).await).as_deref(), Some(leader));
    assert_eq!(transitions(&lease(&server).await), 0);
}

#[tokio::test]
async fn a_leader_that_stops_renewing_is_replaced_after_the_lease_duration() {
    let server = ApiServer::start().await.unwrap();
    let mut a = elector(&server, "a").spawn();
    timeout(Duration::from_secs(5), a.wait_for_leadership())
        .await
        .unwrap();
    let mut b = elector(&server, "b").spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());
    // A crash: no release.
    let renewed = lease(&server).await.spec.unwrap().renew_time.unwrap().0;
    drop(a);
    let stopped = Instant::now();
    timeout(Duration::from_secs(5), b.wait_for_leadership())
        .await
        .expect("b takes over");
    let waited = stopped.elapsed();
    let taken = lease(&server).await;
    assert_eq!(holder(&taken).as_deref(), Some("b"));
    assert_eq!(transitions(&taken), 1);
    // Not before the lease expired.
    let acquired = taken.spec.unwrap().acquire_time.unwrap().0;
    assert!(
        acquired.as_millisecond() - renewed.as_millisecond() > 2000,
        "taken over {} ms after the last renewal",
        acquired.as_millisecond() - renewed.as_millisecond()
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn a_released_lease_is_taken_over_at_once() {
    let server = ApiServer::start().await.unwrap();
    let mut a = elector(&server, "a").spawn();
    timeout(Duration::from_secs(5), a.wait_for_leadership())
        .await
        .unwrap();
    let mut b = elector(&server, "b").spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.shutdown().await;
    let released = Instant::now();
    timeout(Duration::from_secs(5), b.wait_for_leadership())
        .await
        .expect("b takes over");
    // One retry period, not a lease duration.
    assert!(
        released.elapsed() < Duration::from_millis(1000),
        "{:?}",
        released.elapsed()
    );
    assert_eq!(holder(&lease(&server).await).as_deref(), Some("b"));
}

#[tokio::test]
async fn of_concurrent_takeovers_one_wins() {
    let server = ApiServer::start().await.unwrap();
    let old = elector(&server, "old");
    assert_eq!(
        old.try_acquire_or_renew().await.unwrap(),
        LeaderStatus::Leader { acquired: true }
    );
    // Let it expire.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let candidates: Vec<LeaderElector> =
        (0..5).map(|i| elector(&server, &format!("c{i}"))).collect();
    let results =
        futures::future::join_all(candidates.iter().map(|c| c.try_acquire_or_renew())).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().unwrap().is_leader())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = format!("c{}", winners[0]);
    assert_eq!(
        holder(&lease(&server).await).as_deref(),
        Some(winner.as_str())
    );
    // The old holder now follows the winner.
    assert_eq!(
        old.try_acquire_or_renew().await.unwrap(),
        LeaderStatus::Follower {
            holder: Some(winner)
        }
    );
}

#[tokio::test]
async fn lease_transitions_count_changes_of_holder() {
    let server = ApiServer::start().await.unwrap();
    let a = elector(&server, "a");
    let b = elector(&server, "b");
    assert!(a.try_acquire_or_renew().await.unwrap().is_leader());
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        LeaderStatus::Leader { acquired: false }
    );
    assert_eq!(transitions(&lease(&server).await), 0);
    assert!(!b.try_acquire_or_renew().await.unwrap().is_leader());
    assert!(a.release().await.unwrap());
    assert!(!b.release().await.unwrap(), "only the holder releases");
    assert_eq!(holder(&lease(&server).await), None);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        LeaderStatus::Leader { acquired: true }
    );
    assert_eq!(transitions(&lease(&server).await), 1);
    assert!(b.release().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap().is_leader());
    assert_eq!(transitions(&lease(&server).await), 2);
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_within_the_deadline() {
    let server = ApiServer::start().await.unwrap();
    let mut a = elector(&server, "a").spawn();
    timeout(Duration::from_secs(5), a.wait_for_leadership())
        .await
        .unwrap();
    let mut leading = a.subscribe();
    // The API server goes away: renewals fail.
    drop(server);
    let lost = Instant::now();
    timeout(Duration::from_secs(5), leading.wait_for(|l| !*l))
        .await
        .expect("a steps down")
        .unwrap();
    // Before the lease could expire for anyone else.
    assert!(lost.elapsed() < FAST.lease_duration, "{:?}", lost.elapsed());
}

#[tokio::test]
async fn a_renewal_that_loses_a_race_does_not_end_leadership() {
    let server = ApiServer::start().await.unwrap();
    let mut a = elector(&server, "a").spawn();
    timeout(Duration::from_secs(5), a.wait_for_leadership())
        .await
        .unwrap();
    let leading = a.subscribe();
    // Three renewals in a row answer 409 (well within the renew deadline).
    server.inject_conflicts_on("leases", 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(a.is_leader());
    assert!(!leading.has_changed().unwrap(), "leadership flapped");
    assert_eq!(holder(&lease(&server).await).as_deref(), Some("a"));
}
