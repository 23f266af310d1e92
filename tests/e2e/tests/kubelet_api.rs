//! The kubelet API on 10250, through the real API server (as kubectl reaches it) and directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::LogParams;
use kubelet_e2e::{TestNs, node_name, phase};
use serde_json::json;
use std::time::Duration;

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), code.to_string())
}

#[tokio::test]
async fn logs_through_the_api_server() {
    let ns = TestNs::new("logs").await;
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "echo one; echo two; echo three; sleep 3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let l = ns.pods().logs("p", &LogParams::default()).await.unwrap();
        if l.lines().count() >= 3 || tokio::time::Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(logs, "one\ntwo\nthree\n");
    let tail = ns
        .pods()
        .logs(
            "p",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "three\n");
    let ts = ns
        .pods()
        .logs(
            "p",
            &LogParams {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(ts.ends_with(" three\n") && ts.starts_with("20"), "{ts}");
    let e = ns
        .pods()
        .logs(
            "p",
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("previous terminated container"), "{e}");
    // The pod list, through the node proxy.
    let raw = ns
        .client
        .request_text(http_get(&format!(
            "/api/v1/nodes/{}/proxy/pods",
            node_name()
        )))
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert!(list["items"].as_array().unwrap().iter().any(|p| p["metadata"]["name"] == "p" && p["metadata"]["namespace"] == ns.name.as_str()));
    ns.cleanup().await;
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(vec![]).unwrap()
}

#[tokio::test]
async fn direct_requests_are_authenticated() {
    // No client certificate, no token: 401.
    let (body, code) = curl(&["https://127.0.0.1:10250/pods"]);
    assert_eq!((code.as_str(), body.as_str()), ("401", "Unauthorized"));
    // A token the API server does not know: 401.
    let (_, code) = curl(&[
        "-H",
        "Authorization: Bearer not-a-real-token",
        "https://127.0.0.1:10250/pods",
    ]);
    assert_eq!(code, "401");
    // The node's own certificate: authenticated, and the Node authorizer lets a node read
    // its own proxy subresource? No: nodes may not; expect an authorization answer, not 401.
    let dir = kubelet_e2e::env("KRS_CLUSTER_DIR");
    let node = node_name();
    let cert = format!("{dir}/pki/node-{node}.crt");
    let key = format!("{dir}/pki/node-{node}.key");
    let (body, code) = curl(&[
        "--cert",
        &cert,
        "--key",
        &key,
        "https://127.0.0.1:10250/pods",
    ]);
    assert!(code == "403" || code == "200", "{code} {body}");
    if code == "403" {
        assert_eq!(
            body,
            format!(
                "Forbidden (user=system:node:{node}, verb=get, resource=nodes, subresource=proxy)"
            )
        );
    }
    // The admin certificate (system:masters): allowed.
    let (body, code) = curl(&[
        "--cert",
        &format!("{dir}/pki/admin.crt"),
        "--key",
        &format!("{dir}/pki/admin.key"),
        "https://127.0.0.1:10250/pods",
    ]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"kind\":\"PodList\""));
    // Path traversal in a log request.
    let admin = [
        "--cert",
        &format!("{dir}/pki/admin.crt"),
        "--key",
        &format!("{dir}/pki/admin.key"),
    ];
    let (_, code) = curl(&[
        admin[0],
        admin[1],
        admin[2],
        admin[3],
        "--path-as-is",
        "https://127.0.0.1:10250/containerLogs/default/..%2F..%2Fetc/passwd",
    ]);
    assert!(code == "400" || code == "404", "{code}");
}
