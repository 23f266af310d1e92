//! The pod source against the in-memory API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Task;
use k8s_openapi::api::core::v1::Pod;
use kubelet_api::fake::FakeApi;
use kubelet_api::pod_source::{self, PodUpdate};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": name, "uid": format!("uid-{name}")},
        "spec": {"nodeName": "n1", "containers": []},
    }))
    .unwrap()
}

fn describe(u: &PodUpdate) -> String {
    match u {
        PodUpdate::Apply(p) => format!("apply {}", p.metadata.name.as_deref().unwrap_or("")),
        PodUpdate::Remove(p) => format!("remove {}", p.metadata.name.as_deref().unwrap_or("")),
        PodUpdate::Synced { pods } => format!("synced {pods}"),
    }
}

/// The pod source for node `n1` on an API server holding `pods`, and the receiving end of
/// what it hands over.
fn start(pods: &[&str]) -> (FakeApi, mpsc::Receiver<PodUpdate>, Task) {
    let api = FakeApi::new();
    for name in pods {
        api.put_pod(pod(name));
    }
    let (tx, rx) = mpsc::channel(pod_source::QUEUE);
    let source = Arc::new(api.clone());
    let task = Task::spawn(|cancel| pod_source::run(source, "n1".into(), tx, cancel));
    (api, rx, task)
}

/// The next update, within 5 s.
async fn next_update(rx: &mut mpsc::Receiver<PodUpdate>) -> PodUpdate {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn next(rx: &mut mpsc::Receiver<PodUpdate>) -> String {
    describe(&next_update(rx).await)
}

#[tokio::test(start_paused = true)]
async fn lists_then_follows_then_relists() {
    let (api, mut rx, task) = start(&["a", "b"]);
    assert_eq!(next(&mut rx).await, "apply a");
    assert_eq!(next(&mut rx).await, "apply b");
    assert_eq!(
        next(&mut rx).await,
        "synced 2",
        "the list is handed over before it is called synced"
    );
    api.put_pod(pod("c"));
    assert_eq!(next(&mut rx).await, "apply c");
    api.remove_pod("ns", "a");
    assert_eq!(next(&mut rx).await, "remove a");
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_relist_removes_pods_deleted_while_not_watching() {
    let (api, mut rx, task) = start(&["a", "b"]);
    for _ in 0..3 {
        next(&mut rx).await;
    }
    // "b" goes away while the watch is down; the watch lists afresh.
    api.lose_pod("ns", "b");
    api.relist_pod_watches();
    assert_eq!(
        next(&mut rx).await,
        "remove b",
        "pods gone first: they free room"
    );
    assert_eq!(next(&mut rx).await, "apply a");
    assert_eq!(next(&mut rx).await, "synced 1");
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_list_is_handed_over_oldest_first() {
    let api = FakeApi::new();
    for (name, created) in [
        ("a", "2026-01-03T00:00:00Z"),
        ("b", "2026-01-01T00:00:00Z"),
        ("c", "2026-01-02T00:00:00Z"),
    ] {
        let mut p = pod(name);
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created.parse().unwrap(),
        ));
        api.put_pod(p);
    }
    let (tx, mut rx) = mpsc::channel(pod_source::QUEUE);
    let source = Arc::new(api.clone());
    let task = Task::spawn(|cancel| pod_source::run(source, "n1".into(), tx, cancel));
    assert_eq!(next(&mut rx).await, "apply b");
    assert_eq!(next(&mut rx).await, "apply c");
    assert_eq!(next(&mut rx).await, "apply a");
    assert_eq!(next(&mut rx).await, "synced 3");
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stops_when_the_workers_stop_listening() {
    let (_api, rx, task) = start(&["a"]);
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task.handle)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_change_to_a_known_pod_is_handed_over_again() {
    let (api, mut rx, task) = start(&["a"]);
    assert_eq!(next(&mut rx).await, "apply a");
    assert_eq!(next(&mut rx).await, "synced 1");
    let mut changed = pod("a");
    changed.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
    api.put_pod(changed);
    match next_update(&mut rx).await {
        PodUpdate::Apply(p) => assert_eq!(p.metadata.labels.as_ref().unwrap()["k"], "v"),
        other => panic!("expected an apply, got {}", describe(&other)),
    }
    task.stop().await;
}
