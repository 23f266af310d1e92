//! The pod config (upstream `pkg/kubelet/config/config.go`): the file, HTTP and API sources
//! merged into one stream of pod updates for the workers. Every pod is stamped with its
//! source; mirror pods from the API go to the mirror index, never to a worker; the pods
//! count as synced (orphans can be judged) once every configured source has been seen.

pub mod file;
pub mod http;

use crate::pod_workers::PodWorkers;
use k8s_openapi::api::core::v1::Pod;
use kubelet_api::events::{Recorder, WARNING, pod_ref};
use kubelet_api::mirror_client::MirrorPods;
use kubelet_api::pod_source::PodUpdate;
use kubelet_core::clock::SharedClock;
use kubelet_core::config::{PodStorage, Source, is_mirror_pod, stamp};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Pod updates waiting to be merged; a full queue holds a source up, never drops.
pub const QUEUE: usize = 1024;

/// What a source sends.
#[derive(Debug, Clone)]
pub enum SourceUpdate {
    /// The API source's changes (a list and watch).
    Api(PodUpdate),
    /// The whole current set of a file or HTTP source.
    Set(Source, Vec<Pod>),
}

#[derive(Debug)]
pub struct PodConfig {
    pub workers: PodWorkers,
    /// `None` standalone: there are no mirror pods.
    pub mirrors: Option<MirrorPods>,
    /// The sources configured; the pods are synced once each has been seen.
    pub sources: Vec<Source>,
    pub synced: Arc<AtomicBool>,
    /// Told `true` once, when the pods are synced.
    pub listed: watch::Sender<bool>,
    pub recorder: Recorder,
    pub clock: SharedClock,
}

impl PodConfig {
    pub async fn run(self, mut rx: mpsc::Receiver<SourceUpdate>, cancel: CancellationToken) {
        let mut storage = PodStorage::default();
        // When each API pod was first seen (`config.seen`).
        let mut api_seen: HashMap<String, String> = HashMap::new();
        loop {
            let u = tokio::select! {
                _ = cancel.cancelled() => return,
                u = rx.recv() => match u { Some(u) => u, None => return },
            };
            // RFC 3339 with nine fraction digits, as upstream writes `config.seen`.
            let now = format!("{:.9}", self.clock.now());
            match u {
                SourceUpdate::Api(PodUpdate::Apply(p)) => {
                    if is_mirror_pod(&p) {
                        if let Some(m) = &self.mirrors {
                            m.update(p);
                        }
                        continue;
                    }
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let seen = api_seen.entry(uid).or_insert(now).clone();
                    let mut p = (*p).clone();
                    if let Some(a) = p.metadata.annotations.as_mut() {
                        a.remove(kubelet_core::config::CONFIG_SEEN);
                    }
                    stamp(&mut p, Source::Api, &seen);
                    self.workers.update(Arc::new(p));
                }
                SourceUpdate::Api(PodUpdate::Remove(p)) => {
                    if is_mirror_pod(&p) {
                        if let Some(m) = &self.mirrors {
                            m.remove(&p);
                        }
                        continue;
                    }
                    if let Some(uid) = &p.metadata.uid {
                        api_seen.remove(uid);
                    }
                    let mut p = (*p).clone();
                    stamp(&mut p, Source::Api, &now);
                    self.workers.remove(Arc::new(p));
                }
                SourceUpdate::Api(PodUpdate::Synced { pods }) => {
                    info!(pods, "pods from the API server listed");
                    storage.mark_seen(Source::Api);
                }
                SourceUpdate::Set(source, pods) => {
                    let changes = storage.set(source, pods, &now);
                    let changed = !changes.apply.is_empty() || !changes.remove.is_empty();
                    for (p, message) in changes.duplicates {
                        warn!(pod = ?p.metadata.name, source = source.as_str(), "{message}");
                        self.recorder
                            .emit(pod_ref(&p, None), WARNING, "FailedValidation", message);
                    }
                    for p in changes.remove {
                        info!(pod = ?p.metadata.name, uid = ?p.metadata.uid, source = source.as_str(), "static pod removed");
                        self.workers.remove(Arc::new(p));
                    }
                    for p in changes.apply {
                        info!(pod = ?p.metadata.name, uid = ?p.metadata.uid, source = source.as_str(), "static pod added or changed");
                        self.workers.update(Arc::new(p));
                    }
                    if changed && let Some(m) = &self.mirrors {
                        m.kick();
                    }
                }
            }
            if storage.seen_all(&self.sources) && !self.synced.swap(true, Ordering::AcqRel) {
                info!(sources = ?self.sources, "all pod sources seen");
                self.listed.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests;
