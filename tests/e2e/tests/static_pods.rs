//! Static pods from `staticPodPath`, against the real API server and containerd: they run,
//! their mirror pods carry their status and are remade when deleted, a changed manifest
//! replaces the pod, a broken one is reported and leaves the others alone. Standalone (no
//! API server), static pods run and sandboxes of other kubelets are never touched.
//!
//! The tests restart or stop the node's kubelet: they run one at a time and restore it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubelet_cri::RuntimeService;
use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, config_with, container_status, curl, env, eventually,
    kubelet_bin, node_name, phase, restart_kubelet, runtime, runtime_objects, stop_kubelet,
    stop_pid,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HASH: &str = "kubernetes.io/config.hash";

/// A manifest directory of the test's own, removed at the end.
struct Manifests(PathBuf);
impl Manifests {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("krs-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Manifests(d)
    }
    fn write(&self, file: &str, text: &str) {
        // Written aside, then renamed in: the kubelet never reads half a file.
        let tmp = self.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.0.join(file)).unwrap();
    }
    fn remove(&self, file: &str) {
        std::fs::remove_file(self.0.join(file)).unwrap();
    }
}
impl Drop for Manifests {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn web(ns: &str, env_value: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    env: [{{name: V, value: "{env_value}"}}]
    command: [sh, -c, "echo hi $V; sleep 3600"]
"#
    )
}

fn annotation(p: &Pod, key: &str) -> String {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

/// Waits for an event about the Node (in `default`, as upstream files node events).
async fn wait_node_event(ns: &TestNs, reason: &str, says: &str, timeout: Duration) -> Event {
    let api: Api<Event> = Api::namespaced(ns.client.clone(), "default");
    let cfg = watcher::Config::default().fields(&format!(
        "involvedObject.kind=Node,involvedObject.name={}",
        node_name()
    ));
    let mut stream = std::pin::pin!(watcher::watcher(api, cfg).applied_objects());
    tokio::time::timeout(timeout, async {
        while let Some(e) = stream.try_next().await.unwrap() {
            if e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(says))
            {
                return e;
            }
        }
        panic!("event watch ended")
    })
    .await
    .unwrap_or_else(|_| panic!("no {reason} event on the node within {timeout:?}"))
}

#[tokio::test]
async fn static_pods_run_with_mirror_pods() {
    let _one = ONE_RESTART.lock().await;
    let ns = TestNs::new("static").await;
    let dir = Manifests::new("manifests");
    dir.write("web.yaml", &web(&ns.name, "one"));
    let config = config_with(
        &format!("staticPodPath: {}\nfileCheckFrequency: 2s", dir.0.display()),
        "static",
    );
    let restore = Restore;
    restart_kubelet(Some(&config));
    let name = format!("web-{}", node_name().to_lowercase());

    // The mirror pod shows the static pod, Running, owned by the Node.
    let m = ns
        .wait_pod(&name, Duration::from_secs(60), |p| {
            phase(p) == "Running"
                && p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| c.iter().all(|c| c.ready))
        })
        .await;
    let hash = annotation(&m, HASH);
    assert_eq!(hash.len(), 32, "{m:?}");
    assert_eq!(annotation(&m, "kubernetes.io/config.mirror"), hash);
    assert_eq!(annotation(&m, "kubernetes.io/config.source"), "file");
    let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", node_name().as_str())
    );
    let cid = container_status(&m, 0).container_id.unwrap();
    // kubectl logs reaches the static pod through its mirror.
    let logs = ns.pods().logs(&name, &LogParams::default()).await.unwrap();
    assert_eq!(logs, "hi one\n");

    // Deleted through the API: remade, the pod itself untouched.
    ns.pods()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let m2 = ns
        .wait_pod(&name, Duration::from_secs(60), |p| {
            p.metadata.uid != m.metadata.uid
                && p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .is_some_and(|c| c.container_id.is_some())
        })
        .await;
    assert_eq!(annotation(&m2, HASH), hash);
    let c = container_status(&m2, 0);
    assert_eq!(c.container_id.as_deref(), Some(cid.as_str()));
    assert_eq!(c.restart_count, 0);

    // A changed manifest is a new pod: the old one stops, the mirror follows.
    dir.write("web.yaml", &web(&ns.name, "two"));
    let m3 = ns
        .wait_pod(&name, Duration::from_secs(60), |p| {
            annotation(p, HASH) != hash && phase(p) == "Running"
        })
        .await;
    assert_ne!(
        container_status(&m3, 0).container_id.as_deref(),
        Some(cid.as_str())
    );
    eventually(
        Duration::from_secs(30),
        "old static pod gone from the runtime",
        || {
            let hash = hash.clone();
            async move { (runtime_objects(&hash).await == (0, 0)).then_some(()) }
        },
    )
    .await;
    let new_hash = annotation(&m3, HASH);

    // A broken manifest: reported on the Node, the kubelet and the other pod carry on.
    dir.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec: {containers: []}\n",
    );
    let e = wait_node_event(
        &ns,
        "FailedValidation",
        "broken.yaml",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        e.message
            .as_deref()
            .unwrap()
            .contains("spec.containers: Required value"),
        "{e:?}"
    );
    let still = ns.pods().get(&name).await.unwrap();
    assert_eq!(annotation(&still, HASH), new_hash);
    assert_eq!(phase(&still), "Running");

    // The manifest removed: the pod stops and its mirror goes.
    dir.remove("web.yaml");
    ns.wait_gone(&name, Duration::from_secs(60)).await;
    eventually(
        Duration::from_secs(30),
        "static pod gone from the runtime",
        || {
            let h = new_hash.clone();
            async move { (runtime_objects(&h).await == (0, 0)).then_some(()) }
        },
    )
    .await;

    drop(restore);
    let _ = std::fs::remove_file(&config);
    ns.cleanup().await;
}

