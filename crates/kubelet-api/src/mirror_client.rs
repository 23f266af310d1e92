//! Mirror pods (upstream `pkg/kubelet/pod/mirror_client.go` and the mirror half of
//! `pod_manager.go`): the API server's copies of static pods, which the kubelet never runs.
//! [`MirrorPods`] holds the mirrors the pod watch reports; [`MirrorPodManager`] makes them
//! match the static pods, as `kubelet_core::config::decide_mirrors` says.

use crate::api::MirrorClient;
use crate::status_manager::StatusManager;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::config::{
    CONFIG_MIRROR, MirrorAction, decide_mirrors, full_name, is_mirror_pod_of,
};
use kubelet_core::labels::PodRef;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The mirror pods bound to this node, by full name, as the pod watch last showed them.
#[derive(Debug, Clone, Default)]
pub struct MirrorPods {
    pods: Arc<Mutex<BTreeMap<String, Arc<Pod>>>>,
    changed: Arc<Notify>,
}

impl MirrorPods {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Pod>>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Added or changed in the API server.
    pub fn update(&self, pod: Arc<Pod>) {
        self.lock().insert(full_name(&pod), pod);
        self.changed.notify_one();
    }

    /// Gone from the API server (only that incarnation: a newer one may be stored).
    pub fn remove(&self, pod: &Pod) {
        self.forget(&full_name(pod), pod.metadata.uid.as_deref());
        self.changed.notify_one();
    }

    /// Drops the mirror stored under `full_name` if it is the incarnation `uid`.
    fn forget(&self, full_name: &str, uid: Option<&str>) {
        let mut g = self.lock();
        if g.get(full_name).map(|p| p.metadata.uid.as_deref()) == Some(uid) {
            g.remove(full_name);
        }
    }

    pub fn all(&self) -> Vec<Arc<Pod>> {
        self.lock().values().cloned().collect()
    }

    /// The UID of the static pod's current mirror, which its status is written to
    /// (upstream `TranslatePodUID`); `None` while it has none.
    pub fn mirror_uid(&self, static_pod: &PodRef) -> Option<String> {
        let g = self.lock();
        let m = g.get(&format!("{}/{}", static_pod.namespace, static_pod.name))?;
        let current = m
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .is_some_and(|h| *h == static_pod.uid);
        (current && m.metadata.deletion_timestamp.is_none())
            .then(|| m.metadata.uid.clone())
            .flatten()
    }

    /// Wakes the manager: a static pod came, changed or went.
    pub fn kick(&self) {
        self.changed.notify_one();
    }
}

/// The static pods the kubelet runs now (the pod workers' view).
pub type StaticPods = Arc<dyn Fn() -> Vec<Pod> + Send + Sync>;

/// Keeps one current mirror per static pod: creates missing ones, deletes stale and
/// orphaned ones, on every change and every `period`.
pub struct MirrorPodManager {
    pub client: Arc<dyn MirrorClient>,
    pub mirrors: MirrorPods,
    pub statics: StaticPods,
    pub status: StatusManager,
    pub node: String,
    pub period: Duration,
    /// Every pod source has been read: only then is a mirror with no static pod an orphan
    /// (upstream's `HandlePodCleanups` waits for `sourcesReady` too).
    pub synced: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for MirrorPodManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorPodManager")
            .field("node", &self.node)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl MirrorPodManager {
    pub async fn run(self, cancel: CancellationToken) {
        let mut node_uid: Option<String> = None;
        loop {
            self.sync(&mut node_uid).await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.mirrors.changed.notified() => {}
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }

    /// The Node's UID for the owner reference; `None` while it is missing or being deleted
    /// (upstream creates no mirror then).
    async fn node_uid(&self, cached: &mut Option<String>) -> Option<String> {
        if cached.is_none() {
            match self.client.get_node(&self.node).await {
                Ok(n) if n.metadata.deletion_timestamp.is_none() => {
                    *cached = n.metadata.uid;
                }
                Ok(_) => debug!("node is being deleted: no mirror pods"),
                Err(e) => debug!(error = %e, "node not readable yet: no mirror pods"),
            }
        }
        cached.clone()
    }

    async fn sync(&self, node_uid: &mut Option<String>) {
        let statics = (self.statics)();
        let mirrors = self.mirrors.all();
        let s: Vec<&Pod> = statics.iter().collect();
        let m: Vec<&Pod> = mirrors.iter().map(Arc::as_ref).collect();
        let missing = s.iter().any(|st| {
            !m.iter()
                .any(|mp| is_mirror_pod_of(mp, st) && mp.metadata.deletion_timestamp.is_none())
        });
        // The Node is read only when a mirror is to be made.
        let uid = if missing {
            self.node_uid(node_uid).await
        } else {
            None
        };
        let synced = self.synced.load(std::sync::atomic::Ordering::Acquire);
        for a in decide_mirrors(&s, &m, &self.node, uid.as_deref()) {
            if !synced && matches!(a, MirrorAction::Delete { .. }) {
                continue;
            }
            match a {
                MirrorAction::Delete {
                    namespace,
                    name,
                    uid,
                } => {
                    let r = PodRef {
                        namespace,
                        name,
                        uid,
                    };
                    match self.client.delete_pod(&r).await {
                        Ok(()) => info!(pod = %r.key(), uid = %r.uid, "deleted mirror pod"),
                        Err(e) if e.is_not_found() || e.is_status(409) => {}
                        // Still there: tried again at the next pass.
                        Err(e) => {
                            warn!(pod = %r.key(), error = %e, "deleting mirror pod failed");
                            continue;
                        }
                    }
                    // The watch reports the delete; until then the old one must not count.
                    self.mirrors.forget(&r.key(), Some(&r.uid));
                }
                MirrorAction::Create(pod) => {
                    let key = full_name(&pod);
                    match self.client.create_pod(pod.as_ref()).await {
                        Ok(created) => {
                            info!(pod = %key, uid = ?created.metadata.uid, "created mirror pod");
                            self.mirrors.lock().insert(key, Arc::new(created));
                        }
                        // Another incarnation still there: the watch tells when it goes.
                        Err(e) if e.is_status(409) => {
                            debug!(pod = %key, "mirror pod already exists")
                        }
                        Err(e) => {
                            // A Node recreated under the same name has a new UID.
                            if e.is_status(403) || e.is_status(422) {
                                *node_uid = None;
                            }
                            warn!(pod = %key, error = %e, "creating mirror pod failed; will retry")
                        }
                    }
                }
            }
        }
        // Statuses follow the mirrors: a new mirror gets its static pod's status.
        self.status.mirrors_changed();
    }
}
