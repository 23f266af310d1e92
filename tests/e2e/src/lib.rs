//! Harness for the end-to-end tests. `scripts/test.sh` brings up containerd, the control
//! plane and our kubelet, then runs these tests with:
//! - `KRS_KUBECONFIG`: an admin kubeconfig;
//! - `KRS_NODE`: the node our kubelet registered;
//! - `KRS_CONTAINERD_SOCK`: the runtime socket, to check what is left in the runtime.
//!
//! Each test works in its own namespace and deletes it at the end. Waits are on watches with
//! deadlines, never on sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations
)]

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kubelet_cri::RuntimeService;
use kubelet_cri::remote::RemoteRuntime;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the e2e tests through scripts/test.sh"))
}

pub fn node_name() -> String {
    env("KRS_NODE")
}

pub async fn client() -> Client {
    let path = env("KRS_KUBECONFIG");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("admin kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

pub fn runtime() -> RemoteRuntime {
    let sock = env("KRS_CONTAINERD_SOCK");
    RemoteRuntime::connect(&format!("unix://{sock}"), Duration::from_secs(10)).expect("runtime")
}

/// Sandboxes and containers the runtime still holds for a pod UID.
pub async fn runtime_objects(uid: &str) -> (usize, usize) {
    let rt = runtime();
    let sel = HashMap::from([("io.kubernetes.pod.uid".to_string(), uid.to_string())]);
    let sb = rt
        .list_pod_sandbox(Some(kubelet_cri::api::PodSandboxFilter {
            label_selector: sel.clone(),
            ..Default::default()
        }))
        .await
        .expect("list sandboxes");
    let c = rt
        .list_containers(Some(kubelet_cri::api::ContainerFilter {
            label_selector: sel,
            ..Default::default()
        }))
        .await
        .expect("list containers");
    (sb.len(), c.len())
}

/// The runtime's exited containers of the pod with this UID.
pub async fn exited_containers(uid: &str) -> usize {
    let rt = runtime();
    let sel = HashMap::from([("io.kubernetes.pod.uid".to_string(), uid.to_string())]);
    rt.list_containers(Some(kubelet_cri::api::ContainerFilter {
        label_selector: sel,
        ..Default::default()
    }))
    .await
    .expect("list containers")
    .iter()
    .filter(|c| c.state == kubelet_cri::api::ContainerState::ContainerExited as i32)
    .count()
}

/// A namespace of the test's own.
#[derive(Clone)]
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        #[allow(clippy::disallowed_methods)] // a unique name, not a time
        let now = std::time::SystemTime::now();
        let suffix = format!(
            "{:x}",
            now.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 0xffffff
        );
        let name = format!("e2e-{prefix}-{suffix}");
        let ns: Namespace = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"kubelet-rs-e2e": "true"}}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        TestNs { client, name }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// A busybox pod bound to our node, from a container spec in JSON.
    pub fn pod(&self, name: &str, restart_policy: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": self.name},
            "spec": {
                "nodeName": node_name(),
                "automountServiceAccountToken": false,
                "restartPolicy": restart_policy,
                "terminationGracePeriodSeconds": 1,
                "containers": containers,
            }
        }))
        .unwrap()
    }

    /// Creates a pod, retrying while the namespace's default service account is not there
    /// yet (the ServiceAccount admission plugin refuses pods until it is).
    pub async fn create(&self, pod: &Pod) -> Pod {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.pods().create(&PostParams::default(), pod).await {
                Ok(p) => return p,
                Err(kube::Error::Api(e))
                    if (e.message.contains("serviceaccount")
                        || e.message.contains("service account"))
                        && Instant::now() < deadline =>
                {
                    // Wait for the service account controller, on a watch.
                    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                        Api::namespaced(self.client.clone(), &self.name);
                    let cond = kube::runtime::wait::await_condition(
                        sas,
                        "default",
                        // With its token secret, when the pod mounts it.
                        |o: Option<&k8s_openapi::api::core::v1::ServiceAccount>| {
                            o.is_some_and(|sa| sa.secrets.as_ref().is_some_and(|s| !s.is_empty()))
                        },
                    );
                    let _ = tokio::time::timeout(Duration::from_secs(10), cond).await;
                }
                Err(e) => panic!("creating pod: {e}"),
            }
        }
    }

    /// Waits until `cond` holds for the pod, or panics with the last status seen.
    pub async fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        cond: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(self.pods(), cfg).applied_objects().boxed();
        let mut last: Option<Pod> = None;
        let res = tokio::time::timeout(timeout, async {
            while let Some(p) = stream.try_next().await.expect("watch") {
                if cond(&p) {
                    return p;
                }
                last = Some(p);
            }
            panic!("watch ended")
        })
        .await;
        match res {
            Ok(p) => p,
            Err(_) => panic!(
                "pod {name} did not reach the condition within {timeout:?}; last status: {}",
                serde_json::to_string_pretty(&last.and_then(|p| p.status)).unwrap()
            ),
        }
    }

    /// Waits until the pod's first container waits for `reason`; returns its waiting message.
    pub async fn wait_waiting(&self, name: &str, reason: &str, timeout: Duration) -> String {
        let p = self
            .wait_pod(name, timeout, |p| {
                waiting_reason(p, 0).as_deref() == Some(reason)
            })
            .await;
        container_state(&p, 0)["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the pod object is gone.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let cond =
            kube::runtime::wait::await_condition(self.pods(), name, |o: Option<&Pod>| o.is_none());
        tokio::time::timeout(timeout, cond)
            .await
            .unwrap_or_else(|_| panic!("pod {name} not gone within {timeout:?}"))
            .expect("wait");
    }

    /// Waits for an event of that reason about the pod (events are sent asynchronously).
    pub async fn wait_event(
        &self,
        pod: &str,
        reason: &str,
        timeout: Duration,
    ) -> k8s_openapi::api::core::v1::Event {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.name);
        let cfg = watcher::Config::default().fields(&format!("involvedObject.name={pod}"));
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg).applied_objects());
        let found = tokio::time::timeout(timeout, async {
            while let Some(e) = stream.try_next().await.unwrap() {
                if e.reason.as_deref() == Some(reason) {
                    return e;
                }
            }
            panic!("event watch ended")
        });
        found
            .await
            .unwrap_or_else(|_| panic!("no {reason} event for {pod} within {timeout:?}"))
    }

    /// Runs `sh -c script` in the pod's running container through CRI; its stdout.
    pub async fn exec(&self, pod: &str, container: &str, script: &str) -> String {
        let p = self.pods().get(pod).await.expect("get pod");
        let uid = p.metadata.uid.unwrap_or_default();
        let rt = runtime();
        let sel = HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid),
            (
                "io.kubernetes.container.name".to_string(),
                container.to_string(),
            ),
        ]);
        let cs = rt
            .list_containers(Some(kubelet_cri::api::ContainerFilter {
                label_selector: sel,
                state: Some(kubelet_cri::api::ContainerStateValue {
                    state: kubelet_cri::api::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }))
            .await
            .expect("list containers");
        let c = cs.first().expect("a running container");
        let out = rt
            .exec_sync(
                &c.id,
                vec!["sh".into(), "-c".into(), script.into()],
                Duration::from_secs(10),
            )
            .await
            .expect("exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deletes the namespace and waits for its pods to be gone from the runtime too.
    pub async fn cleanup(self) {
        let pods = self
            .pods()
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let dp = DeleteParams {
            grace_period_seconds: Some(1),
            ..Default::default()
        };
        for p in &pods {
            let _ = self
                .pods()
                .delete(p.metadata.name.as_deref().unwrap_or_default(), &dp)
                .await;
        }
        for p in &pods {
            self.wait_gone(
                p.metadata.name.as_deref().unwrap_or_default(),
                Duration::from_secs(30),
            )
            .await;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// The pod's `i`-th container status; panics when there is none yet.
pub fn container_status(p: &Pod, i: usize) -> k8s_openapi::api::core::v1::ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.get(i).cloned())
        .unwrap_or_else(|| panic!("no container status {i} in {:?}", p.status))
}

pub fn container_state(p: &Pod, i: usize) -> serde_json::Value {
    let cs = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.get(i).cloned());
    serde_json::to_value(cs.and_then(|c| c.state)).unwrap()
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn waiting_reason(p: &Pod, i: usize) -> Option<String> {
    container_state(p, i)["waiting"]["reason"]
        .as_str()
        .map(str::to_string)
}

pub fn condition(p: &Pod, kind: &str) -> Option<k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .cloned()
}

/// The kubelet's --root-dir.
pub fn kubelet_root() -> std::path::PathBuf {
    std::env::var("KRS_KUBELET_ROOT")
        .unwrap_or_else(|_| "/var/lib/kubelet-rs/kubelet".into())
        .into()
}

/// Mount points on the host that belong to the pod (its volumes and subPaths).
pub fn pod_mounts(uid: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.contains(uid))
        .map(str::to_string)
        .collect()
}

/// Polls `check` until it gives a value or `timeout` passes (for state with no watch, such
/// as a file inside a container).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// curl with the given arguments (certificates not checked): the body and the status code.
pub fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), code.to_string())
}

