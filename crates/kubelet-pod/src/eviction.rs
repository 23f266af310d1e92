//! The eviction manager (upstream `pkg/kubelet/eviction`). Every 10 s it observes the
//! node's signals in the summary (memory, the pods' memory, nodefs, imagefs, PIDs), keeps the
//! pressure conditions (reported on the Node and used by admission) and, when a threshold is
//! met past its grace period, evicts one pod, ranked as upstream does. Before that, as
//! upstream's `localStorageEviction`: a pod whose emptyDir outgrows its `sizeLimit`, whose
//! ephemeral storage outgrows its containers' summed limits, or with a container whose rootfs
//! and logs outgrow its own limit, is evicted.

use crate::pod_workers::PodWorkers;
use crate::stats::StatsProvider;
use crate::volume_manager::VolumeManager;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kubelet_api::events::{Recorder, WARNING, node_ref};
use kubelet_core::clock::SharedClock;
use kubelet_core::eviction::rank::{eviction_message, rank};
use kubelet_core::eviction::thresholds::{
    EvictionState, MemcgTarget, Threshold, memcg_thresholds, observe, synchronize,
};
use kubelet_core::eviction::{
    empty_dir_limits, empty_dir_over_limit, ephemeral_storage_over_limit, has_ephemeral_limits,
};
use kubelet_core::stats::{PodStats, Summary};
use kubelet_core::sync::Failure;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Upstream's eviction monitoring interval.
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// How long the manager waits for an evicted pod to be killed before it looks again.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the manager reads the node's and the pods' figures.
#[async_trait]
pub trait SummarySource: Send + Sync {
    async fn summary(&self, pods: &[Pod]) -> Result<Summary, crate::stats::StatsError>;
    /// Whether the runtime's images are on a filesystem of their own (not the kubelet's).
    async fn dedicated_image_fs(&self) -> bool {
        false
    }
}

#[async_trait]
impl SummarySource for StatsProvider {
    async fn summary(&self, pods: &[Pod]) -> Result<Summary, crate::stats::StatsError> {
        self.eviction_summary(pods).await
    }
    async fn dedicated_image_fs(&self) -> bool {
        self.dedicated_image_fs().await
    }
}

/// The eviction manager and what it acts through.
pub struct EvictionManager {
    pub workers: PodWorkers,
    pub summary: Arc<dyn SummarySource>,
    /// For the local-storage checks (`None` in tests of the node signals).
    pub local_storage: Option<Arc<VolumeManager>>,
    pub thresholds: Vec<Threshold>,
    /// `evictionMaxPodGracePeriod`: the grace period of a soft eviction.
    pub max_pod_grace_seconds: i64,
    /// `evictionPressureTransitionPeriod`.
    pub transition: Duration,
    pub clock: SharedClock,
    pub recorder: Recorder,
    pub node: String,
    /// The pressure conditions now: admission and the node status read them.
    pub pressure: watch::Sender<Vec<String>>,
    /// Node-level reclaim for the disk signals: dead containers, then unused images, go
    /// before any pod.
    pub container_gc: Option<crate::container_gc::ContainerGc>,
    pub image_gc: Option<Arc<crate::images::ImageGcManager>>,
    /// `kernelMemcgNotification` on cgroup v1: the kernel says when a memory threshold is
    /// crossed, and the manager looks at once.
    pub memcg: Option<Arc<kubelet_host::memcg::MemcgNotifiers>>,
}

