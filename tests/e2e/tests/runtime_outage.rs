//! The runtime goes away for 10 s: the node turns NotReady and back, running pods are left
//! alone, a pod created meanwhile starts once the runtime is back, and no sandbox is left
//! orphaned. One test in its own binary: it stops the node's containerd.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubelet_e2e::{TestNs, env, node_name, phase, runtime_objects};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn run(var: &str) {
    let ok = std::process::Command::new("bash")
        .arg("-c")
        .arg(env(var))
        .status()
        .unwrap()
        .success();
    assert!(ok, "{var} failed");
}

async fn wait_ready(nodes: &Api<Node>, want: &str, timeout: Duration) -> String {
    let name = node_name();
    let want = want.to_string();
    let cond =
        kube::runtime::wait::await_condition(nodes.clone(), &name, move |n: Option<&Node>| {
            n.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == want))
        });
    let n = tokio::time::timeout(timeout, cond)
        .await
        .expect("node readiness")
        .unwrap()
        .unwrap();
    let conds = n.status.unwrap().conditions.unwrap();
    conds
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .unwrap_or_default()
}

#[tokio::test]
async fn runtime_outage_recovers_without_orphans() {
    let ns = TestNs::new("outage").await;
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]);
    ns.create(&ns.pod("before", "Always", c.clone())).await;
    let before = ns
        .wait_pod("before", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let id_before = before
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone();

    run("KRS_RUNTIME_DOWN");
    let down_at = Instant::now();
    ns.create(&ns.pod("during", "Always", c)).await;
    let msg = wait_ready(&nodes, "False", Duration::from_secs(10)).await;
    assert!(msg.contains("container runtime is down"), "{msg}");
    tokio::time::sleep_until(down_at + Duration::from_secs(10)).await; // the outage itself
    run("KRS_RUNTIME_UP");

    wait_ready(&nodes, "True", Duration::from_secs(20)).await;
    let during = ns
        .wait_pod("during", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;
    let after = ns
        .wait_pod("before", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let cs = &after
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        cs.container_id, id_before,
        "a running container was restarted"
    );
    assert_eq!(cs.restart_count, 0);
    assert_eq!(
        runtime_objects(before.metadata.uid.as_deref().unwrap()).await,
        (1, 1)
    );
    assert_eq!(
        runtime_objects(during.metadata.uid.as_deref().unwrap()).await,
        (1, 1),
        "one sandbox, no orphans"
    );
    ns.cleanup().await;
}
