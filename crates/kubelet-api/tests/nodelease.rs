//! The node lease controller against the in-memory API server, on a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Task;
use k8s_openapi::api::core::v1::Node;
use kubelet_api::NodeClient;
use kubelet_api::fake::FakeApi;
use kubelet_api::nodelease::{LeaseController, NAMESPACE};
use kubelet_core::clock::FakeClock;
use std::sync::Arc;
use std::time::Duration;

fn controller(api: &FakeApi, clock: &Arc<FakeClock>) -> LeaseController {
    LeaseController {
        api: Arc::new(api.clone()),
        node_name: "n1".into(),
        duration_seconds: 40,
        clock: clock.clone(),
    }
}

async fn register(api: &FakeApi) {
    let mut n = Node::default();
    n.metadata.name = Some("n1".into());
    api.create_node(&n).await.unwrap();
}

/// An API server where node `n1` is registered, and a clock.
async fn registered() -> (FakeApi, Arc<FakeClock>) {
    let api = FakeApi::new();
    register(&api).await;
    (api, FakeClock::new())
}

#[tokio::test(start_paused = true)]
async fn renews_every_quarter_of_the_duration() {
    let (api, clock) = registered().await;
    let c = controller(&api, &clock);
    assert_eq!(c.renew_interval(), Duration::from_secs(10));
    let task = Task::spawn(|cancel| c.run(cancel));
    api.wait_for(|s| !s.leases.is_empty()).await;
    let l = api.get_lease(NAMESPACE, "n1").await.unwrap();
    let spec = l.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(spec.renew_time.unwrap().0, clock.now_ts());
    let owner = &l.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Node", "uid-n1")
    );
    // Then one update each 10 s, from the cached lease (no re-read).
    for i in 1..=3 {
        clock.advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(10)).await;
        api.wait_for(|s| s.calls.iter().filter(|c| *c == "replace_lease").count() >= i)
            .await;
    }
    let l = api.get_lease(NAMESPACE, "n1").await.unwrap();
    assert_eq!(
        l.spec.unwrap().renew_time.unwrap().0,
        clock.now_ts(),
        "renewTime follows the injected clock"
    );
    assert_eq!(api.count("create_lease"), 1);
    assert_eq!(
        api.count("get_lease"),
        3,
        "one read at creation, two by this test"
    );
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_node_before_creating_the_lease() {
    let api = FakeApi::new();
    let clock = FakeClock::new();
    let task = Task::spawn(|cancel| controller(&api, &clock).run(cancel));
    // No Node: no lease, retried with back-off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(api.state().leases.is_empty());
    let tries = api.count("get_node");
    assert!((2..=5).contains(&tries), "{tries} tries in 3 s");
    register(&api).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    api.wait_for(|s| !s.leases.is_empty()).await;
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_conflict_rereads_and_renews() {
    let (api, clock) = registered().await;
    let task = Task::spawn(|cancel| controller(&api, &clock).run(cancel));
    api.wait_for(|s| !s.leases.is_empty()).await;
    // Another writer changes the lease: the cached copy is stale.
    api.touch_lease(NAMESPACE, "n1");
    let reads = api.count("get_lease");
    tokio::time::sleep(Duration::from_secs(10)).await;
    api.wait_for(|s| s.calls.iter().filter(|c| *c == "replace_lease").count() >= 2)
        .await;
    assert_eq!(
        api.count("get_lease"),
        reads + 1,
        "re-read after the conflict"
    );
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_up_to_seven_seconds() {
    let (api, clock) = registered().await;
    api.fail("get_lease", 100, 500);
    let task = Task::spawn(|cancel| controller(&api, &clock).run(cancel));
    // 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, then 7 s apart.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let tries = api.count("get_lease");
    assert!((11..=14).contains(&tries), "{tries} tries in 60 s");
    task.stop().await;
}

#[test]
fn the_renew_interval_is_a_quarter_of_the_duration() {
    let api = FakeApi::new();
    let clock = FakeClock::new();
    let mut c = controller(&api, &clock);
    for (secs, every) in [(40, 10_000), (10, 2_500), (1, 250)] {
        c.duration_seconds = secs;
        assert_eq!(c.renew_interval(), Duration::from_millis(every));
    }
}
