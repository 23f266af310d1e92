//! Keeps the API server's pod statuses in line with what the kubelet computed
//! (upstream `pkg/kubelet/status`): only changed statuses are sent, a newer status always
//! replaces an older one that was not yet sent, and each pod has at most one request in
//! flight, so an old status can never overwrite a newer one. Once a deleted pod's resources
//! are reclaimed, its final status is written and the object is deleted with a UID precondition.

use crate::api::PodStatusWriter;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet_core::labels::PodRef;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How many pods' updates may be in flight at once.
const CONCURRENCY: usize = 16;
/// Pause before retrying a failed request.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Default)]
struct Entry {
    pod: Option<PodRef>,
    status: Option<PodStatus>,
    version: u64,
    sent_version: u64,
    /// The last status the API server accepted.
    sent: Option<PodStatus>,
    delete: bool,
    deleted: bool,
    /// A static pod: its status goes to its mirror pod, and it is never deleted.
    static_pod: bool,
    /// The mirror pod UID the last status went to.
    sent_to: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    dirty: HashSet<String>,
    in_flight: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct StatusManager {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    api: Option<Arc<dyn PodStatusWriter>>,
    mirrors: Option<crate::mirror_client::MirrorPods>,
}

impl StatusManager {
    /// `api` is `None` in standalone mode: statuses are kept, never sent.
    pub fn new(api: Option<Arc<dyn PodStatusWriter>>) -> Self {
        StatusManager {
            inner: Arc::default(),
            notify: Arc::new(Notify::new()),
            api,
            mirrors: None,
        }
    }

    /// Where static pods' statuses go: their mirror pods (upstream translates the UID).
    pub fn with_mirrors(mut self, mirrors: crate::mirror_client::MirrorPods) -> Self {
        self.mirrors = Some(mirrors);
        self
    }

