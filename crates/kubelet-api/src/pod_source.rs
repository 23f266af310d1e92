//! Pods bound to this node, from the API server (upstream `pkg/kubelet/config/apiserver.go`):
//! a list+watch on `spec.nodeName`, resumed after errors, with deletes found either as watch
//! events or by diffing a fresh list against what we knew. Updates go to the pod workers
//! over a channel.

use crate::api::PodSource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What the pod workers are told.
#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// Added or changed.
    Apply(Arc<Pod>),
    /// Gone from the API server.
    Remove(Arc<Pod>),
    /// Every pod of a full list was handed over before this (sent after each relist), so
    /// pods the workers know and the list lacks are orphans.
    Synced { pods: usize },
}

/// Pod updates waiting for the workers; a full queue holds up the watch, never drops.
pub const QUEUE: usize = 1024;

/// Follows the node's pods until cancelled (or the workers stop listening).
pub async fn run(
    source: Arc<dyn PodSource>,
    node: String,
    tx: mpsc::Sender<PodUpdate>,
    cancel: CancellationToken,
) {
    let mut stream = source.watch_pods(&node);
    let mut known: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut relisting: Option<HashMap<String, Arc<Pod>>> = None;
    let mut listed: Vec<Arc<Pod>> = vec![];
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let mut out = vec![];
        match ev {
            Ok(watcher::Event::Apply(p)) => {
                let p = Arc::new(p);
                if let Some(uid) = p.metadata.uid.clone() {
                    known.insert(uid, p.clone());
                }
                out.push(PodUpdate::Apply(p));
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    known.remove(uid);
                }
                out.push(PodUpdate::Remove(Arc::new(p)));
            }
            Ok(watcher::Event::Init) => {
                relisting = Some(HashMap::new());
                listed.clear();
            }
            // A list is handed over whole at its end, as upstream's config source does: pods
            // gone first (they free room), then the rest oldest first, the order in which
            // admission judges them (upstream `HandlePodAdditions` sorts by creation time).
            Ok(watcher::Event::InitApply(p)) => {
                let p = Arc::new(p);
                if let (Some(uid), Some(r)) = (p.metadata.uid.clone(), relisting.as_mut()) {
                    r.insert(uid, p.clone());
                }
                listed.push(p);
            }
            Ok(watcher::Event::InitDone) => {
                let fresh = relisting.take().unwrap_or_default();
                for (uid, p) in known.drain() {
                    if !fresh.contains_key(&uid) {
                        out.push(PodUpdate::Remove(p));
                    }
                }
                known = fresh;
                let mut pods = std::mem::take(&mut listed);
                pods.sort_by(|a, b| {
                    let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                    t(a).cmp(&t(b))
                });
                out.extend(pods.into_iter().map(PodUpdate::Apply));
                out.push(PodUpdate::Synced { pods: known.len() });
            }
            // The stream backs off before it retries.
            Err(e) => warn!(error = %e, "pod watch failed; retrying"),
        }
        for u in out {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = tx.send(u) => if r.is_err() { return },
            }
        }
    }
}
