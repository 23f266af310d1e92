//! Pod lifecycle event generator (upstream `pkg/kubelet/pleg`). containerd pushes task
//! start/exit events, which wake the affected pod's worker at once; a periodic relist is the
//! safety net and also finds containers and sandboxes that belong to no known pod.

use crate::kuberuntime::RuntimeManager;
use crate::pod_workers::PodWorkers;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::labels::{KUBELET_ROOT_DIR, PodRef};
use kubelet_core::pleg::{Fingerprint, fingerprints, relist_diff};
use kubelet_cri::RuntimeEvent;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Upstream declares the PLEG unhealthy when a relist has not finished for this long.
pub const RELIST_THRESHOLD: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct PlegHealth {
    last_relist: Arc<Mutex<Instant>>,
}

impl PlegHealth {
    pub fn new() -> Self {
        PlegHealth {
            last_relist: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn mark(&self) {
        *self.last_relist.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// `Err` with upstream's message when relisting is stuck.
    pub fn check(&self) -> Result<(), PlegUnhealthy> {
        let last = *self.last_relist.lock().unwrap_or_else(|e| e.into_inner());
        let since = last.elapsed();
        if since > RELIST_THRESHOLD {
            return Err(PlegUnhealthy(since));
        }
        Ok(())
    }
}

impl Default for PlegHealth {
    fn default() -> Self {
        Self::new()
    }
}

/// The PLEG has not relisted for longer than the threshold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PLEG is not healthy: pleg was last seen active {0:?} ago; threshold is {RELIST_THRESHOLD:?}"
)]
pub struct PlegUnhealthy(pub std::time::Duration);

#[derive(Debug)]
pub struct Pleg {
    pub runtime: Arc<RuntimeManager>,
    pub workers: PodWorkers,
    pub health: PlegHealth,
    /// Relist period while the event stream is up; while it is down, relist every second.
    pub period: Duration,
    /// Set once the API's initial pod list has been dispatched: only then can a runtime pod
    /// be judged an orphan.
    pub pods_synced: Arc<AtomicBool>,
    /// Standalone: only sandboxes labelled with this root directory (started by this
    /// kubelet) may be cleaned up as orphans; other kubelets' pods are left alone.
    pub own_root: Option<String>,
}

impl Pleg {
    pub async fn run(self, cancel: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<RuntimeEvent>(1024);
        let streaming = Arc::new(AtomicBool::new(false));
        // The event subscription and the exit checks; dropped (aborted) with the PLEG.
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(subscribe(
            self.runtime.clone(),
            tx,
            streaming.clone(),
            cancel.clone(),
        ));
        let mut seen: HashMap<String, Fingerprint> = HashMap::new();
        let mut owner: HashMap<String, String> = HashMap::new();
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done.map_err(|e| e.try_into_panic()) {
                        warn!(panic = ?e.ok(), "a PLEG task failed");
                    }
                }
                ev = rx.recv() => {
                    let Some(ev) = ev else { return };
                    let id = match &ev {
                        RuntimeEvent::Started { container_id } | RuntimeEvent::Exited { container_id, .. } | RuntimeEvent::Oom { container_id } => container_id.clone(),
                    };
                    if !owner.contains_key(&id) {
                        // Not seen yet (e.g. a container we just created): relist now.
                        match self.relist(&mut seen, &mut owner).await {
                            Ok(()) => self.health.mark(),
                            Err(e) => warn!(error = %e, "relist failed"),
                        }
                    }
                    match owner.get(&id) {
                        Some(uid) => {
                            debug!(?ev, %uid, "runtime event");
                            match ev {
                                // containerd's CRI plugin records an exit a moment after the
                                // event goes out: wake the worker once CRI shows it.
                                RuntimeEvent::Exited { .. } => {
                                    tasks.spawn(kick_when_exited(self.runtime.clone(), self.workers.clone(), id.clone(), uid.clone()));
                                }
                                _ => self.workers.kick(uid),
                            }
                        }
                        None => debug!(?ev, "event for a container of no pod"),
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    match self.relist(&mut seen, &mut owner).await {
                        Ok(()) => self.health.mark(),
                        Err(e) => warn!(error = %e, "relist failed"),
                    }
                    let period = if streaming.load(Ordering::Relaxed) { self.period } else { Duration::from_secs(1) };
                    next = Instant::now() + period;
                }
            }
        }
    }

    async fn relist(
        &self,
        seen: &mut HashMap<String, Fingerprint>,
        owner: &mut HashMap<String, String>,
    ) -> Result<(), kubelet_cri::CriError> {
        let t0 = Instant::now();
        let r = self.relist_inner(seen, owner).await;
        let m = &crate::metrics::METRICS;
        m.pleg_relist_duration.observe(t0.elapsed().as_secs_f64());
        let mut last = LAST_RELIST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = last.replace(t0) {
            m.pleg_relist_interval
                .observe(t0.duration_since(prev).as_secs_f64());
        }
        r
    }

    async fn relist_inner(
        &self,
        seen: &mut HashMap<String, Fingerprint>,
        owner: &mut HashMap<String, String>,
    ) -> Result<(), kubelet_cri::CriError> {
        let rt = &self.runtime.rt;
        let (sandboxes, containers) =
            tokio::try_join!(rt.list_pod_sandbox(None), rt.list_containers(None))?;
        update_running_metrics(&sandboxes, &containers);
        let mut refs: BTreeMap<String, PodRef> = BTreeMap::new();
        let mut items: Vec<(String, &str, i32)> = vec![];
        owner.clear();
        let objects = sandboxes
            .iter()
            .map(|sb| (&sb.labels, sb.id.as_str(), sb.state))
            .chain(
                containers
                    .iter()
                    .map(|c| (&c.labels, c.id.as_str(), c.state)),
            );
        for (labels, id, state) in objects {
            let Some(r) = PodRef::from_labels(labels) else {
                continue;
            };
            owner.insert(id.to_string(), r.uid.clone());
            items.push((r.uid.clone(), id, state));
            refs.insert(r.uid.clone(), r);
        }
        let now = fingerprints(items.iter().map(|(uid, id, st)| (uid.as_str(), *id, *st)));
        let known: Option<HashSet<String>> = self
            .pods_synced
            .load(Ordering::Acquire)
            .then(|| self.workers.known().into_iter().collect());
        let mut diff = relist_diff(seen, &now, known.as_ref());
        if let Some(root) = &self.own_root {
            let ours: HashSet<&str> = sandboxes
                .iter()
                .filter(|sb| sb.labels.get(KUBELET_ROOT_DIR) == Some(root))
                .filter_map(|sb| sb.labels.get(kubelet_core::labels::POD_UID))
                .map(String::as_str)
                .collect();
            diff.orphans.retain(|u| ours.contains(u.as_str()));
        }
        for uid in &diff.changed {
            self.workers.kick(uid);
        }
        for uid in &diff.orphans {
            if let Some(r) = refs.get(uid) {
                info!(pod = %r.key(), %uid, "cleaning up pod that is not in the API server");
                self.workers.remove(Arc::new(orphan(r)));
            }
        }
        *seen = now;
        Ok(())
    }
}

