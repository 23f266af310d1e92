//! Node-pressure eviction against the real API server and containerd, as upstream's e2e_node
//! eviction tests do it: the kubelet is restarted with a threshold just under what the node
//! has now, a BestEffort pod uses the resource up, and it is evicted (Failed, Evicted,
//! upstream's message, an EvictionThresholdMet event on the Node) while a Guaranteed pod keeps
//! running; the node reports the pressure condition and refuses new pods that pressure bars.
//!
//! The tests restart the node's kubelet: one at a time, restored at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Event, Node};
use kube::Api;
use kube::api::ListParams;
use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, container_status, env, eventually, kubelet_get, node_name, phase,
    restart_kubelet,
};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// The usual config with `evictionHard` (and anything else in `extra`) replaced.
fn config_with_eviction(extra: &str, tag: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(env("KRS_KUBELET_CONFIG")).unwrap();
    let kept: Vec<&str> = base
        .lines()
        .filter(|l| !l.starts_with("evictionHard:"))
        .collect();
    let p = std::env::temp_dir().join(format!("krs-e2e-{tag}-{}.yaml", std::process::id()));
    std::fs::write(&p, format!("{}\n{extra}\n", kept.join("\n"))).unwrap();
    p
}

/// The node's summary as the kubelet reports it.
fn summary() -> serde_json::Value {
    let (body, code) = kubelet_get("/stats/summary");
    assert_eq!(code, "200", "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn node_condition(ns: &TestNs, kind: &str) -> Option<String> {
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let n = nodes.get(&node_name()).await.ok()?;
    n.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status)
}

/// Now, less a second (events carry whole seconds).
fn started() -> k8s_openapi::jiff::Timestamp {
    #[allow(clippy::disallowed_methods)] // compared with the API server's event times
    let now = k8s_openapi::jiff::Timestamp::now();
    now - k8s_openapi::jiff::SignedDuration::from_secs(1)
}

/// Waits for a Warning event of that reason on the Node, with that message, sent since
/// `since` (the node's events outlive earlier runs).
async fn node_event(ns: &TestNs, reason: &str, message: &str, since: k8s_openapi::jiff::Timestamp) {
    let events: Api<Event> = Api::namespaced(ns.client.clone(), "default");
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Node,involvedObject.name={},reason={reason}",
        node_name()
    ));
    eventually(T, &format!("{reason} event on the Node"), || async {
        let l = events.list(&lp).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.message.as_deref() == Some(message)
                    && e.type_.as_deref() == Some("Warning")
                    && e.last_timestamp.as_ref().is_some_and(|t| t.0 >= since)
            })
            .then_some(())
    })
    .await;
}

/// The node reports `condition`; a new ordinary pod is refused with upstream's reason and
/// message while the Guaranteed `steady` pod runs on; then the condition clears.
async fn pressure_refuses_then_clears(ns: &TestNs, condition: &str) {
    eventually(T, &format!("{condition} on the Node"), || async {
        (node_condition(ns, condition).await.as_deref() == Some("True")).then_some(())
    })
    .await;
    let late = ns.pod(
        "late",
        "Never",
        json!([{"name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["true"]}]),
    );
    ns.create(&late).await;
    let p = ns.wait_pod("late", T, |p| phase(p) == "Failed").await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        st.message.as_deref(),
        Some(format!("Pod The node had condition: [{condition}]. ").as_str())
    );
    let s = ns.pods().get("steady").await.unwrap();
    assert_eq!(phase(&s), "Running");
    assert_eq!(container_status(&s, 0).restart_count, 0);
    eventually(T, &format!("{condition} cleared"), || async {
        (node_condition(ns, condition).await.as_deref() == Some("False")).then_some(())
    })
    .await;
}

/// A Guaranteed pod that sleeps.
fn steady(ns: &TestNs) -> k8s_openapi::api::core::v1::Pod {
    ns.pod(
        "steady",
        "Always",
        json!([{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "100m", "memory": "64Mi"}}}]),
    )
}

/// Checks the pod was evicted for `resource` as upstream words it.
async fn assert_evicted(ns: &TestNs, name: &str, resource: &str) {
    let p = ns.wait_pod(name, T, |p| phase(p) == "Failed").await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Evicted"), "{st:?}");
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.starts_with(&format!("The node was low on resource: {resource}. ")),
        "{msg}"
    );
    let e = ns.wait_event(name, "Evicted", T).await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.message.as_deref(), Some(msg.as_str()));
}