impl std::fmt::Debug for EvictionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvictionManager")
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl EvictionManager {
    pub async fn run(self, cancel: CancellationToken) {
        let mut st = EvictionState::default();
        loop {
            if let Some(uid) = self.synchronize(&mut st).await {
                // Then look again at once, as upstream does after an eviction.
                self.wait_for_cleanup(&uid, &cancel).await;
                continue;
            }
            let crossed = async {
                match &self.memcg {
                    Some(n) => n.crossed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(MONITORING_INTERVAL) => {}
                _ = crossed => info!("eviction manager: memory threshold crossed (memcg notification)"),
            }
        }
    }

    /// One pass (upstream `synchronize`); the UID of the pod evicted, if one was.
    pub async fn synchronize(&self, st: &mut EvictionState) -> Option<String> {
        let active = self.workers.active_pods();
        let summary = match self.summary.summary(&active).await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "eviction manager: failed to get summary stats");
                return None;
            }
        };
        if let Some(n) = &self.memcg {
            for (key, target, bytes) in memcg_thresholds(&self.thresholds, &summary) {
                if let Err(e) = n.arm(key, target == MemcgTarget::Pods, bytes) {
                    warn!(?target, error = %e, "eviction manager: arming the memory threshold notification failed");
                }
            }
        }
        let pass = synchronize(
            st,
            &self.thresholds,
            observe(&summary),
            self.clock.now(),
            self.transition,
        );
        let conditions: Vec<String> = pass.conditions.iter().map(|c| c.to_string()).collect();
        self.pressure.send_if_modified(|p| {
            let changed = *p != conditions;
            if changed {
                info!(?conditions, "eviction manager: node pressure changed");
                *p = conditions;
            }
            changed
        });
        if let Some(volumes) = &self.local_storage
            && let Some(uid) = local_storage_evictions(&self.workers, volumes, &summary.pods).await
        {
            return Some(uid);
        }
        let t = pass.reclaim?;
        let resource = t.signal.resource();
        warn!(signal = %t.signal, "eviction manager: attempting to reclaim {resource}");
        self.recorder.emit(
            node_ref(&self.node),
            WARNING,
            "EvictionThresholdMet",
            format!("Attempting to reclaim {resource}"),
        );
        if self.reclaim_node_level(t).await {
            info!("eviction manager: able to reduce {resource} pressure without evicting pods");
            return None;
        }
        if active.is_empty() {
            error!(
                "eviction manager: eviction thresholds have been met, but no pods are active to evict"
            );
            return None;
        }
        let stats_of = |p: &Pod| {
            let uid = p.metadata.uid.as_deref()?;
            summary.pods.iter().find(|s| s.pod_ref.uid == uid)
        };
        let mut ranked: Vec<&Pod> = active.iter().collect();
        rank(t.signal, &mut ranked, &stats_of);
        for p in ranked {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if kubelet_core::qos::is_critical_pod(p) {
                error!(pod = ?p.metadata.name, %uid, "eviction manager: cannot evict a critical pod");
                continue;
            }
            let message = eviction_message(resource, p, stats_of(p));
            // Hard thresholds kill at once; soft ones with evictionMaxPodGracePeriod.
            let grace = if t.is_hard() {
                0
            } else {
                self.max_pod_grace_seconds
            };
            info!(pod = ?p.metadata.name, %uid, %message, "eviction manager: evicting pod");
            self.workers
                .fail(&uid, Failure::evicted_with_grace(message, grace));
            count_eviction(&t.signal.to_string());
            return Some(uid);
        }
        info!("eviction manager: unable to evict any pods from the node");
        None
    }

    /// Upstream `reclaimNodeLevelResources`: for a disk signal, unused images are removed;
    /// whether that ended every threshold (observed afresh, grace periods aside).
    async fn reclaim_node_level(&self, t: Threshold) -> bool {
        use kubelet_core::eviction::thresholds::thresholds_met;
        let dedicated = self.summary.dedicated_image_fs().await;
        let (containers, images) =
            kubelet_core::eviction::thresholds::node_reclaim(t.signal, dedicated);
        if !containers && !images {
            return false;
        }
        if containers && let Some(gc) = &self.container_gc {
            let n = gc.delete_all_unused().await;
            info!(removed = n, "eviction manager: dead containers removed");
        }
        if images && let Some(gc) = &self.image_gc {
            match gc.delete_unused_images().await {
                Ok(freed) => info!(freed, "eviction manager: unused images removed"),
                Err(e) => warn!(error = %e, "eviction manager: removing unused images failed"),
            }
        }
        let pods = self.workers.active_pods();
        match self.summary.summary(&pods).await {
            Ok(s) => thresholds_met(&self.thresholds, &observe(&s), false).is_empty(),
            Err(e) => {
                error!(error = %e, "eviction manager: failed to get summary stats after resource reclaim");
                false
            }
        }
    }

    /// Waits until the evicted pod's resources are reclaimed (upstream
    /// `podResourcesAreReclaimed`): reported Failed, its containers killed, and its volumes
    /// torn down (a memory-backed emptyDir frees its memory only then); at most
    /// [`CLEANUP_TIMEOUT`].
    async fn wait_for_cleanup(&self, uid: &str, cancel: &CancellationToken) {
        let done = async {
            loop {
                let phase = self.workers.cached_status(uid).and_then(|s| s.phase);
                let volumes_gone = self
                    .local_storage
                    .as_ref()
                    .is_none_or(|v| v.volumes_reclaimed(uid));
                if (phase.as_deref() == Some("Failed") && volumes_gone)
                    || !self.workers.known().iter().any(|u| u == uid)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = tokio::time::timeout(CLEANUP_TIMEOUT, done) => if r.is_err() {
                warn!(%uid, "eviction manager: timed out waiting for the evicted pod to be cleaned up");
            },
        }
    }
}