/// Waits (briefly, bounded) until CRI reports the container as no longer running, then wakes
/// the pod's worker.
async fn kick_when_exited(
    runtime: Arc<RuntimeManager>,
    workers: PodWorkers,
    container_id: String,
    uid: String,
) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut delay = Duration::from_millis(5);
    while Instant::now() < deadline {
        match runtime.rt.container_status(&container_id).await {
            Ok(s) if s.state == kubelet_cri::api::ContainerState::ContainerRunning as i32 => {}
            _ => break,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
    workers.kick(&uid);
}

fn orphan(r: &PodRef) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(r.name.clone()),
            namespace: Some(r.namespace.clone()),
            uid: Some(r.uid.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn subscribe(
    runtime: Arc<RuntimeManager>,
    tx: mpsc::Sender<RuntimeEvent>,
    streaming: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match runtime.rt.events().await {
            Ok(mut stream) => {
                streaming.store(true, Ordering::Relaxed);
                delay = Duration::from_millis(200);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        item = stream.next() => match item {
                            Some(Ok(ev)) => {
                                if tx.try_send(ev).is_err() {
                                    debug!("runtime event dropped; relist will catch up");
                                }
                            }
                            Some(Err(e)) => { warn!(error = %e, "runtime event stream failed"); break }
                            None => break,
                        }
                    }
                }
                streaming.store(false, Ordering::Relaxed);
            }
            Err(e) => debug!(error = %e, "runtime events unavailable"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// When the previous relist started, for kubelet_pleg_relist_interval_seconds.
static LAST_RELIST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// kubelet_running_pods and kubelet_running_containers, from the relist (as upstream).
fn update_running_metrics(
    sandboxes: &[kubelet_cri::api::PodSandbox],
    containers: &[kubelet_cri::api::Container],
) {
    use kubelet_cri::api::{ContainerState as S, PodSandboxState};
    let m = &crate::metrics::METRICS;
    let ready = sandboxes
        .iter()
        .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
        .count();
    m.running_pods.set(ready as i64);
    let mut counts: BTreeMap<&str, i64> = [
        ("created", 0),
        ("running", 0),
        ("exited", 0),
        ("unknown", 0),
    ]
    .into_iter()
    .collect();
    for c in containers {
        let state = match S::try_from(c.state) {
            Ok(S::ContainerCreated) => "created",
            Ok(S::ContainerRunning) => "running",
            Ok(S::ContainerExited) => "exited",
            _ => "unknown",
        };
        *counts.entry(state).or_default() += 1;
    }
    for (state, n) in counts {
        m.running_containers
            .get_or_create(&vec![("container_state".to_string(), state.to_string())])
            .set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kuberuntime::WorkerState;
    use crate::kuberuntime::tests::pod;
    use crate::testing::{Setup, setup};
    use kubelet_cri::RuntimeService;

    fn start(s: &Setup, synced: bool, period: Duration) -> (PlegHealth, Arc<AtomicBool>) {
        let health = PlegHealth::new();
        let pods_synced = Arc::new(AtomicBool::new(synced));
        tokio::spawn(
            Pleg {
                runtime: s.runtime.clone(),
                workers: s.workers.clone(),
                health: health.clone(),
                period,
                pods_synced: pods_synced.clone(),
                own_root: None,
            }
            .run(s.cancel.child_token()),
        );
        (health, pods_synced)
    }

    fn lists(s: &Setup) -> usize {
        s.rt.calls()
            .iter()
            .filter(|c| *c == "ListPodSandbox")
            .count()
    }

    #[tokio::test]
    async fn a_container_exit_wakes_its_pod_worker() {
        let s = setup(&[]);
        // Relists and resyncs a minute apart: only the runtime's event can be quick.
        start(&s, true, Duration::from_secs(60));
        s.workers.update(Arc::new(pod("busybox", "Never", "Never")));
        s.until("running", |s| s.phase().as_deref() == Some("Running"))
            .await;
        let st = s.runtime.pod_status("u1").await.unwrap();
        s.rt.exit_container(&st.find("c").unwrap().id, 0);
        s.until("succeeded", |s| s.phase().as_deref() == Some("Succeeded"))
            .await;
        s.stop().await;
    }

    #[tokio::test]
    async fn orphans_are_removed_only_once_the_pod_list_is_synced() {
        let s = setup(&[]);
        // A pod in the runtime that no worker knows (deleted while the kubelet was down).
        let p = pod("busybox", "Never", "Always");
        s.runtime
            .sync_pod(&p, &Default::default(), &mut WorkerState::default())
            .await;
        assert_eq!(s.rt.sandbox_count(), 1);
        let (_, synced) = start(&s, false, Duration::from_millis(20));
        let before = lists(&s);
        s.until("two relists", |s| lists(s) >= before + 2).await;
        assert_eq!(
            s.rt.sandbox_count(),
            1,
            "not an orphan before the list is synced"
        );
        synced.store(true, Ordering::Release);
        s.until("orphan removed", |s| s.rt.sandbox_count() == 0)
            .await;
        assert!(s.rt.running_containers().is_empty());
        s.stop().await;
    }

    /// Standalone, a sandbox this kubelet did not start (another root directory, or none)
    /// is never an orphan; its own are.
    #[tokio::test]
    async fn standalone_cleans_up_only_its_own_sandboxes() {
        let s = setup(&[]);
        let mine = pod("busybox", "Never", "Always");
        s.runtime
            .sync_pod(&mine, &Default::default(), &mut WorkerState::default())
            .await;
        // Another kubelet's sandbox: Kubernetes labels, another root directory.
        let labels: HashMap<String, String> = [
            (kubelet_core::labels::POD_UID, "u-foreign"),
            (kubelet_core::labels::POD_NAME, "other"),
            (kubelet_core::labels::POD_NAMESPACE, "ns"),
            (KUBELET_ROOT_DIR, "/elsewhere"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        s.rt.run_pod_sandbox(
            kubelet_cri::api::PodSandboxConfig {
                metadata: Some(kubelet_cri::api::PodSandboxMetadata {
                    name: "other".into(),
                    uid: "u-foreign".into(),
                    namespace: "ns".into(),
                    attempt: 0,
                }),
                labels,
                ..Default::default()
            },
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(s.rt.sandbox_count(), 2);
        tokio::spawn(
            Pleg {
                runtime: s.runtime.clone(),
                workers: s.workers.clone(),
                health: PlegHealth::new(),
                period: Duration::from_millis(20),
                pods_synced: Arc::new(AtomicBool::new(true)),
                own_root: Some(s.runtime.cfg.root_dir.to_string_lossy().into_owned()),
            }
            .run(s.cancel.child_token()),
        );
        s.until("own orphan removed", |s| s.rt.sandbox_count() == 1)
            .await;
        let before = lists(&s);
        s.until("two more relists", |s| lists(s) >= before + 2)
            .await;
        let left = s.rt.list_pod_sandbox(None).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].labels[kubelet_core::labels::POD_UID], "u-foreign");
        s.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn health_fails_after_three_minutes_without_a_relist() {
        let h = PlegHealth::new();
        assert!(h.check().is_ok());
        tokio::time::advance(Duration::from_secs(179)).await;
        assert!(h.check().is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        let e = h.check().unwrap_err().to_string();
        assert!(
            e.starts_with("PLEG is not healthy: pleg was last seen active 181"),
            "{e}"
        );
        assert!(e.ends_with("threshold is 180s"), "{e}");
        h.mark();
        assert!(h.check().is_ok());
    }
}
