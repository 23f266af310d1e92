//! Container GC's limits against the real runtime: with
//! `--maximum-dead-containers-per-container=2`, a crash-looping container keeps its two
//! newest dead instances (upstream's default keeps one), and the pod's restarts and status
//! go on as usual.
//!
//! The test restarts the node's kubelet with the flag; the usual kubelet comes back at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, container_status, eventually, exited_containers,
    restart_kubelet_with,
};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn dead_containers_are_kept_to_the_per_container_limit() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("container-gc").await;
    let _restore = Restore;
    restart_kubelet_with(
        None,
        Some("--v=2 --maximum-dead-containers-per-container=2"),
    );
    let crash = ns.pod(
        "crash",
        "Always",
        json!([{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "exit 3"]}]),
    );
    ns.create(&crash).await;
    // Four runs (back-off 10 s, 20 s, 40 s): three dead instances, of which two are kept
    // (one under upstream's default, all three with no limit).
    let restarts = |n: i32| {
        move |p: &k8s_openapi::api::core::v1::Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.restart_count >= n)
        }
    };
    let p = ns
        .wait_pod("crash", Duration::from_secs(120), restarts(3))
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    eventually(
        Duration::from_secs(30),
        "two dead instances kept",
        || async { (exited_containers(&uid).await == 2).then_some(()) },
    )
    .await;
    let p = ns.pods().get("crash").await.unwrap();
    let cs = container_status(&p, 0);
    assert_eq!(
        cs.last_state
            .and_then(|s| s.terminated)
            .map(|t| t.exit_code),
        Some(3),
        "the newest dead instance still gives lastState"
    );
    ns.cleanup().await;
}