/// Measures the limited emptyDirs of every running pod and evicts those over their limit;
/// then, from the pass's summary stats, the pods and containers with ephemeral-storage limits.
/// The first pod evicted, if any.
pub async fn local_storage_evictions(
    workers: &PodWorkers,
    volumes: &VolumeManager,
    pod_stats: &[PodStats],
) -> Option<String> {
    let mut limited_pods = vec![];
    let mut evicted = None;
    for pod in workers.active_pods() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if empty_dir_evicted(workers, volumes, &pod).await {
            evicted = evicted.or_else(|| pod.metadata.uid.clone());
            continue;
        }
        if has_ephemeral_limits(&pod) {
            limited_pods.push(pod);
        }
    }
    for ps in pod_stats {
        let Some(pod) = limited_pods
            .iter()
            .find(|p| p.metadata.uid.as_deref() == Some(ps.pod_ref.uid.as_str()))
        else {
            continue;
        };
        let files = pod_files_bytes(&volumes.root_dir, &ps.pod_ref.uid);
        if let Some(message) = ephemeral_storage_over_limit(pod, ps, files) {
            info!(pod = ?pod.metadata.name, uid = %ps.pod_ref.uid, %message, "evicting pod");
            // Upstream's pseudo-signals for limit evictions.
            count_eviction(if message.starts_with("Pod ") {
                "ephemeralpodfs.limit"
            } else {
                "ephemeralcontainerfs.limit"
            });
            workers.evict(&ps.pod_ref.uid, message);
            evicted = evicted.or_else(|| Some(ps.pod_ref.uid.clone()));
        }
    }
    evicted
}

/// The bytes of the pod's etc-hosts and termination-log files (`<root>/pods/<uid>/etc-hosts`,
/// `<root>/pods/<uid>/containers/<name>/<file>`), which its containers can write. Links are
/// not followed.
pub fn pod_files_bytes(root: &std::path::Path, uid: &str) -> u64 {
    let dir = root.join("pods").join(uid);
    let size = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len())
    };
    let mut total = size(&dir.join("etc-hosts"));
    let containers = std::fs::read_dir(dir.join("containers"))
        .into_iter()
        .flatten();
    for c in containers.flatten() {
        if !c.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for f in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            total = total.saturating_add(size(&f.path()));
        }
    }
    total
}

