//! A pod pipeline on the fake runtime, a standalone status manager and a fake clock, for the
//! unit tests of the pod workers and the PLEG.

use crate::kuberuntime::RuntimeManager;
use crate::kuberuntime::tests::{manager, tmp};
use crate::pod_workers::{PodWorkers, WorkerDeps};
use kubelet_api::events::Recorder;
use kubelet_api::status_manager::StatusManager;
use kubelet_core::clock::FakeClock;
use kubelet_cri::fake::FakeRuntime;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) struct Setup {
    pub(crate) rt: Arc<FakeRuntime>,
    pub(crate) runtime: Arc<RuntimeManager>,
    pub(crate) workers: PodWorkers,
    pub(crate) status: StatusManager,
    pub(crate) clock: Arc<FakeClock>,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) cancel: CancellationToken,
    _probes: tokio::sync::mpsc::UnboundedReceiver<String>,
}

pub(crate) fn setup(allowed_unsafe_sysctls: &[&str]) -> Setup {
    let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
    let dir = tmp();
    // The fake runtime's clock starts at the epoch and moves a second per call; this one
    // stays at the epoch, so the runtime's times are never in the kubelet's past (a fresh
    // crash's back-off has not run out).
    let clock = FakeClock::at(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let mut m = manager(rt.clone(), &dir);
    m.clock = clock.clone();
    let runtime = Arc::new(m);
    // Standalone: statuses are kept, not sent.
    let status = StatusManager::new(None);
    let cancel = CancellationToken::new();
    let (tx, probes) = tokio::sync::mpsc::unbounded_channel();
    let prober = crate::prober::ProbeManager::new(
        rt.clone(),
        Recorder::disabled(),
        tx,
        cancel.child_token(),
        clock.clone(),
    );
    let workers = PodWorkers::new(
        Arc::new(WorkerDeps {
            runtime: runtime.clone(),
            status: status.clone(),
            host_ip: None,
            clock: clock.clone(),
            resync: Duration::from_secs(60),
            prober,
            admission: crate::admission::Admitter {
                node: crate::admission::NodeSource::fixed(roomy_node()),
                pressure: tokio::sync::watch::channel(vec![]).1,
                allowed_unsafe_sysctls: allowed_unsafe_sysctls
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        }),
        cancel.clone(),
    );
    Setup {
        rt,
        runtime,
        workers,
        status,
        clock,
        dir,
        cancel,
        _probes: probes,
    }
}

impl Setup {
    pub(crate) fn phase(&self) -> Option<String> {
        self.status.cached("u1").and_then(|s| s.phase)
    }

    pub(crate) fn reason(&self) -> Option<String> {
        self.status.cached("u1").and_then(|s| s.reason)
    }

    /// Waits for `cond`, failing the test after 10 s.
    pub(crate) async fn until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !cond(self) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: phase {:?}, reason {:?}, running {:?}",
            self.phase(),
            self.reason(),
            self.rt.running_containers()
        );
    }

    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.workers.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node with room for anything the tests run.
pub(crate) fn roomy_node() -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(serde_json::json!({"metadata": {"name": "node"},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110",
            "ephemeral-storage": "1Ti"}}}))
    .unwrap_or_default()
}
