//! Container lifecycle: init containers in order, postStart and preStop hooks, termination
//! messages, activeDeadlineSeconds, events, and CrashLoopBackOff timing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kubelet_e2e::{TestNs, condition, container_state, phase};
use serde_json::json;
use std::time::Duration;

const BB: &str = "docker.io/library/busybox:latest";

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": BB, "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

fn ts(v: &serde_json::Value) -> k8s_openapi::jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

async fn wait_event(ns: &TestNs, pod: &str, reason: &str, timeout: Duration) -> Event {
    ns.wait_event(pod, reason, timeout).await
}

async fn events_for(ns: &TestNs, pod: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

#[tokio::test]
async fn init_containers_run_in_order() {
    let ns = TestNs::new("init").await;
    let mut pod = ns.pod("p", "Always", json!([sh("app", "sleep 3600")]));
    pod.spec.as_mut().unwrap().init_containers = Some(
        serde_json::from_value(json!([sh("first", "sleep 1"), sh("second", "exit 0")])).unwrap(),
    );
    ns.create(&pod).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let inits = p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert_eq!(
        inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    let first = serde_json::to_value(&inits[0].state).unwrap()["terminated"].clone();
    let second = serde_json::to_value(&inits[1].state).unwrap()["terminated"].clone();
    assert_eq!(first["reason"], "Completed");
    assert_eq!(second["reason"], "Completed");
    assert!(
        ts(&second["startedAt"]) >= ts(&first["finishedAt"]),
        "second started after first finished"
    );
    assert!(inits.iter().all(|c| c.ready));
    assert_eq!(condition(&p, "Initialized").unwrap().status, "True");
    ns.cleanup().await;
}

#[tokio::test]
async fn failed_init_container() {
    let ns = TestNs::new("initfail").await;
    for (name, policy) in [("never", "Never"), ("always", "Always")] {
        let mut pod = ns.pod(name, policy, json!([sh("app", "sleep 3600")]));
        pod.spec.as_mut().unwrap().init_containers =
            Some(serde_json::from_value(json!([sh("setup", "exit 7")])).unwrap());
        ns.create(&pod).await;
    }
    let p = ns
        .wait_pod("never", Duration::from_secs(20), |p| phase(p) == "Failed")
        .await;
    let c = condition(&p, "Initialized").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("ContainersNotInitialized"))
    );
    assert_eq!(
        c.message.as_deref(),
        Some("containers with incomplete status: [setup]")
    );
    // Under Always the init container is retried with back-off; the app never starts.
    let p = ns
        .wait_pod("always", Duration::from_secs(25), |p| {
            let s = p
                .status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .and_then(|i| i.first().cloned());
            s.is_some_and(|s| s.restart_count >= 1)
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    let app = &p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        serde_json::to_value(&app.state).unwrap()["waiting"]["reason"],
        "PodInitializing"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn termination_messages() {
    let ns = TestNs::new("tmsg").await;
    ns.create(&ns.pod(
        "file",
        "Never",
        json!([sh("main", "printf bye > /dev/termination-log")]),
    ))
    .await;
    let mut c = sh("main", "echo oops; exit 2");
    c["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    ns.create(&ns.pod("logs", "Never", json!([c]))).await;
    let mut c = sh("main", "printf custom > /tmp/msg");
    c["terminationMessagePath"] = json!("/tmp/msg");
    ns.create(&ns.pod("custom", "Never", json!([c]))).await;
    let p = ns
        .wait_pod("file", Duration::from_secs(15), |p| phase(p) == "Succeeded")
        .await;
    assert_eq!(container_state(&p, 0)["terminated"]["message"], "bye");
    let p = ns
        .wait_pod("logs", Duration::from_secs(15), |p| phase(p) == "Failed")
        .await;
    assert_eq!(container_state(&p, 0)["terminated"]["message"], "oops\n");
    let p = ns
        .wait_pod("custom", Duration::from_secs(15), |p| {
            phase(p) == "Succeeded"
        })
        .await;
    assert_eq!(container_state(&p, 0)["terminated"]["message"], "custom");
    ns.cleanup().await;
}

#[tokio::test]
async fn post_start_hooks() {
    let ns = TestNs::new("poststart").await;
    // The app waits for what the hook writes and reports it as its termination message.
    let mut c = sh(
        "main",
        "while [ ! -f /tmp/hook ]; do sleep 0.1; done; cat /tmp/hook > /dev/termination-log",
    );
    c["lifecycle"] =
        json!({"postStart": {"exec": {"command": ["sh", "-c", "echo -n hook ran > /tmp/hook"]}}});
    ns.create(&ns.pod("exec", "Never", json!([c]))).await;
    let mut c = sh("main", "sleep 3600");
    c["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 1"]}}});
    ns.create(&ns.pod("failing", "Always", json!([c]))).await;
    // The HTTP hook targets a handler pod that is already serving, as upstream's e2e does:
    // a hook aimed at the container's own server would race its start-up.
    ns.create(&ns.pod("handler", "Always", json!([sh("main", "httpd -f -p 8080")])))
        .await;
    let handler = ns
        .wait_pod("handler", Duration::from_secs(15), |p| {
            phase(p) == "Running"
        })
        .await;
    let handler_ip = handler
        .status
        .and_then(|s| s.pod_ip)
        .expect("handler pod has an IP");
    let mut c = sh("main", "sleep 3600");
    c["ports"] = json!([{"name": "web", "containerPort": 8080}]);
    c["lifecycle"] =
        json!({"postStart": {"httpGet": {"host": handler_ip, "port": "web", "path": "/"}}});
    ns.create(&ns.pod("http", "Always", json!([c]))).await;

    let p = ns
        .wait_pod("exec", Duration::from_secs(15), |p| phase(p) == "Succeeded")
        .await;
    assert_eq!(container_state(&p, 0)["terminated"]["message"], "hook ran");
    // A failing hook kills the container; it is restarted, with the event upstream records.
    ns.wait_pod("failing", Duration::from_secs(30), |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c[0].restart_count >= 1)
    })
    .await;
    let e = wait_event(
        &ns,
        "failing",
        "FailedPostStartHook",
        Duration::from_secs(10),
    )
    .await;
    let msg = e.message.unwrap_or_default();
    assert!(
        msg.starts_with(
            "Exec lifecycle hook ([\"sh\", \"-c\", \"exit 1\"]) for Container \"main\""
        ),
        "{msg}"
    );
    let e = wait_event(&ns, "failing", "Killing", Duration::from_secs(10)).await;
    assert_eq!(e.message.as_deref(), Some("FailedPostStartHook"));
    let p = ns
        .wait_pod("http", Duration::from_secs(15), |p| phase(p) == "Running")
        .await;
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );
    assert!(
        !events_for(&ns, "http")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedPostStartHook"))
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn deadline_runs_pre_stop_before_sigterm() {
    let ns = TestNs::new("deadline").await;
    // preStop writes first; the SIGTERM handler appends; the message shows the order.
    let mut c = sh(
        "main",
        "trap 'echo term >> /dev/termination-log; exit 0' TERM; while true; do sleep 0.2; done",
    );
    c["lifecycle"] = json!({"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /dev/termination-log"]}}});
    let mut pod = ns.pod("p", "Always", json!([c]));
    let spec = pod.spec.as_mut().unwrap();
    spec.active_deadline_seconds = Some(3);
    spec.termination_grace_period_seconds = Some(10);
    ns.create(&pod).await;
    ns.wait_pod("p", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| {
            phase(p) == "Failed" && !container_state(p, 0)["terminated"].is_null()
        })
        .await;
    let s = p.status.as_ref().unwrap();
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert_eq!(
        container_state(&p, 0)["terminated"]["message"],
        "prestop\nterm\n"
    );
    for reason in [
        "Pulled",
        "Created",
        "Started",
        "DeadlineExceeded",
        "Killing",
    ] {
        wait_event(&ns, "p", reason, Duration::from_secs(10)).await;
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn crash_loop_back_off_timing() {
    let ns = TestNs::new("backoff").await;
    ns.create(&ns.pod("p", "Always", json!([sh("main", "sleep 1; exit 1")])))
        .await;
    // The first restart is immediate; then each waits 10 s * 2^(n-2) after the last run ended.
    // Record, per restart, the gap between the previous run's end and this run's start.
    let gaps = std::sync::Mutex::new(std::collections::BTreeMap::new());
    ns.wait_pod("p", Duration::from_secs(70), |p| {
        let Some(cs) = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
        else {
            return false;
        };
        let state = serde_json::to_value(&cs.state).unwrap();
        let last = serde_json::to_value(&cs.last_state).unwrap();
        if state["running"].is_object() && last["terminated"].is_object() {
            let gap = (ts(&state["running"]["startedAt"]) - ts(&last["terminated"]["finishedAt"]))
                .get_seconds();
            gaps.lock().unwrap().insert(cs.restart_count, gap);
        }
        cs.restart_count >= 3 && state["running"].is_object()
    })
    .await;
    let gaps = gaps.into_inner().unwrap();
    let second = gaps
        .get(&2)
        .copied()
        .unwrap_or_else(|| panic!("restart 2 not seen running: {gaps:?}"));
    let third = gaps
        .get(&3)
        .copied()
        .unwrap_or_else(|| panic!("restart 3 not seen running: {gaps:?}"));
    assert!(
        (8..=12).contains(&second),
        "back-off before restart 2 was {second}s, want 10 s ± 20 %"
    );
    assert!(
        (16..=24).contains(&third),
        "back-off before restart 3 was {third}s, want 20 s ± 20 %"
    );
    ns.cleanup().await;
}
