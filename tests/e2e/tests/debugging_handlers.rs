//! `enableDebuggingHandlers: false` turns exec, attach, port-forward and logs off (405, as
//! upstream) and leaves the rest of the API up. One test in its own binary: it restarts the
//! node's kubelet with another configuration, then restores it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::LogParams;
use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, config_with, env, kubelet_get, phase, restart_kubelet,
};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test]
async fn disabled_debugging_handlers_answer_405() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("nodebug").await;
    let c = json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sh", "-c", "echo hi; sleep 3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;

    let config = config_with("enableDebuggingHandlers: false", "nodebug");
    let restore = Restore;
    restart_kubelet(Some(&config));

    let n = &ns.name;
    let disabled = (
        "Debug endpoints are disabled.\n".to_string(),
        "405".to_string(),
    );
    assert_eq!(kubelet_get(&format!("/containerLogs/{n}/p/c")), disabled);
    assert_eq!(
        kubelet_get(&format!("/exec/{n}/p/c?command=ls&output=1")),
        disabled
    );
    assert_eq!(kubelet_get(&format!("/attach/{n}/p/c?output=1")), disabled);
    assert_eq!(kubelet_get(&format!("/portForward/{n}/p")), disabled);
    assert_eq!(kubelet_get("/runningpods/"), disabled);
    // Still authenticated first: no credentials, no answer but 401.
    let anon = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:10250/containerLogs/{n}/p/c"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anon.stdout), "401");
    // The rest of the API answers.
    assert_eq!(kubelet_get("/pods").1, "200");
    // Through the API server, kubectl logs fails.
    let e = ns
        .pods()
        .logs("p", &LogParams::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 405), "{e}");

    drop(restore);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ns.pods().logs("p", &LogParams::default()).await {
            Ok(l) => {
                assert_eq!(l, "hi\n");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "logs not back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_file(&config);
    ns.cleanup().await;
}

fn kubectl_exec(ns: &str, script: &str) -> (String, Duration) {
    let t0 = Instant::now();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", env("KRS_KUBECONFIG"))
        .args(["exec", "-n", ns, "p", "--", "sh", "-c", script])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        t0.elapsed(),
    )
}

/// `enableServer: false` leaves 10250 closed while the node stays Ready;
/// `streamingConnectionIdleTimeout` closes an exec stream idle for longer.
#[tokio::test]
async fn enable_server_and_stream_idle_timeout() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("srvcfg").await;
    let c = json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;
    let restore = Restore;

    let no_server = config_with("enableServer: false", "noserver");
    restart_kubelet(Some(&no_server));
    assert_eq!(kubelet_get("/pods").1, "000", "nothing listens on 10250");
    let node = kube::Api::<k8s_openapi::api::core::v1::Node>::all(ns.client.clone())
        .get(&kubelet_e2e::node_name())
        .await
        .unwrap();
    let ready = node.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let idle = config_with("streamingConnectionIdleTimeout: 3s", "idle");
    restart_kubelet(Some(&idle));
    let (out, _) = kubectl_exec(&ns.name, "sleep 1; echo quick");
    assert_eq!(out, "quick\n", "a stream with traffic in time");
    let (out, took) = kubectl_exec(&ns.name, "sleep 10; echo done");
    assert!(!out.contains("done"), "an idle stream was kept: {out:?}");
    assert!(took < Duration::from_secs(9), "closed after {took:?}");

    drop(restore);
    let _ = std::fs::remove_file(&no_server);
    let _ = std::fs::remove_file(&idle);
    ns.cleanup().await;
}
