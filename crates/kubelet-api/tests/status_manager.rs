//! The status manager against the in-memory API server, on a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Task;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet_api::fake::FakeApi;
use kubelet_api::status_manager::StatusManager;
use std::sync::Arc;
use std::time::Duration;

fn pod(name: &str, uid: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": name, "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }))
    .unwrap()
}

fn phase(p: &str) -> PodStatus {
    PodStatus {
        phase: Some(p.into()),
        ..Default::default()
    }
}

struct Running {
    api: FakeApi,
    status: StatusManager,
    task: Task,
}

fn start() -> Running {
    let api = FakeApi::new();
    let status = StatusManager::new(Some(Arc::new(api.clone())));
    let task = Task::spawn(|cancel| status.clone().run(cancel));
    Running { api, status, task }
}

/// A running manager, and pod `a` (UID `u1`) stored in the API server.
fn start_with_pod() -> (Running, Pod) {
    let r = start();
    let p = pod("a", "u1");
    r.api.put_pod(p.clone());
    (r, p)
}

impl Running {
    async fn stop(self) {
        self.task.stop().await;
    }
}

async fn settle(r: &Running) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while r.status.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let in-flight requests finish.
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn only_changed_statuses_are_sent() {
    let (r, p) = start_with_pod();
    r.status.set_pod_status(&p, phase("Pending"));
    r.api.wait_for(|s| s.status_patches.len() == 1).await;
    // The same status again: nothing to send.
    r.status.set_pod_status(&p, phase("Pending"));
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 1);
    r.status.set_pod_status(&p, phase("Running"));
    r.api.wait_for(|s| s.status_patches.len() == 2).await;
    {
        let s = r.api.state();
        assert_eq!(s.status_patches[1].1.phase.as_deref(), Some("Running"));
        assert_eq!(s.status_patches[1].0.uid, "u1");
    }
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn newest_status_wins_over_unsent_older_ones() {
    let (r, p) = start_with_pod();
    // Many updates before the manager runs: only the last is sent.
    for ph in ["Pending", "Running", "Succeeded"] {
        r.status.set_pod_status(&p, phase(ph));
    }
    r.api.wait_for(|s| !s.status_patches.is_empty()).await;
    settle(&r).await;
    {
        let s = r.api.state();
        assert_eq!(s.status_patches.len(), 1, "{:?}", s.status_patches);
        assert_eq!(s.status_patches[0].1.phase.as_deref(), Some("Succeeded"));
    }
    assert_eq!(
        r.status.cached("u1").and_then(|s| s.phase).as_deref(),
        Some("Succeeded")
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_patches_are_retried() {
    let (r, p) = start_with_pod();
    r.api.fail("patch_pod_status", 3, 500);
    r.status.set_pod_status(&p, phase("Running"));
    r.api.wait_for(|s| s.status_patches.len() == 1).await;
    assert_eq!(r.api.count("patch_pod_status"), 4);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_recreated_pod_does_not_get_the_old_status() {
    let r = start();
    let old = pod("a", "old");
    // The API server holds a new pod under the same name.
    r.api.put_pod(pod("a", "new"));
    r.status.set_pod_status(&old, phase("Failed"));
    settle(&r).await;
    assert!(r.api.state().status_patches.is_empty());
    // The refused pod is tombstoned: later updates for it are not sent either.
    r.status.set_pod_status(&old, phase("Running"));
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 1);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn terminated_pods_get_their_final_status_then_are_deleted() {
    let (r, p) = start_with_pod();
    r.status.set_pod_status(&p, phase("Succeeded"));
    r.status.terminate_and_delete(&p);
    r.api.wait_for(|s| !s.deleted_pods.is_empty()).await;
    {
        let s = r.api.state();
        assert_eq!(s.status_patches.len(), 1);
        assert_eq!(s.deleted_pods[0].uid, "u1");
        let order: Vec<&str> = s
            .calls
            .iter()
            .map(String::as_str)
            .filter(|c| *c != "put_pod")
            .collect();
        assert_eq!(order, ["patch_pod_status", "delete_pod"]);
    }
    // Deleted: nothing more goes out for it.
    r.status.set_pod_status(&p, phase("Failed"));
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 1);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_delete_is_retried() {
    let (r, p) = start_with_pod();
    r.api.fail("delete_pod", 2, 503);
    r.status.terminate_and_delete(&p);
    r.api.wait_for(|s| !s.deleted_pods.is_empty()).await;
    assert_eq!(r.api.count("delete_pod"), 3);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn standalone_keeps_statuses_and_sends_nothing() {
    let status = StatusManager::new(None);
    let task = Task::spawn(|cancel| status.clone().run(cancel));
    let p = pod("a", "u1");
    status.set_pod_status(&p, phase("Running"));
    assert_eq!(
        status.cached("u1").and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    status.forget("u1");
    assert!(status.cached("u1").is_none());
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn many_pods_are_all_sent() {
    let r = start();
    for i in 0..50 {
        let p = pod(&format!("p{i}"), &format!("u{i}"));
        r.api.put_pod(p.clone());
        r.status.set_pod_status(&p, phase("Running"));
    }
    r.api.wait_for(|s| s.status_patches.len() == 50).await;
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 50);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_gone_from_the_api_server_is_tombstoned() {
    let r = start();
    let p = pod("a", "u1");
    // Never stored: the patch answers 404.
    r.status.set_pod_status(&p, phase("Running"));
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 1);
    // Nothing more is sent for it, and a delete is not attempted either.
    r.status.set_pod_status(&p, phase("Failed"));
    r.status.terminate_and_delete(&p);
    settle(&r).await;
    assert_eq!(r.api.count("patch_pod_status"), 1);
    assert_eq!(r.api.count("delete_pod"), 0);
    // Once the watch reports it gone, it is forgotten.
    r.status.forget("u1");
    assert!(r.status.cached("u1").is_none());
    r.stop().await;
}