/// Upstream's `emptyDirLimitEviction` for one pod; whether it was evicted.
async fn empty_dir_evicted(workers: &PodWorkers, volumes: &VolumeManager, pod: &Pod) -> bool {
    let limited: Vec<(String, PathBuf)> = empty_dir_limits(pod)
        .into_iter()
        .filter_map(|(name, _, _)| {
            let v = pod
                .spec
                .as_ref()?
                .volumes
                .as_ref()?
                .iter()
                .find(|v| v.name == name)?;
            Some((name.to_string(), volumes.host_path(pod, v)?))
        })
        .collect();
    if limited.is_empty() {
        return false;
    }
    // Walking a directory tree blocks: keep it off the runtime's threads.
    let usage = tokio::task::spawn_blocking(move || {
        limited
            .into_iter()
            .filter_map(|(name, dir)| {
                kubelet_host::fs::disk_usage(&dir)
                    .map_err(
                        |e| warn!(dir = %dir.display(), error = %e, "measuring emptyDir failed"),
                    )
                    .ok()
                    .map(|u| (name, u.bytes))
            })
            .collect::<HashMap<String, u64>>()
    })
    .await
    .unwrap_or_default();
    if let Some(message) = empty_dir_over_limit(pod, &|n| usage.get(n).copied()) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        info!(pod = ?pod.metadata.name, %uid, %message, "evicting pod");
        count_eviction("emptydirfs.limit");
        workers.evict(uid, message);
        return true;
    }
    false
}

