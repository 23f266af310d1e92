//! The kubelet API on 10250, through the real API server (as kubectl reaches it) and directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::LogParams;
use kubelet_e2e::{TestNs, curl, node_name, phase};
use serde_json::json;
use std::time::Duration;

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

/// `kubectl get --raw /api/v1/nodes/N/proxy/stats/summary`: node, pod, container and volume
/// figures that match what the test put there.
#[tokio::test]
async fn stats_summary_through_the_api_server() {
    let ns = TestNs::new("stats").await;
    // 3 MiB in a disk emptyDir, 1 MiB in the writable layer, a busy loop for CPU.
    let mut c = serde_json::json!({"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "dd if=/dev/zero of=/data/f bs=1M count=3 && dd if=/dev/zero of=/layer bs=1M count=1 && echo ready && while true; do :; done"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}});
    c["resources"]["requests"] = c["resources"]["limits"].clone();
    let mut p = ns.pod("p", "Always", serde_json::json!([c]));
    p.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(serde_json::json!([{"name": "data", "emptyDir": {}}])).unwrap(),
    );
    ns.create(&p).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    let path = format!("/api/v1/nodes/{}/proxy/stats/summary", node_name());
    // Volume figures are refreshed every 10 s and CPU rates need two samples: poll.
    let (summary, pod) =
        kubelet_e2e::eventually(Duration::from_secs(40), "pod stats complete", || {
            let (client, path, uid) = (ns.client.clone(), path.clone(), uid.clone());
            async move {
                let raw = client.request_text(http_get(&path)).await.ok()?;
                let s: serde_json::Value = serde_json::from_str(&raw).ok()?;
                let pod = s["pods"]
                    .as_array()?
                    .iter()
                    .find(|p| p["podRef"]["uid"] == uid.as_str())?
                    .clone();
                let vol = pod["volume"]
                    .as_array()?
                    .iter()
                    .find(|v| v["name"] == "data")?;
                // containerd measures writable layers on its own period (10 s).
                let ok = vol["usedBytes"].as_u64()? >= 3 << 20
                    && pod["containers"][0]["cpu"]["usageNanoCores"]
                        .as_u64()
                        .is_some()
                    && pod["containers"][0]["rootfs"]["usedBytes"].as_u64()? >= 1 << 20;
                ok.then_some((s, pod))
            }
        })
        .await;
    let node = &summary["node"];
    assert_eq!(node["nodeName"], node_name().as_str());
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    assert!(node["fs"]["usedBytes"].as_u64().unwrap() > 0);
    assert!(node["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    assert!(node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);
    assert!(node["runtime"]["imageFs"]["usedBytes"].as_u64().unwrap() > 0);
    assert!(node["rlimit"]["maxpid"].as_i64().unwrap() > 0);
    assert_eq!(pod["podRef"]["name"], "p");
    assert_eq!(pod["podRef"]["namespace"], ns.name.as_str());
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "main");
    // The busy loop under a 100m limit: some CPU, at most about a tenth of a core.
    let nano = c["cpu"]["usageNanoCores"].as_u64().unwrap();
    assert!(
        nano > 10_000_000 && nano < 200_000_000,
        "usageNanoCores {nano}"
    );
    let ws = c["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(ws > 0 && ws <= 64 << 20, "workingSetBytes {ws}");
    assert!(
        c["rootfs"]["usedBytes"].as_u64().unwrap() >= 1 << 20,
        "{}",
        c["rootfs"]
    );
    assert!(c["rootfs"]["capacityBytes"].as_u64().unwrap() > 0);
    assert!(c["logs"]["usedBytes"].as_u64().is_some(), "{}", c["logs"]);
    assert!(pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);
    assert!(pod["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    assert!(pod["network"]["name"].is_string(), "{}", pod["network"]);
    assert!(pod["network"]["rxBytes"].as_u64().is_some());
    // Ephemeral storage: the emptyDir, the writable layer and the logs together.
    let eph = pod["ephemeral-storage"]["usedBytes"].as_u64().unwrap();
    assert!(eph >= 4 << 20, "ephemeral-storage {eph}");
    // The short form leaves the filesystems out.
    let raw = ns
        .client
        .request_text(http_get(&format!("{path}?only_cpu_and_memory=true")))
        .await
        .unwrap();
    let short: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(short["node"]["fs"].is_null() && short["node"]["cpu"].is_object());
    let sp = short["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
        .unwrap();
    assert!(sp["volume"].is_null() && sp["containers"][0]["rootfs"].is_null());
    assert!(sp["containers"][0]["memory"].is_object());
    ns.cleanup().await;
}

/// `/metrics`, `/metrics/resource` and `/metrics/probes` through the API server, with
/// upstream's metric names and labels.
#[tokio::test]
async fn metrics_through_the_api_server() {
    let ns = TestNs::new("metrics").await;
    let c = json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
        "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(20), |p| {
        kubelet_e2e::condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let node = node_name();
    let get = |path: String| {
        let client = ns.client.clone();
        async move { client.request_text(http_get(&path)).await.unwrap() }
    };
    let m = get(format!("/api/v1/nodes/{node}/proxy/metrics")).await;
    for want in [
        format!("kubelet_node_name{{node=\"{node}\"}} 1"),
        "kubelet_runtime_operations_total{operation_type=\"create_container\"}".to_string(),
        "kubelet_runtime_operations_duration_seconds_bucket{".to_string(),
        "kubelet_pleg_relist_duration_seconds_count ".to_string(),
        "kubelet_pod_start_duration_seconds_count ".to_string(),
        "kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"}".to_string(),
        "kubelet_running_containers{container_state=\"running\"}".to_string(),
        "process_resident_memory_bytes ".to_string(),
        // Upstream's names in its text format (0.0.4), the client's and process's too.
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ".to_string(),
        "kubernetes_build_info{build_date=\"\",compiler=\"rustc\",".to_string(),
        "rest_client_requests_total{code=\"200\",host=\"127.0.0.1:6443\",method=\"GET\"}"
            .to_string(),
        "rest_client_request_duration_seconds_bucket{".to_string(),
    ] {
        assert!(m.contains(&want), "/metrics lacks {want}:\n{m}");
    }
    assert!(
        !m.contains("# EOF") && !m.contains("_created"),
        "OpenMetrics leftovers:\n{m}"
    );
    let running: i64 = m
        .lines()
        .find_map(|l| l.strip_prefix("kubelet_running_pods "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(running >= 1, "kubelet_running_pods {running}");
    let probes = get(format!("/api/v1/nodes/{node}/proxy/metrics/probes")).await;
    let line = probes
        .lines()
        .find(|l| {
            l.starts_with("prober_probe_total{")
                && l.contains(&format!("namespace=\"{}\"", ns.name))
                && l.contains("probe_type=\"Readiness\"")
                && l.contains("result=\"successful\"")
        })
        .unwrap_or_else(|| panic!("no readiness series:\n{probes}"));
    assert!(
        line.contains("container=\"main\"") && line.contains("pod=\"p\""),
        "{line}"
    );
    let resource = get(format!("/api/v1/nodes/{node}/proxy/metrics/resource")).await;
    let series = format!(
        "container_cpu_usage_seconds_total{{container=\"main\",namespace=\"{}\",pod=\"p\"}} ",
        ns.name
    );
    assert!(resource.contains(&series), "{resource}");
    assert!(
        resource.contains("node_memory_working_set_bytes "),
        "{resource}"
    );
    assert!(resource.contains("scrape_error 0"), "{resource}");
    // Health checks by name, as upstream, and the runtime's view of the pods.
    let verbose = get(format!("/api/v1/nodes/{node}/proxy/healthz?verbose")).await;
    assert_eq!(
        verbose,
        "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n"
    );
    assert_eq!(
        get(format!("/api/v1/nodes/{node}/proxy/healthz/syncloop")).await,
        "ok"
    );
    let running: serde_json::Value =
        serde_json::from_str(&get(format!("/api/v1/nodes/{node}/proxy/runningpods/")).await)
            .unwrap();
    let mine = running["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["namespace"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("{running}"));
    assert_eq!(mine["metadata"]["name"], "p");
    assert_eq!(mine["spec"]["containers"][0]["name"], "main");
    let configz: serde_json::Value =
        serde_json::from_str(&get(format!("/api/v1/nodes/{node}/proxy/configz")).await).unwrap();
    let kc = &configz["kubeletconfig"];
    assert_eq!(kc["port"], 10250, "{configz}");
    assert!(kc["syncFrequency"].is_string(), "{configz}");
    assert!(
        kc["authentication"]["webhook"]["enabled"].is_boolean(),
        "{configz}"
    );
    ns.cleanup().await;
}
