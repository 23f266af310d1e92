//! Pods through their life: running with upstream's status, exit codes, graceful deletion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::DeleteParams;
use kubelet_e2e::{TestNs, condition, container_state, phase, runtime_objects};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn busybox(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
           "command": ["sh", "-c", script]})
}

#[tokio::test]
async fn pod_runs_with_upstream_status() {
    let ns = TestNs::new("run").await;
    let pod = ns.pod(
        "web",
        "Always",
        json!([busybox("a", "sleep 3600"), busybox("b", "sleep 3600")]),
    );
    let t0 = Instant::now();
    ns.create(&pod).await;
    let p = ns
        .wait_pod("web", Duration::from_secs(10), |p| {
            phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "Running and Ready took {took:?}"
    );
    let s = p.status.clone().unwrap();
    for kind in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        let c = condition(&p, kind).unwrap();
        assert_eq!(c.status, "True", "{kind}");
        assert!(c.last_transition_time.is_some());
    }
    assert!(s.host_ip.is_some());
    let ip = s.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.88."), "pod IP {ip} from the CNI bridge");
    assert_eq!(s.pod_ips.unwrap()[0].ip, ip);
    assert!(s.start_time.is_some());
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let cs = s.container_statuses.unwrap();
    assert_eq!(
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    for c in &cs {
        assert!(c.ready && c.started == Some(true));
        assert_eq!(c.restart_count, 0);
        assert!(
            c.container_id
                .as_deref()
                .unwrap()
                .starts_with("containerd://")
        );
        assert!(!c.image_id.is_empty());
        assert_eq!(c.image, "docker.io/library/busybox:latest");
        assert!(
            c.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at
                .is_some()
        );
    }
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(
        runtime_objects(&uid).await,
        (1, 2),
        "one sandbox, two containers"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn exit_codes_show_in_terminated_states() {
    let ns = TestNs::new("exit").await;
    ns.create(&ns.pod("fail", "Never", json!([busybox("main", "exit 3")])))
        .await;
    ns.create(&ns.pod("ok", "Never", json!([busybox("main", "echo done")])))
        .await;
    ns.create(&ns.pod("retry", "OnFailure", json!([busybox("main", "exit 0")])))
        .await;
    let p = ns
        .wait_pod("fail", Duration::from_secs(15), |p| phase(p) == "Failed")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert!(
        t["finishedAt"].is_string()
            && t["containerID"]
                .as_str()
                .unwrap()
                .starts_with("containerd://")
    );
    let ready = condition(&p, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("ContainersNotReady"))
    );
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [main]")
    );

    let p = ns
        .wait_pod("ok", Duration::from_secs(15), |p| phase(p) == "Succeeded")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    assert_eq!(
        condition(&p, "Ready").unwrap().reason.as_deref(),
        Some("PodCompleted")
    );
    let p = ns
        .wait_pod("retry", Duration::from_secs(15), |p| {
            phase(p) == "Succeeded"
        })
        .await;
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn graceful_delete_completes_and_cleans_the_runtime() {
    let ns = TestNs::new("del").await;
    // A shell that ignores SIGTERM: only the SIGKILL after the grace period ends it.
    ns.create(&ns.pod(
        "victim",
        "Always",
        json!([busybox("main", "trap '' TERM; sleep 3600 & wait")]),
    ))
    .await;
    let p = ns
        .wait_pod("victim", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    let t0 = Instant::now();
    ns.pods()
        .delete(
            "victim",
            &DeleteParams {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ns.wait_gone("victim", Duration::from_secs(10)).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "delete with a 1 s grace period took {took:?}"
    );
    assert_eq!(
        runtime_objects(&uid).await,
        (0, 0),
        "sandbox and containers removed"
    );
    let logs = std::path::Path::new("/var/log/pods").join(format!("{}_victim_{uid}", ns.name));
    assert!(!logs.exists(), "{} left behind", logs.display());
    ns.cleanup().await;
}