#[tokio::test]
async fn memory_pressure_evicts_the_best_effort_pod_and_spares_the_guaranteed_one() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("evict-mem").await;
    let since = started();
    // What the kubelet sees available now; the threshold sits 2 GiB below it (room for the
    // machine's own ups and downs), and the BestEffort pod puts 3.5 GiB into a memory-backed
    // emptyDir.
    let available = summary()["node"]["memory"]["availableBytes"]
        .as_u64()
        .unwrap();
    let threshold_mi = available.saturating_sub(2 << 30) >> 20;
    assert!(
        threshold_mi > 512,
        "the node has too little memory for this test"
    );
    let cfg = config_with_eviction(
        &format!(
            "evictionHard: {{memory.available: {threshold_mi}Mi, nodefs.available: 2%, imagefs.available: 2%}}\nevictionPressureTransitionPeriod: 30s\nkernelMemcgNotification: true"
        ),
        "evict-mem",
    );
    let _restore = Restore;
    restart_kubelet(Some(&cfg));
    ns.create(&steady(&ns)).await;
    ns.wait_pod("steady", T, |p| phase(p) == "Running").await;
    assert_eq!(
        node_condition(&ns, "MemoryPressure").await.as_deref(),
        Some("False")
    );

    let mut filler = ns.pod(
        "filler",
        "Never",
        json!([{"name": "fill", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "dd if=/dev/zero of=/cache/fill bs=1M count=3584; sleep 3600"],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]),
    );
    filler.spec.as_mut().unwrap().volumes =
        serde_json::from_value(json!([{"name": "cache", "emptyDir": {"medium": "Memory"}}]))
            .unwrap();
    ns.create(&filler).await;
    assert_evicted(&ns, "filler", "memory").await;
    // With kernelMemcgNotification the kernel woke the manager (cgroup v1, as this host).
    let log = std::fs::read_to_string(env("KRS_KUBELET_LOG_FILE")).unwrap_or_default();
    assert!(
        log.contains("memory threshold crossed (memcg notification)"),
        "the eviction manager was not woken by the kernel"
    );
    // klog's text lines: `I1201 15:04:05.000000    1234 file.rs:42] ...`.
    let klog = |l: &str| {
        let b = l.as_bytes();
        b.len() > 30
            && matches!(b[0], b'I' | b'W' | b'E')
            && b[1..5].iter().all(u8::is_ascii_digit)
            && l[21..]
                .trim_start()
                .split_once(' ')
                .is_some_and(|(pid, rest)| {
                    pid.bytes().all(|c| c.is_ascii_digit())
                        && rest.contains(".rs:")
                        && rest.contains("] ")
                })
    };
    assert!(
        log.lines()
            .filter(|l| !l.starts_with('['))
            .take(50)
            .all(klog),
        "not klog's format: {}",
        log.lines().next().unwrap_or_default()
    );
    let p = ns.pods().get("filler").await.unwrap();
    let msg = p.status.unwrap().message.unwrap();
    assert!(
        msg.contains("Container fill was using ")
            && msg.ends_with("which exceeds its request of 0. "),
        "{msg}"
    );
    node_event(
        &ns,
        "EvictionThresholdMet",
        "Attempting to reclaim memory",
        since,
    )
    .await;
    // The condition holds for the transition period; meanwhile BestEffort pods are refused
    // and the Guaranteed pod runs on; then it clears.
    pressure_refuses_then_clears(&ns, "MemoryPressure").await;
    // The container GC (every minute) takes an evicted pod's containers and sandbox; its
    // status stays as reported.
    let uid = ns.pods().get("filler").await.unwrap().metadata.uid.unwrap();
    eventually(
        Duration::from_secs(150),
        "the evicted pod's containers removed",
        || async { (kubelet_e2e::runtime_objects(&uid).await == (0, 0)).then_some(()) },
    )
    .await;
    let p = ns.pods().get("filler").await.unwrap();
    assert_eq!(
        p.status.as_ref().unwrap().reason.as_deref(),
        Some("Evicted")
    );
    assert!(
        container_status(&p, 0).state.unwrap().terminated.is_some(),
        "the last state survives the runtime's"
    );
    ns.cleanup().await;
    let _ = std::fs::remove_file(&cfg);
}

