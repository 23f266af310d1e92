//! kill -9 of the kubelet: running containers are adopted, not restarted, and pods deleted
//! while it was down are cleaned up when it returns. One test in its own binary: it stops
//! the node's kubelet, so nothing else may run meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::DeleteParams;
use kubelet_e2e::{TestNs, env, phase, runtime_objects};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn kubelet_pid() -> i32 {
    std::fs::read_to_string(env("KRS_KUBELET_PIDFILE"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn restart_adopts_running_containers() {
    let ns = TestNs::new("adopt").await;
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]);
    ns.create(&ns.pod("keep", "Always", c.clone())).await;
    ns.create(&ns.pod("gone", "Always", c)).await;
    let keep = ns
        .wait_pod("keep", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let gone = ns
        .wait_pod("gone", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let before = keep.status.unwrap().container_statuses.unwrap()[0].clone();
    let gone_uid = gone.metadata.uid.unwrap();

    let pid = kubelet_pid();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "kubelet did not die");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deleted while the kubelet is down: gone from the API at once.
    ns.pods()
        .delete(
            "gone",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ns.wait_gone("gone", Duration::from_secs(10)).await;
    assert_eq!(
        runtime_objects(&gone_uid).await.0,
        1,
        "still in the runtime while the kubelet is down"
    );

    let start = std::process::Command::new("bash")
        .arg("-c")
        .arg(env("KRS_KUBELET_START"))
        .status()
        .unwrap();
    assert!(start.success(), "restarting the kubelet failed");

    let deadline = Instant::now() + Duration::from_secs(20);
    while runtime_objects(&gone_uid).await != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the deleted pod's sandbox was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the adopted pod a full sync, then compare: same container, no restart.
    let p = ns
        .wait_pod("keep", Duration::from_secs(15), |p| phase(p) == "Running")
        .await;
    let after = p.status.unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!(
        after.container_id, before.container_id,
        "container was restarted"
    );
    assert_eq!(after.restart_count, 0);
    assert_eq!(
        runtime_objects(p.metadata.uid.as_deref().unwrap()).await,
        (1, 1)
    );
    ns.cleanup().await;
}
