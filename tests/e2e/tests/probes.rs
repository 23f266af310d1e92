//! Liveness, readiness and startup probes against busybox pods, by exec, HTTP, HTTPS and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kubelet_e2e::{TestNs, condition, phase};
use serde_json::json;
use std::time::Duration;

fn sh(script: &str) -> serde_json::Value {
    json!({"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c[0].restart_count)
}

fn ready(p: &Pod) -> bool {
    condition(p, "Ready").is_some_and(|c| c.status == "True")
}

/// Waits until `n` events with this reason and message prefix exist for the pod.
async fn wait_events(
    ns: &TestNs,
    pod: &str,
    reason: &str,
    prefix: &str,
    n: i32,
    timeout: Duration,
) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let cfg = watcher::Config::default().fields(&format!("involvedObject.name={pod}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, cfg).applied_objects());
    let mut seen: Vec<Event> = vec![];
    let res = tokio::time::timeout(timeout, async {
        while let Some(e) = stream.try_next().await.unwrap() {
            if e.reason.as_deref() == Some(reason)
                && e.message.as_deref().unwrap_or("").starts_with(prefix)
            {
                seen.retain(|s| s.metadata.name != e.metadata.name);
                seen.push(e);
                if seen.iter().map(|e| e.count.unwrap_or(1)).sum::<i32>() >= n {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "fewer than {n} {reason} events starting {prefix:?} for {pod}: {seen:?}"
    );
    seen
}

#[tokio::test]
async fn readiness_waits_for_the_initial_delay() {
    let ns = TestNs::new("ready").await;
    let mut c = sh("sleep 3600");
    c["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "initialDelaySeconds": 4, "periodSeconds": 1});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let running = ns
        .wait_pod("p", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    assert!(!ready(&running), "ready before the initial delay");
    let cs = &running
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(!cs.ready);
    let p = ns.wait_pod("p", Duration::from_secs(15), ready).await;
    let started = serde_json::to_value(
        &p.status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state,
    )
    .unwrap()["running"]["startedAt"]
        .as_str()
        .unwrap()
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap();
    let became = condition(&p, "Ready")
        .unwrap()
        .last_transition_time
        .unwrap()
        .0;
    let delay = (became - started).get_seconds();
    assert!(
        (3..=7).contains(&delay),
        "ready {delay}s after start, want about 4 s"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn failing_readiness_is_never_ready_never_restarted() {
    let ns = TestNs::new("unready").await;
    let mut c = sh("sleep 3600");
    c["readinessProbe"] =
        json!({"exec": {"command": ["sh", "-c", "echo nope; exit 1"]}, "periodSeconds": 1});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    wait_events(
        &ns,
        "p",
        "Unhealthy",
        "Readiness probe failed: nope",
        4,
        Duration::from_secs(20),
    )
    .await;
    let p = ns.pods().get("p").await.unwrap();
    assert!(!ready(&p));
    assert_eq!(restarts(&p), 0);
    let r = condition(&p, "Ready").unwrap();
    assert_eq!(
        r.message.as_deref(),
        Some("containers with unready status: [main]")
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn exec_liveness_restarts_with_growing_count() {
    let ns = TestNs::new("liveexec").await;
    let mut c = sh("sleep 3600");
    c["livenessProbe"] =
        json!({"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let counts = std::sync::Mutex::new(vec![]);
    ns.wait_pod("p", Duration::from_secs(40), |p| {
        let n = restarts(p);
        counts.lock().unwrap().push(n);
        n >= 2
    })
    .await;
    let counts = counts.into_inner().unwrap();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "restart count went down: {counts:?}"
    );
    wait_events(
        &ns,
        "p",
        "Killing",
        "Container main failed liveness probe, will be restarted",
        1,
        Duration::from_secs(10),
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn http_liveness_and_tcp_readiness() {
    let ns = TestNs::new("http").await;
    // httpd answers 404 for /missing: the HTTP liveness probe fails; TCP readiness passes.
    let mut bad = sh("mkdir -p /www; httpd -f -p 8080 -h /www");
    bad["ports"] = json!([{"name": "web", "containerPort": 8080}]);
    bad["livenessProbe"] = json!({"httpGet": {"path": "/missing", "port": "web"}, "periodSeconds": 1, "failureThreshold": 2});
    ns.create(&ns.pod("bad", "Always", json!([bad]))).await;
    let mut good = sh("mkdir -p /www; echo ok > /www/index.html; httpd -f -p 8080 -h /www");
    good["readinessProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1});
    good["livenessProbe"] = json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1});
    ns.create(&ns.pod("good", "Always", json!([good]))).await;
    ns.wait_pod("bad", Duration::from_secs(20), |p| restarts(p) >= 1)
        .await;
    wait_events(
        &ns,
        "bad",
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
        2,
        Duration::from_secs(10),
    )
    .await;
    let p = ns.wait_pod("good", Duration::from_secs(15), ready).await;
    assert_eq!(restarts(&p), 0);
    ns.cleanup().await;
}

/// An HTTPS server in this process, with a self-signed certificate: 200 for /healthy,
/// 500 for anything else. The kubelet shares the host's network, so it reaches 127.0.0.1.
async fn https_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pkey = rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![key.cert.der().clone()], pkey)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let status = if buf[..n].starts_with(b"GET /healthy ") {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_readiness_without_certificate_checks() {
    let ns = TestNs::new("https").await;
    let port = https_server().await;
    for (name, path) in [("ok", "/healthy"), ("sick", "/sick")] {
        let mut c = sh("sleep 3600");
        c["readinessProbe"] = json!({"httpGet": {"scheme": "HTTPS", "host": "127.0.0.1", "port": port, "path": path}, "periodSeconds": 1});
        ns.create(&ns.pod(name, "Always", json!([c]))).await;
    }
    ns.wait_pod("ok", Duration::from_secs(20), ready).await;
    wait_events(
        &ns,
        "sick",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 500",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert!(!ready(&ns.pods().get("sick").await.unwrap()));
    ns.cleanup().await;
}

#[tokio::test]
async fn startup_probe_holds_off_liveness() {
    let ns = TestNs::new("startup").await;
    // Liveness would fail until /tmp/started exists; the startup probe keeps it off until then.
    let mut c = sh("sleep 3; touch /tmp/started; sleep 3600");
    c["startupProbe"] = json!({"exec": {"command": ["test", "-f", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30});
    c["livenessProbe"] = json!({"exec": {"command": ["test", "-f", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 1});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    let cs = &p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        cs.started,
        Some(false),
        "not started before the startup probe passes"
    );
    assert!(!cs.ready);
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c[0].started == Some(true))
        })
        .await;
    assert_eq!(restarts(&p), 0, "liveness ran before startup succeeded");
    ns.wait_pod("p", Duration::from_secs(5), ready).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn probe_timeout_is_enforced() {
    let ns = TestNs::new("ptimeout").await;
    let mut c = sh("sleep 3600");
    c["readinessProbe"] =
        json!({"exec": {"command": ["sleep", "10"]}, "timeoutSeconds": 1, "periodSeconds": 2});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let t0 = tokio::time::Instant::now();
    wait_events(
        &ns,
        "p",
        "Unhealthy",
        "Readiness probe failed",
        2,
        Duration::from_secs(15),
    )
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(12),
        "two 10 s probes cannot fail that fast unless timed out"
    );
    assert!(!ready(&ns.pods().get("p").await.unwrap()));
    ns.cleanup().await;
}