#[tokio::test]
async fn pid_pressure_evicts_the_pod_with_the_most_processes() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("evict-pid").await;
    let since = started();
    // The threshold sits 300 tasks below what is free now; the pod starts 600 sleepers.
    let rlimit = &summary()["node"]["rlimit"];
    let (max, cur) = (
        rlimit["maxpid"].as_i64().unwrap(),
        rlimit["curproc"].as_i64().unwrap(),
    );
    let threshold = max - cur - 300;
    assert!(
        threshold > 100,
        "too few free PIDs for this test: {max} max, {cur} in use"
    );
    let cfg = config_with_eviction(
        &format!(
            "evictionHard: {{pid.available: \"{threshold}\", memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}}\nevictionPressureTransitionPeriod: 30s\npodPidsLimit: 2000"
        ),
        "evict-pid",
    );
    let _restore = Restore;
    restart_kubelet(Some(&cfg));
    ns.create(&steady(&ns)).await;
    ns.wait_pod("steady", T, |p| phase(p) == "Running").await;
    let forker = ns.pod(
        "forker",
        "Never",
        json!([{"name": "fork", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "for i in $(seq 600); do sleep 3600 & done; wait"]}]),
    );
    ns.create(&forker).await;
    assert_evicted(&ns, "forker", "pids").await;
    node_event(
        &ns,
        "EvictionThresholdMet",
        "Attempting to reclaim pids",
        since,
    )
    .await;
    eventually(T, "PIDPressure on the Node", || async {
        (node_condition(&ns, "PIDPressure").await.as_deref() == Some("True")).then_some(())
    })
    .await;
    let s = ns.pods().get("steady").await.unwrap();
    assert_eq!(phase(&s), "Running");
    assert_eq!(container_status(&s, 0).restart_count, 0);
    ns.cleanup().await;
    let _ = std::fs::remove_file(&cfg);
}

/// The runtime's image names (containerd's k8s.io namespace).
fn images() -> Vec<String> {
    let out = std::process::Command::new("ctr")
        .args([
            "--address",
            &env("KRS_CONTAINERD_SOCK"),
            "-n",
            "k8s.io",
            "images",
            "ls",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ctr images ls failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn disk_pressure_takes_unused_images_first_then_evicts_the_writer() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("evict-disk").await;
    let since = started();
    // An image no pod uses, imported again for this run.
    let victim = env("KRS_GC_VICTIM");
    if !images().contains(&victim) {
        let ok = std::process::Command::new("ctr")
            .args([
                "--address",
                &env("KRS_CONTAINERD_SOCK"),
                "-n",
                "k8s.io",
                "images",
                "import",
            ])
            .arg(env("KRS_GC_VICTIM_TAR"))
            .status()
            .unwrap()
            .success();
        assert!(
            ok && images().contains(&victim),
            "importing {victim} failed"
        );
    }
    // nodefs.available sits 1 GiB under what is free now (the kubelet's root dir and the
    // images share this disk, as upstream's e2e_node disk tests assume); the BestEffort pod
    // writes 2 GiB into a disk-backed emptyDir.
    let available = summary()["node"]["fs"]["availableBytes"].as_u64().unwrap();
    let threshold_mi = available.saturating_sub(1 << 30) >> 20;
    assert!(
        threshold_mi > 1024,
        "the node has too little free disk for this test"
    );
    let cfg = config_with_eviction(
        &format!(
            "evictionHard: {{nodefs.available: {threshold_mi}Mi, imagefs.available: 2%, memory.available: 100Mi}}\nevictionPressureTransitionPeriod: 30s"
        ),
        "evict-disk",
    );
    let _restore = Restore;
    restart_kubelet(Some(&cfg));
    ns.create(&steady(&ns)).await;
    ns.wait_pod("steady", T, |p| phase(p) == "Running").await;
    assert!(
        images().contains(&victim),
        "image GC ran before the pressure"
    );

    let mut writer = ns.pod(
        "writer",
        "Never",
        json!([{"name": "fill", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=2048; sync; sleep 3600"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]),
    );
    writer.spec.as_mut().unwrap().volumes =
        serde_json::from_value(json!([{"name": "data", "emptyDir": {}}])).unwrap();
    ns.create(&writer).await;
    assert_evicted(&ns, "writer", "ephemeral-storage").await;
    let (metrics, code) = kubelet_get("/metrics");
    assert_eq!(code, "200");
    assert!(
        metrics.contains("kubelet_evictions{eviction_signal=\"nodefs.available\"} 1"),
        "{metrics}"
    );
    // Node-level reclaim came first: the unused image is gone, the images in use are not.
    let left = images();
    assert!(!left.contains(&victim), "{victim} survived: {left:?}");
    assert!(
        left.iter()
            .any(|i| i.starts_with("docker.io/library/busybox")),
        "{left:?}"
    );
    node_event(
        &ns,
        "EvictionThresholdMet",
        "Attempting to reclaim ephemeral-storage",
        since,
    )
    .await;
    // Under disk pressure only critical pods are admitted; the evicted pod's emptyDir goes
    // with it, and the pressure clears.
    pressure_refuses_then_clears(&ns, "DiskPressure").await;
    ns.cleanup().await;
    let _ = std::fs::remove_file(&cfg);
}
