//! `enableDebuggingHandlers: false` turns exec, attach, port-forward and logs off (405, as
//! upstream) and leaves the rest of the API up. One test in its own binary: it restarts the
//! node's kubelet with another configuration, then restores it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::LogParams;
use kubelet_e2e::{TestNs, env, kubelet_get, kubelet_pid, phase};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// Stops the running kubelet and starts it again, with `config` if given.
fn restart_kubelet(config: Option<&std::path::Path>) {
    if let Some(pid) = kubelet_pid() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        // Waits for the process to end (bounded), without polling.
        let _ = std::process::Command::new("timeout")
            .args(["20", "tail", &format!("--pid={pid}"), "-f", "/dev/null"])
            .status();
    }
    let mut start = std::process::Command::new("bash");
    start.arg("-c").arg(env("KRS_KUBELET_START"));
    if let Some(c) = config {
        start.env("KRS_KUBELET_CONFIG", c);
    }
    assert!(
        start.status().unwrap().success(),
        "starting the kubelet failed"
    );
}

/// Puts the usual kubelet back, whatever the test did.
struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        restart_kubelet(None);
    }
}

#[tokio::test]
async fn disabled_debugging_handlers_answer_405() {
    let ns = TestNs::new("nodebug").await;
    let c = json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sh", "-c", "echo hi; sleep 3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;

    let base = std::fs::read_to_string(env("KRS_KUBELET_CONFIG")).unwrap();
    let config = std::env::temp_dir().join(format!("krs-e2e-nodebug-{}.yaml", std::process::id()));
    std::fs::write(&config, format!("{base}\nenableDebuggingHandlers: false\n")).unwrap();
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