/// `kubelet_evictions{eviction_signal}`.
fn count_eviction(signal: &str) {
    crate::metrics::METRICS
        .evictions
        .get_or_create(&vec![("eviction_signal".to_string(), signal.to_string())])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node and pods as the test says.
    struct Figures(std::sync::Mutex<Summary>);

    #[async_trait]
    impl SummarySource for Figures {
        async fn summary(&self, _pods: &[Pod]) -> Result<Summary, crate::stats::StatsError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn figures(available: u64, time: i64, pods: &[(&str, u64)]) -> Summary {
        let t =
            kubelet_core::status::time_of(k8s_openapi::jiff::Timestamp::from_second(time).unwrap());
        serde_json::from_value(serde_json::json!({
            "node": {"nodeName": "n1", "memory": {"time": t, "availableBytes": available,
                "workingSetBytes": (1u64 << 30) - available}},
            "pods": pods.iter().map(|(uid, ws)| serde_json::json!({
                "podRef": {"name": uid, "namespace": "ns", "uid": uid},
                "memory": {"workingSetBytes": ws},
                "containers": [{"name": "c", "memory": {"workingSetBytes": ws}}]})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn memory_pressure_evicts_the_pod_furthest_over_its_request() {
        let s = crate::testing::setup(&[]);
        let hog = crate::kuberuntime::tests::pod("busybox", "Never", "Always");
        let mut modest = hog.clone();
        modest.metadata.uid = Some("u2".into());
        modest.metadata.name = Some("modest".into());
        if let Some(c) = modest.spec.as_mut().map(|s| &mut s.containers[0]) {
            c.resources =
                serde_json::from_value(serde_json::json!({"requests": {"memory": "64Mi"}})).ok();
        }
        s.workers.update(std::sync::Arc::new(hog));
        s.workers.update(std::sync::Arc::new(modest));
        s.until("both running", |s| {
            s.phase().as_deref() == Some("Running")
                && s.status.cached("u2").and_then(|st| st.phase).as_deref() == Some("Running")
        })
        .await;
        let source = Arc::new(Figures(std::sync::Mutex::new(figures(
            500 << 20,
            1,
            &[("u1", 300 << 20), ("u2", 32 << 20)],
        ))));
        let (pressure, pressure_rx) = watch::channel(vec![]);
        let m = EvictionManager {
            workers: s.workers.clone(),
            summary: source.clone(),
            local_storage: None,
            thresholds: kubelet_core::eviction::thresholds::parse_thresholds(
                &[("memory.available".to_string(), "100Mi".to_string())].into(),
                &Default::default(),
                &Default::default(),
                &Default::default(),
                false,
            )
            .unwrap(),
            max_pod_grace_seconds: 0,
            transition: Duration::from_secs(300),
            clock: s.clock.clone(),
            recorder: Recorder::disabled(),
            node: "n1".into(),
            pressure,
            container_gc: None,
            image_gc: None,
            memcg: None,
        };
        let mut st = EvictionState::default();
        assert_eq!(m.synchronize(&mut st).await, None, "plenty of memory");
        assert!(pressure_rx.borrow().is_empty());
        *source.0.lock().unwrap() = figures(50 << 20, 2, &[("u1", 300 << 20), ("u2", 32 << 20)]);
        assert_eq!(m.synchronize(&mut st).await.as_deref(), Some("u1"));
        assert_eq!(*pressure_rx.borrow(), ["MemoryPressure"]);
        s.until("evicted", |s| s.phase().as_deref() == Some("Failed"))
            .await;
        assert_eq!(s.reason().as_deref(), Some("Evicted"));
        assert_eq!(
            s.status.cached("u1").and_then(|st| st.message).as_deref(),
            Some(
                "The node was low on resource: memory. Container c was using 300Mi, which exceeds its request of 0. "
            )
        );
        assert_eq!(
            s.status.cached("u2").and_then(|st| st.phase).as_deref(),
            Some("Running"),
            "one pod per pass"
        );
        s.stop().await;
    }

    #[test]
    fn pod_files_count_hosts_and_termination_logs_not_links() {
        let root = std::env::temp_dir().join(format!("krs-podfiles-{}", std::process::id()));
        let dir = root.join("pods/u1");
        std::fs::create_dir_all(dir.join("containers/c")).unwrap();
        std::fs::write(dir.join("etc-hosts"), vec![b'x'; 100]).unwrap();
        std::fs::write(dir.join("containers/c/abc"), vec![b'y'; 20]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("containers/c/link")).unwrap();
        assert_eq!(pod_files_bytes(&root, "u1"), 120);
        assert_eq!(pod_files_bytes(&root, "nope"), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn an_empty_dir_over_its_size_limit_evicts_the_pod() {
        let s = crate::testing::setup(&[]);
        let mut p = crate::kuberuntime::tests::pod("busybox", "Never", "Always");
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = serde_json::from_value(serde_json::json!([
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}
            ]))
            .ok();
            spec.containers[0].volume_mounts = serde_json::from_value(serde_json::json!([
                {"name": "scratch", "mountPath": "/scratch"}
            ]))
            .ok();
        }
        s.workers.update(std::sync::Arc::new(p));
        s.until("running", |s| s.phase().as_deref() == Some("Running"))
            .await;
        let volumes = s.runtime.volumes.clone();
        let stats = StatsProvider::new(
            "n1".into(),
            s.rt.clone(),
            std::sync::Arc::new(kubelet_host::FakeHost::default()),
            None,
            volumes.root_dir.clone(),
            s.dir.join("pods"),
            volumes.clone(),
            s.clock.clone(),
        );
        // Within the limit: nothing happens.
        let pods = s.workers.active_pods();
        let ps = stats.eviction_summary(&pods).await.unwrap().pods;
        local_storage_evictions(&s.workers, &volumes, &ps).await;
        assert_eq!(s.phase().as_deref(), Some("Running"));
        let dir = volumes
            .root_dir
            .join("pods/u1/volumes/kubernetes.io~empty-dir/scratch");
        std::fs::write(dir.join("big"), vec![0u8; 8192]).unwrap();
        local_storage_evictions(&s.workers, &volumes, &ps).await;
        s.until("evicted", |s| s.phase().as_deref() == Some("Failed"))
            .await;
        assert_eq!(s.reason().as_deref(), Some("Evicted"));
        assert_eq!(
            s.status.cached("u1").and_then(|st| st.message).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Ki\". ")
        );
        assert!(s.rt.running_containers().is_empty());
        s.stop().await;
    }
}
