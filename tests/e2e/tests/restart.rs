//! kill -9 of the kubelet: running containers are adopted, not restarted, and pods deleted
//! while it was down are cleaned up when it returns, volumes included (reconstructed from
//! what is on disk). One test in its own binary: it stops the node's kubelet, so nothing else
//! may run meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::DeleteParams;
use kubelet_e2e::{
    TestNs, env, eventually, kubelet_pid, kubelet_root, phase, pod_mounts, runtime_objects,
};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test]
async fn restart_adopts_running_containers() {
    let ns = TestNs::new("adopt").await;
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}, {"name": "tok", "mountPath": "/var/run/tok"}]}]);
    // A tmpfs emptyDir and a projected token: mounts the kubelet must find again on disk.
    let with_volumes = |name: &str| {
        let mut p = ns.pod(name, "Always", c.clone());
        p.spec.as_mut().unwrap().volumes = Some(
            serde_json::from_value(json!([
                {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}]}},
            ]))
            .unwrap(),
        );
        p
    };
    ns.create(&with_volumes("keep")).await;
    ns.create(&with_volumes("gone")).await;
    let keep = ns
        .wait_pod("keep", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let gone = ns
        .wait_pod("gone", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let before = keep.status.unwrap().container_statuses.unwrap()[0].clone();
    let gone_uid = gone.metadata.uid.unwrap();
    let keep_uid = keep.metadata.uid.unwrap();
    assert_eq!(
        pod_mounts(&gone_uid).len(),
        2,
        "{:?}",
        pod_mounts(&gone_uid)
    );
    let keep_mounts = pod_mounts(&keep_uid);
    assert_eq!(keep_mounts.len(), 2, "{keep_mounts:?}");
    let token_file = kubelet_root().join(format!(
        "pods/{keep_uid}/volumes/kubernetes.io~projected/tok/token"
    ));
    let token = std::fs::read_to_string(&token_file).unwrap();

    let pid = kubelet_pid().expect("the kubelet's pid");
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
    // The deleted pod's volumes are unmounted and its directory removed; the kept pod keeps
    // its mounts, and its token, read back from disk, is not rotated by the restart.
    let gone_dir = kubelet_root().join("pods").join(&gone_uid);
    eventually(
        Duration::from_secs(25),
        "deleted pod's volumes cleaned",
        || {
            let done = pod_mounts(&gone_uid).is_empty() && !gone_dir.exists();
            async move { done.then_some(()) }
        },
    )
    .await;
    assert_eq!(pod_mounts(&keep_uid), keep_mounts);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    ns.cleanup().await;
    eventually(
        Duration::from_secs(25),
        "kept pod's volumes cleaned",
        || {
            let done = pod_mounts(&keep_uid).is_empty();
            async move { done.then_some(()) }
        },
    )
    .await;
}
