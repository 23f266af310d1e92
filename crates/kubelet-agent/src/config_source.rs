//! Pods bound to this node, from the API server (upstream `pkg/kubelet/config/apiserver.go`):
//! a list+watch on `spec.nodeName`, resumed after errors by kube's watcher, with deletes
//! found either as watch events or by diffing a fresh list against what we knew.

use crate::client::ApiClient;
use crate::pod_workers::PodWorkers;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub async fn run(
    api: ApiClient,
    node: String,
    workers: PodWorkers,
    synced: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let pods: kube::Api<Pod> = kube::Api::all(api.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, cfg).boxed();
    let mut known: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut relisting: Option<HashMap<String, Arc<Pod>>> = None;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(watcher::Event::Apply(p)) => {
                let p = Arc::new(p);
                if let Some(uid) = p.metadata.uid.clone() {
                    known.insert(uid, p.clone());
                }
                workers.update(p);
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    known.remove(uid);
                }
                workers.remove(Arc::new(p));
            }
            Ok(watcher::Event::Init) => relisting = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(p)) => {
                let p = Arc::new(p);
                if let (Some(uid), Some(r)) = (p.metadata.uid.clone(), relisting.as_mut()) {
                    r.insert(uid, p.clone());
                }
                workers.update(p);
            }
            Ok(watcher::Event::InitDone) => {
                let fresh = relisting.take().unwrap_or_default();
                for (uid, p) in known.drain() {
                    if !fresh.contains_key(&uid) {
                        workers.remove(p);
                    }
                }
                known = fresh;
                if !synced.swap(true, Ordering::AcqRel) {
                    info!(pods = known.len(), "initial pod list synced");
                }
            }
            Err(e) => {
                warn!(error = %e, "pod watch failed; retrying");
                // kube's watcher does not back off on its own.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