    /// Mirror pods came or went: static pods' statuses are checked against them again.
    pub fn mirrors_changed(&self) {
        let mut g = self.lock();
        let statics: Vec<String> = g
            .entries
            .iter()
            .filter(|(_, e)| e.static_pod && e.status.is_some())
            .map(|(u, _)| u.clone())
            .collect();
        if statics.is_empty() {
            return;
        }
        g.dirty.extend(statics);
        drop(g);
        self.notify.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest status computed for the pod, newer than what the watch may show.
    pub fn cached(&self, uid: &str) -> Option<PodStatus> {
        self.lock().entries.get(uid).and_then(|e| e.status.clone())
    }

    /// Records a status; it is sent if it differs from the last one sent.
    pub fn set_pod_status(&self, pod: &Pod, status: PodStatus) {
        let r = PodRef::of(pod);
        let mut g = self.lock();
        let e = g.entries.entry(r.uid.clone()).or_default();
        // Once deleted (or gone), nothing more is sent for this pod.
        if e.deleted || e.status.as_ref() == Some(&status) && e.pod.is_some() {
            return;
        }
        e.pod = Some(r.clone());
        e.static_pod = kubelet_core::config::is_static_pod(pod);
        e.status = Some(status);
        e.version += 1;
        g.dirty.insert(r.uid);
        drop(g);
        self.notify.notify_one();
    }

    /// The pod's containers and sandboxes are gone: write the last status, then delete it.
    pub fn terminate_and_delete(&self, pod: &Pod) {
        let r = PodRef::of(pod);
        let mut g = self.lock();
        // A static pod's object is its mirror, which is the mirror manager's to delete.
        if kubelet_core::config::is_static_pod(pod) {
            return;
        }
        let e = g.entries.entry(r.uid.clone()).or_default();
        if e.deleted || e.delete {
            return;
        }
        e.pod = Some(r.clone());
        e.delete = true;
        g.dirty.insert(r.uid);
        drop(g);
        self.notify.notify_one();
    }

    /// The pod object is gone from the API: forget it.
    pub fn forget(&self, uid: &str) {
        let mut g = self.lock();
        g.entries.remove(uid);
        g.dirty.remove(uid);
    }

    /// The latest status computed for the pod has reached the API server.
    pub fn sent(&self, uid: &str) -> bool {
        // Standalone there is nowhere to send it: nothing to wait for.
        if self.api.is_none() {
            return true;
        }
        let g = self.lock();
        let Some(e) = g.entries.get(uid) else {
            return false;
        };
        e.version == e.sent_version && !g.dirty.contains(uid) && !g.in_flight.contains(uid)
    }

    pub fn pending(&self) -> usize {
        self.lock().dirty.len()
    }

    pub async fn run(self, cancel: CancellationToken) {
        let Some(api) = self.api.clone() else {
            cancel.cancelled().await;
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            // Take what is dirty and not already in flight, up to the concurrency limit.
            let batch: Vec<Work> = {
                let mut g = self.lock();
                let room = CONCURRENCY.saturating_sub(g.in_flight.len());
                let ready: Vec<String> = g
                    .dirty
                    .iter()
                    .filter(|u| !g.in_flight.contains(*u))
                    .take(room)
                    .cloned()
                    .collect();
                let mut out = vec![];
                for uid in ready {
                    g.dirty.remove(&uid);
                    let Some(e) = g.entries.get(&uid) else {
                        continue;
                    };
                    let Some(mut pod) = e.pod.clone() else {
                        continue;
                    };
                    let mut status = (e.version != e.sent_version)
                        .then(|| e.status.clone())
                        .flatten();
                    let mut sent = e.sent.clone();
                    let mut target = None;
                    if e.static_pod {
                        // No mirror yet: `mirrors_changed` brings the pod back.
                        let Some(m) = self.mirrors.as_ref().and_then(|m| m.mirror_uid(&pod)) else {
                            debug!(pod = %pod.key(), "static pod has no mirror pod yet; status not sent");
                            continue;
                        };
                        if e.sent_to.as_ref() != Some(&m) {
                            status = e.status.clone();
                            sent = None;
                        }
                        pod.uid = m.clone();
                        target = Some(m);
                    }
                    out.push(Work {
                        uid: uid.clone(),
                        pod,
                        status,
                        version: e.version,
                        delete: e.delete && !e.deleted,
                        sent,
                        target,
                    });
                    g.in_flight.insert(uid);
                }
                out
            };
            for Work {
                uid,
                pod,
                status,
                version,
                delete,
                sent,
                target,
            } in batch
            {
                let api = api.clone();
                let me = self.clone();
                tasks.spawn(async move {
                    let outcome =
                        sync_one(api.as_ref(), &pod, status.as_ref(), sent.as_ref(), delete).await;
                    me.finish(&uid, version, status, target, outcome);
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.notify.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
    }

    fn finish(
        &self,
        uid: &str,
        version: u64,
        status: Option<PodStatus>,
        target: Option<String>,
        outcome: Outcome,
    ) {
        let mut g = self.lock();
        g.in_flight.remove(uid);
        match outcome {
            // A static pod's mirror went: wait for the next one (`mirrors_changed`).
            Outcome::Gone if target.is_some() => {
                g.dirty.remove(uid);
            }
            // Keep a tombstone until the watch reports the pod gone (`forget`), so late
            // updates from the worker are not sent to a deleted object.
            Outcome::Gone => {
                if let Some(e) = g.entries.get_mut(uid) {
                    e.deleted = true;
                }
                g.dirty.remove(uid);
            }
            Outcome::Done { deleted } => {
                if let Some(e) = g.entries.get_mut(uid) {
                    if status.is_some() {
                        e.sent_version = e.sent_version.max(version);
                        e.sent = status;
                    }
                    if target.is_some() {
                        e.sent_to = target;
                    }
                    e.deleted |= deleted;
                    if e.version != e.sent_version || (e.delete && !e.deleted) {
                        g.dirty.insert(uid.to_string());
                    }
                }
            }
            Outcome::Retry => {
                g.dirty.insert(uid.to_string());
            }
        }
        drop(g);
        self.notify.notify_one();
    }
}

/// One pod's pending request, taken out of the shared state.
#[derive(Debug)]
struct Work {
    uid: String,
    pod: PodRef,
    status: Option<PodStatus>,
    version: u64,
    delete: bool,
    sent: Option<PodStatus>,
    /// A static pod's mirror UID, which `pod` carries.
    target: Option<String>,
}

#[derive(Debug)]
enum Outcome {
    Done { deleted: bool },
    Gone,
    Retry,
}

async fn sync_one(
    api: &dyn PodStatusWriter,
    pod: &PodRef,
    status: Option<&PodStatus>,
    sent: Option<&PodStatus>,
    delete: bool,
) -> Outcome {
    if let Some(status) = status.filter(|s| Some(*s) != sent) {
        match api.patch_pod_status(pod, status).await {
            Ok(()) => debug!(pod = %pod.key(), "status patched"),
            Err(e) if e.is_not_found() => return Outcome::Gone,
            // A UID mismatch (409/422): the pod was recreated under the same name.
            Err(e) if e.is_status(409) || e.is_status(422) => {
                warn!(pod = %pod.key(), error = %e, "status patch refused; dropping status of an old pod");
                return Outcome::Gone;
            }
            Err(e) => {
                warn!(pod = %pod.key(), error = %e, "status patch failed; will retry");
                tokio::time::sleep(RETRY).await;
                return Outcome::Retry;
            }
        }
    }
    if delete {
        match api.delete_pod(pod).await {
            Ok(()) => debug!(pod = %pod.key(), "pod deleted"),
            Err(e) if e.is_not_found() || e.is_status(409) => return Outcome::Gone,
            Err(e) => {
                warn!(pod = %pod.key(), error = %e, "final delete failed; will retry");
                tokio::time::sleep(RETRY).await;
                return Outcome::Retry;
            }
        }
        return Outcome::Done { deleted: true };
    }
    Outcome::Done { deleted: false }
}
