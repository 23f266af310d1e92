//! Local-storage eviction on ephemeral-storage limits: a container whose writable layer and
//! logs outgrow its own limit, and a pod whose ephemeral storage (emptyDirs included) outgrows
//! its containers' summed limits, are evicted with upstream's words; a pod within its limits
//! keeps running. (The emptyDir `sizeLimit` case is in volumes.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{TestNs, phase};
use serde_json::json;
use std::time::Duration;

const BB: &str = "docker.io/library/busybox:latest";

fn limited(name: &str, limit: &str, script: &str) -> serde_json::Value {
    json!({
        "name": name, "image": BB, "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "resources": {"limits": {"ephemeral-storage": limit}},
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    })
}

#[tokio::test]
async fn container_and_pod_ephemeral_storage_limits() {
    let ns = TestNs::new("evict-storage").await;
    let scratch = json!([{"name": "scratch", "emptyDir": {}}]);
    let with_scratch = |name: &str, c: serde_json::Value| {
        let mut p = ns.pod(name, "Always", c);
        p.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(scratch.clone()).unwrap());
        p
    };
    // 4 MiB into a container's own root: over its 1Mi, while the pod stays under the 11Mi
    // its two containers allow together (the pod check comes first, as upstream's).
    ns.create(&with_scratch(
        "rootfs",
        json!([
            limited(
                "main",
                "1Mi",
                "dd if=/dev/zero of=/big bs=1M count=4 && sleep 3600"
            ),
            limited("side", "10Mi", "sleep 3600"),
        ]),
    ))
    .await;
    // 6 MiB into an emptyDir without a sizeLimit: the container's root stays small, the pod's
    // total is over the 4Mi its container allows.
    ns.create(&with_scratch(
        "emptydir",
        json!([limited(
            "main",
            "4Mi",
            "dd if=/dev/zero of=/scratch/big bs=1M count=6 && sleep 3600",
        )]),
    ))
    .await;
    // Within its limit.
    ns.create(&with_scratch(
        "within",
        json!([limited(
            "main",
            "20Mi",
            "dd if=/dev/zero of=/big bs=1M count=1 && sleep 3600",
        )]),
    ))
    .await;

    for (pod, msg) in [
        (
            "rootfs",
            "Container main exceeded its local ephemeral storage limit \"1Mi\". ",
        ),
        (
            "emptydir",
            "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. ",
        ),
    ] {
        // The runtime refreshes writable-layer usage every 10 s and the eviction manager
        // checks every 10 s.
        let p = ns
            .wait_pod(pod, Duration::from_secs(90), |p| phase(p) == "Failed")
            .await;
        let st = p.status.unwrap();
        assert_eq!(st.reason.as_deref(), Some("Evicted"), "{pod}");
        assert_eq!(st.message.as_deref(), Some(msg), "{pod}");
        let ev = ns.wait_event(pod, "Evicted", Duration::from_secs(10)).await;
        assert_eq!(ev.message.as_deref(), Some(msg), "{pod}");
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
    }
    let p = ns
        .wait_pod("within", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    assert!(
        p.status.unwrap().reason.is_none(),
        "the pod within its limit stays"
    );
    ns.cleanup().await;
}

/// A container that fills the files the kubelet gives it on the node's disk, /etc/hosts and
/// its termination log, is evicted like one filling its root (CVE-2020-8557).
#[tokio::test]
async fn filling_etc_hosts_or_the_termination_log_evicts() {
    let ns = TestNs::new("evict-hosts").await;
    let script = |file: &str| format!("dd if=/dev/zero of={file} bs=1M count=6 && sleep 3600");
    for (name, file) in [("hosts", "/etc/hosts"), ("termlog", "/dev/termination-log")] {
        let c = json!([{
            "name": "main", "image": BB, "imagePullPolicy": "Never",
            "command": ["sh", "-c", script(file)],
            "resources": {"limits": {"ephemeral-storage": "4Mi"}},
        }]);
        ns.create(&ns.pod(name, "Always", c)).await;
    }
    let msg = "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. ";
    for pod in ["hosts", "termlog"] {
        let p = ns
            .wait_pod(pod, Duration::from_secs(60), |p| phase(p) == "Failed")
            .await;
        let st = p.status.unwrap();
        assert_eq!(st.reason.as_deref(), Some("Evicted"), "{pod}");
        assert_eq!(st.message.as_deref(), Some(msg), "{pod}");
    }
    ns.cleanup().await;
}
