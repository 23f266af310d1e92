//! Pod admission against the real API server and containerd: a pod bound straight to the
//! node (`nodeName`, no scheduler) that does not fit is failed with upstream's reason, status
//! message and event, and never started: OutOfcpu, NodeAffinity (a label added through the API
//! counts at once), NodePorts, and OutOfpods under a small `maxPods`.
//!
//! The tests restart the node's kubelet or depend on what runs on it: one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, client, config_with, eventually, node_name, phase,
    restart_kubelet, runtime_objects,
};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const LABEL: &str = "e2e.kubelet-rs.io/admission";

fn sleeper() -> serde_json::Value {
    json!([{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sleep", "3600"]}])
}

/// The rejected pod: Failed with the reason and `Pod <message>`, a Warning event with the
/// message, and nothing of it in the runtime.
async fn assert_rejected(ns: &TestNs, name: &str, reason: &str, message: &str) {
    let p = ns.wait_pod(name, T, |p| phase(p) == "Failed").await;
    let st = p.status.clone().unwrap();
    assert_eq!(st.reason.as_deref(), Some(reason), "{name}: {st:?}");
    assert_eq!(
        st.message.as_deref(),
        Some(format!("Pod {message}").as_str())
    );
    let e = ns.wait_event(name, reason, T).await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.message.as_deref(), Some(message));
    let uid = p.metadata.uid.unwrap();
    assert_eq!(runtime_objects(&uid).await, (0, 0), "{name} never started");
}

/// Removes the test's label from the node, even when the test fails.
struct Unlabel;
impl Drop for Unlabel {
    fn drop(&mut self) {
        let _ = std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let nodes: Api<Node> = Api::all(client().await);
                let patch = json!({"metadata": {"labels": {LABEL: null}}});
                let _ = nodes
                    .patch(&node_name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn pods_that_do_not_fit_are_failed_with_upstreams_reasons() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("admit").await;
    let pods = ns.pods();

    // OutOfcpu: the message gives the request, what is in use and the allocatable.
    let mut hog = ns.pod("hog", "Never", sleeper());
    hog.spec.as_mut().unwrap().containers[0].resources =
        serde_json::from_value(json!({"requests": {"cpu": "1000"}})).unwrap();
    ns.create(&hog).await;
    let p = ns.wait_pod("hog", T, |p| phase(p) == "Failed").await;
    let msg = p.status.unwrap().message.unwrap();
    assert!(
        msg.starts_with("Pod Node didn't have enough resource: cpu, requested: 1000000, used: "),
        "{msg}"
    );
    assert_rejected(&ns, "hog", "OutOfcpu", msg.strip_prefix("Pod ").unwrap()).await;

    // NodeAffinity: a nodeSelector the node does not match...
    let mut picky = ns.pod("picky", "Never", sleeper());
    picky.spec.as_mut().unwrap().node_selector =
        Some([(LABEL.to_string(), ns.name.clone())].into());
    ns.create(&picky).await;
    assert_rejected(
        &ns,
        "picky",
        "NodeAffinity",
        "Predicate NodeAffinity failed",
    )
    .await;
    // ...until the label is put on the Node through the API.
    let _unlabel = Unlabel;
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let patch = json!({"metadata": {"labels": {LABEL: ns.name}}});
    nodes
        .patch(&node_name(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut labelled = picky.clone();
    labelled.metadata.name = Some("labelled".into());
    ns.create(&labelled).await;
    ns.wait_pod("labelled", T, |p| phase(p) == "Running").await;
    // Required node affinity is judged the same way.
    let mut affine = ns.pod("affine", "Never", sleeper());
    affine.spec.as_mut().unwrap().affinity = serde_json::from_value(json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": LABEL, "operator": "NotIn", "values": [ns.name]}]}]}}}))
    .unwrap();
    ns.create(&affine).await;
    assert_rejected(
        &ns,
        "affine",
        "NodeAffinity",
        "Predicate NodeAffinity failed",
    )
    .await;

    // NodePorts: a host port another pod of the node holds.
    let port = |name: &str| {
        let mut p = ns.pod(name, "Never", sleeper());
        p.spec.as_mut().unwrap().containers[0].ports =
            serde_json::from_value(json!([{"containerPort": 80, "hostPort": 31789}])).unwrap();
        p
    };
    ns.create(&port("port-a")).await;
    ns.wait_pod("port-a", T, |p| phase(p) == "Running").await;
    ns.create(&port("port-b")).await;
    assert_rejected(&ns, "port-b", "NodePorts", "Predicate NodePorts failed").await;

    // The pods that fit are untouched.
    for name in ["labelled", "port-a"] {
        assert_eq!(phase(&pods.get(name).await.unwrap()), "Running", "{name}");
    }
    ns.cleanup().await;
}

/// The pods on the node that count against `maxPods`: not yet finished.
async fn active_on_node() -> usize {
    let pods: Api<Pod> = Api::all(client().await);
    let lp = ListParams::default().fields(&format!("spec.nodeName={}", node_name()));
    pods.list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
        .count()
}

#[tokio::test]
async fn max_pods_makes_the_next_pod_out_of_pods() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("maxpods").await;
    let _restore = Restore;
    let nodes: Api<Node> = Api::all(ns.client.clone());
    // Room for exactly one more pod. Pods of tests running beside this one (the
    // token-renewal test's) may appear meanwhile: then count again.
    let mut max = 0;
    let mut cfg = std::path::PathBuf::new();
    for _ in 0..3 {
        let n = active_on_node().await;
        max = n + 1;
        cfg = config_with(&format!("maxPods: {max}"), "maxpods");
        restart_kubelet(Some(&cfg));
        // Admission judges against the Node as the API server has it: wait for the new
        // capacity.
        eventually(T, "the node's allocatable pods", || async {
            let n = nodes.get(&node_name()).await.ok()?;
            let pods = n.status?.allocatable?.get("pods")?.0.clone();
            (pods == max.to_string()).then_some(())
        })
        .await;
        if active_on_node().await == n {
            break;
        }
    }
    ns.create(&ns.pod("first", "Never", sleeper())).await;
    ns.wait_pod("first", T, |p| phase(p) == "Running").await;
    ns.create(&ns.pod("second", "Never", sleeper())).await;
    assert_rejected(
        &ns,
        "second",
        "OutOfpods",
        &format!(
            "Node didn't have enough resource: pods, requested: 1, used: {max}, capacity: {max}"
        ),
    )
    .await;
    ns.cleanup().await;
    let _ = std::fs::remove_file(&cfg);
}
