//! Bad input ends in upstream's waiting or terminated reason, never a hang, and does not
//! disturb other pods.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{TestNs, container_state, phase, waiting_reason};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn missing_image_with_never_policy() {
    let ns = TestNs::new("noimg").await;
    let c =
        json!([{"name": "main", "image": "example.invalid/nothing:1", "imagePullPolicy": "Never"}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(15), |p| {
            waiting_reason(p, 0).as_deref() == Some("ErrImageNeverPull")
        })
        .await;
    assert_eq!(
        container_state(&p, 0)["waiting"]["message"],
        "Container image \"example.invalid/nothing:1\" is not present with pull policy of Never"
    );
    assert_eq!(phase(&p), "Pending");
    ns.cleanup().await;
}

#[tokio::test]
async fn unpullable_image_backs_off() {
    let ns = TestNs::new("pull").await;
    // A registry address on loopback where nothing listens: the pull fails at once.
    let c = json!([{"name": "main", "image": "127.0.0.1:1/nothing:1", "imagePullPolicy": "IfNotPresent"}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(20), |p| {
        waiting_reason(p, 0).as_deref() == Some("ErrImagePull")
    })
    .await;
    let msg = ns
        .wait_waiting("p", "ImagePullBackOff", Duration::from_secs(20))
        .await;
    assert_eq!(msg, "Back-off pulling image \"127.0.0.1:1/nothing:1\"");
    ns.cleanup().await;
}

#[tokio::test]
async fn invalid_image_name() {
    let ns = TestNs::new("badname").await;
    let c =
        json!([{"name": "main", "image": "Not/A/Valid:Name", "imagePullPolicy": "IfNotPresent"}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    let msg = ns
        .wait_waiting("p", "InvalidImageName", Duration::from_secs(15))
        .await;
    assert!(
        msg.starts_with("Failed to apply default image tag \"Not/A/Valid:Name\""),
        "{msg}"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn bad_command_fails_without_hurting_neighbours() {
    let ns = TestNs::new("badcmd").await;
    let bad = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["/no/such/binary"]}]);
    let good = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]);
    ns.create(&ns.pod("never", "Never", bad.clone())).await;
    ns.create(&ns.pod("always", "Always", bad)).await;
    ns.create(&ns.pod("neighbour", "Always", good)).await;
    let p = ns
        .wait_pod("never", Duration::from_secs(15), |p| phase(p) == "Failed")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(t["reason"], "StartError");
    assert_eq!(t["exitCode"], 128);
    assert!(t["message"].as_str().unwrap().contains("/no/such/binary"));
    // Under Always the failed start is retried with back-off.
    ns.wait_pod("always", Duration::from_secs(20), |p| {
        waiting_reason(p, 0).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    ns.wait_pod("neighbour", Duration::from_secs(10), |p| {
        phase(p) == "Running"
    })
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn crash_loop_counts_restarts() {
    let ns = TestNs::new("crash").await;
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sh", "-c", "exit 1"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| {
            waiting_reason(p, 0).as_deref() == Some("CrashLoopBackOff")
                && p.status
                    .as_ref()
                    .unwrap()
                    .container_statuses
                    .as_ref()
                    .unwrap()[0]
                    .restart_count
                    >= 1
        })
        .await;
    let cs = &p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let msg = container_state(&p, 0)["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=main pod=p_"),
        "{msg}"
    );
    let last = serde_json::to_value(&cs.last_state).unwrap();
    assert_eq!(last["terminated"]["exitCode"], 1);
    assert_eq!(last["terminated"]["reason"], "Error");
    assert_eq!(phase(&p), "Running");
    ns.cleanup().await;
}