/// A request to the kubelet itself (10250) as the cluster admin: the body and status code.
pub fn kubelet_get(path: &str) -> (String, String) {
    let dir = env("KRS_CLUSTER_DIR");
    curl(&[
        "--cert",
        &format!("{dir}/pki/admin.crt"),
        "--key",
        &format!("{dir}/pki/admin.key"),
        &format!("https://127.0.0.1:10250{path}"),
    ])
}

/// The status code and message of an API error, or a panic naming what came instead.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The pid of the kubelet under test, from its pid file; `None` when it is not running.
pub fn kubelet_pid() -> Option<i32> {
    std::fs::read_to_string(env("KRS_KUBELET_PIDFILE"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Stops the kubelet under test (SIGTERM, then waits for it to end, bounded).
pub fn stop_kubelet() {
    if let Some(pid) = kubelet_pid() {
        stop_pid(pid);
    }
}

/// SIGTERM to a process the test started, then waits (at most 20 s) for it to end.
pub fn stop_pid(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    // Waits for the process to end (bounded), without polling.
    let _ = std::process::Command::new("timeout")
        .args(["20", "tail", &format!("--pid={pid}"), "-f", "/dev/null"])
        .status();
}

/// Our kubelet binary, as the suite built it.
pub fn kubelet_bin() -> std::path::PathBuf {
    std::env::var("KRS_KUBELET_BIN")
        .map(Into::into)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kubelet")
        })
}

/// Stops the running kubelet and starts it again, with `config` if given.
pub fn restart_kubelet(config: Option<&std::path::Path>) {
    restart_kubelet_with(config, None);
}

/// Like [`restart_kubelet`], with `flags` in place of the usual extra flags (`--v=2`);
/// later flags win over the script's own.
pub fn restart_kubelet_with(config: Option<&std::path::Path>, flags: Option<&str>) {
    stop_kubelet();
    let mut start = std::process::Command::new("bash");
    start.arg("-c").arg(env("KRS_KUBELET_START"));
    if let Some(c) = config {
        start.env("KRS_KUBELET_CONFIG", c);
    }
    if let Some(f) = flags {
        start.env("KUBELET_ARGS", f);
    }
    assert!(
        start.status().unwrap().success(),
        "starting the kubelet failed"
    );
}

/// Puts the usual kubelet back, whatever the test did.
pub struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        restart_kubelet(None);
    }
}

/// The tests restart the one kubelet: one at a time.
pub static ONE_RESTART: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The usual config plus `extra`, in a file of the test's own.
pub fn config_with(extra: &str, tag: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(env("KRS_KUBELET_CONFIG")).unwrap();
    let p = std::env::temp_dir().join(format!("krs-e2e-{tag}-{}.yaml", std::process::id()));
    std::fs::write(&p, format!("{base}\n{extra}\n")).unwrap();
    p
}