/// A sandbox made over CRI by "another kubelet": Kubernetes labels, no root of ours.
async fn foreign_sandbox(uid: &str) -> String {
    let labels: HashMap<String, String> = [
        ("io.kubernetes.pod.uid", uid),
        ("io.kubernetes.pod.name", "foreign"),
        ("io.kubernetes.pod.namespace", "e2e-foreign"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    runtime()
        .run_pod_sandbox(
            kubelet_cri::api::PodSandboxConfig {
                metadata: Some(kubelet_cri::api::PodSandboxMetadata {
                    name: "foreign".into(),
                    uid: uid.into(),
                    namespace: "e2e-foreign".into(),
                    attempt: 0,
                }),
                labels,
                log_directory: format!("/tmp/krs-e2e-foreign-{uid}"),
                ..Default::default()
            },
            String::new(),
        )
        .await
        .unwrap()
}

/// The standalone kubelet's PLEG relists so far (from its read-only metrics).
fn relists(port: u16) -> u64 {
    let (body, _) = curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
    body.lines()
        .find(|l| l.starts_with("kubelet_pleg_relist_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Stops the standalone kubelet and puts the node's kubelet back.
struct Standalone {
    child: std::process::Child,
    root: PathBuf,
    config: PathBuf,
}
impl Drop for Standalone {
    fn drop(&mut self) {
        stop_pid(self.child.id() as i32);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.root)
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn standalone_config(dir: &Path, url: &str, port: u16, healthz: u16) -> PathBuf {
    let p = std::env::temp_dir().join(format!("krs-e2e-standalone-{}.yaml", std::process::id()));
    std::fs::write(
        &p,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
readOnlyPort: {port}
healthzPort: {healthz}
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
staticPodPath: {}
fileCheckFrequency: 2s
staticPodURL: {url}
staticPodURLHeader: {{X-Test: [e2e]}}
httpCheckFrequency: 2s
",
            dir.display()
        ),
    )
    .unwrap();
    p
}

#[tokio::test]
async fn standalone_runs_static_pods_and_leaves_other_pods_alone() {
    let _one = ONE_RESTART.lock().await;
    let restore = Restore;
    stop_kubelet();
    let foreign_uid = format!("e2e-foreign-{}", std::process::id());
    let foreign = foreign_sandbox(&foreign_uid).await;

    let dir = Manifests::new("standalone");
    dir.write("web.yaml", &web("default", "alone"));
    // The HTTP source: a second directory served by python's web server.
    let served = Manifests::new("served");
    served.write(
        "pod.yaml",
        &web("default", "served").replace("name: web", "name: served"),
    );
    let mut http = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "10359",
            "--directory",
        ])
        .arg(&served.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (port, healthz) = (10355, 10358);
    let root = std::env::temp_dir().join(format!("krs-e2e-standalone-root-{}", std::process::id()));
    let config = standalone_config(&dir.0, "http://127.0.0.1:10359/pod.yaml", port, healthz);
    let log_path =
        std::env::temp_dir().join(format!("krs-e2e-standalone-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(kubelet_bin())
        .arg(format!("--config={}", config.display()))
        .arg(format!("--root-dir={}", root.display()))
        .arg(format!("--hostname-override={}", node_name()))
        .arg(format!(
            "--container-runtime-endpoint=unix://{}",
            env("KRS_CONTAINERD_SOCK")
        ))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = Standalone {
        child,
        root,
        config,
    };

    eventually(Duration::from_secs(30), "healthz answers", || async {
        (curl(&[&format!("http://127.0.0.1:{healthz}/healthz")]).0 == "ok").then_some(())
    })
    .await;
    let static_uid = |v: &str| {
        kubelet_core::config::static_pod(
            web("default", v).as_bytes(),
            kubelet_core::config::Source::File,
            &node_name(),
        )
        .unwrap()
        .metadata
        .uid
        .unwrap()
    };
    let first = static_uid("alone");
    eventually(Duration::from_secs(60), "static pod running", || {
        let uid = first.clone();
        async move { (runtime_objects(&uid).await == (1, 1)).then_some(()) }
    })
    .await;
    let from_url = kubelet_core::config::static_pod(
        web("default", "served")
            .replace("name: web", "name: served")
            .as_bytes(),
        kubelet_core::config::Source::Http,
        &node_name(),
    )
    .unwrap()
    .metadata
    .uid
    .unwrap();
    eventually(Duration::from_secs(60), "pod from the URL running", || {
        let uid = from_url.clone();
        async move { (runtime_objects(&uid).await == (1, 1)).then_some(()) }
    })
    .await;
    // The read-only API lists it.
    let (pods, code) = curl(&[&format!("http://127.0.0.1:{port}/pods")]);
    assert_eq!(code, "200");
    assert!(pods.contains(&first), "{pods}");

    // An edit replaces the pod; a broken file does not take the kubelet down.
    dir.write("web.yaml", &web("default", "edited"));
    dir.write("broken.yaml", "kind: Pod\n");
    let second = static_uid("edited");
    eventually(
        Duration::from_secs(60),
        "edited pod running, old one gone",
        || {
            let (a, b) = (first.clone(), second.clone());
            async move {
                (runtime_objects(&a).await == (0, 0) && runtime_objects(&b).await == (1, 1))
                    .then_some(())
            }
        },
    )
    .await;

    // Two more relists after all that: the other kubelet's sandbox is still there.
    let seen = relists(port);
    eventually(Duration::from_secs(30), "two more relists", || async move {
        (relists(port) >= seen + 2).then_some(())
    })
    .await;
    assert_eq!(
        runtime_objects(&foreign_uid).await.0,
        1,
        "foreign sandbox touched"
    );
    assert!(curl(&[&format!("http://127.0.0.1:{healthz}/healthz")]).0 == "ok");

    // Its own pods go with their manifests.
    dir.remove("web.yaml");
    served.write("pod.yaml", "");
    eventually(Duration::from_secs(60), "static pod removed", || {
        let (b, u) = (second.clone(), from_url.clone());
        async move {
            (runtime_objects(&b).await == (0, 0) && runtime_objects(&u).await == (0, 0))
                .then_some(())
        }
    })
    .await;
    drop(guard);
    stop_pid(http.id() as i32);
    let _ = http.wait();
    let rt = runtime();
    let _ = rt.stop_pod_sandbox(&foreign).await;
    let _ = rt.remove_pod_sandbox(&foreign).await;
    let _ = std::fs::remove_dir_all(format!("/tmp/krs-e2e-foreign-{foreign_uid}"));
    // Kept only when the test fails, to read.
    let _ = std::fs::remove_file(&log_path);
    drop(restore);
}
