//! The ConfigMaps and Secrets the node's pods refer to, each kept current by a watch of that
//! one object (upstream's watch-based manager, `pkg/kubelet/util/manager`, the default
//! `configMapAndSecretChangeDetectionStrategy: Watch`). Reads come from the watch's cache, so
//! a pod sync costs no API request, and a change wakes the pods that use the object at once.

use crate::api::{ObjectSource, WatchStream};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::watcher::Event;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ConfigMap,
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
enum Cached {
    ConfigMap(Option<ConfigMap>),
    Secret(Option<Secret>),
}

#[derive(Debug)]
struct Entry {
    pods: HashSet<String>,
    /// `None` until the watch has listed the object once.
    cached: Arc<Mutex<Option<Cached>>>,
    _stop: DropGuard,
}

#[derive(Debug)]
struct Shared {
    api: Arc<dyn ObjectSource>,
    /// The watch tasks, one per object.
    tasks: TaskTracker,
    entries: Mutex<HashMap<ObjectKey, Entry>>,
    /// Pod UIDs to wake: an object they use changed.
    changed: UnboundedSender<String>,
    cancel: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct ObjectManager {
    shared: Arc<Shared>,
}

/// The ConfigMaps and Secrets a pod refers to: volumes, projections, env and envFrom.
pub fn referenced(pod: &Pod) -> HashSet<ObjectKey> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let key = |kind, name: &str| ObjectKey {
        kind,
        namespace: ns.clone(),
        name: name.to_string(),
    };
    let mut out = HashSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            out.insert(key(Kind::ConfigMap, &c.name));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            out.insert(key(Kind::Secret, name));
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &s.config_map {
                out.insert(key(Kind::ConfigMap, &c.name));
            }
            if let Some(c) = &s.secret {
                out.insert(key(Kind::Secret, &c.name));
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let (cms, secs) = kubelet_core::envvars::referenced(c);
        out.extend(cms.iter().map(|n| key(Kind::ConfigMap, n)));
        out.extend(secs.iter().map(|n| key(Kind::Secret, n)));
    }
    out
}

impl ObjectManager {
    pub fn new(
        api: Arc<dyn ObjectSource>,
        changed: UnboundedSender<String>,
        cancel: CancellationToken,
    ) -> Self {
        ObjectManager {
            shared: Arc::new(Shared {
                api,
                tasks: TaskTracker::new(),
                entries: Mutex::default(),
                changed,
                cancel,
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Entry>> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching what the pod refers to and stops watching what it no longer does.
    pub fn register_pod(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let wanted = referenced(pod);
        let mut entries = self.entries();
        entries.retain(|k, e| {
            if !wanted.contains(k) {
                e.pods.remove(&uid);
            }
            !e.pods.is_empty()
        });
        for k in wanted {
            if let Some(e) = entries.get_mut(&k) {
                e.pods.insert(uid.clone());
                continue;
            }
            let cached = Arc::new(Mutex::new(None));
            let stop = self.shared.cancel.child_token();
            self.spawn_watch(k.clone(), cached.clone(), stop.clone());
            entries.insert(
                k,
                Entry {
                    pods: HashSet::from([uid.clone()]),
                    cached,
                    _stop: stop.drop_guard(),
                },
            );
        }
    }

    /// The pod is gone: watches only it needed stop.
    pub fn unregister_pod(&self, uid: &str) {
        self.entries().retain(|_, e| {
            e.pods.remove(uid);
            !e.pods.is_empty()
        });
    }

    fn cached(&self, key: &ObjectKey) -> Option<Cached> {
        let entries = self.entries();
        let e = entries.get(key)?;
        e.cached.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From the watch, once it has listed the object; `None` when there is no watch yet.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<Option<ConfigMap>> {
        match self.cached(&ObjectKey {
            kind: Kind::ConfigMap,
            namespace: namespace.into(),
            name: name.into(),
        })? {
            Cached::ConfigMap(c) => Some(c),
            Cached::Secret(_) => None,
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Option<Secret>> {
        match self.cached(&ObjectKey {
            kind: Kind::Secret,
            namespace: namespace.into(),
            name: name.into(),
        })? {
            Cached::Secret(s) => Some(s),
            Cached::ConfigMap(_) => None,
        }
    }

    pub fn watches(&self) -> usize {
        self.entries().len()
    }

    /// Waits for the watch tasks to end (after cancellation).
    pub async fn shutdown(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    fn spawn_watch(
        &self,
        key: ObjectKey,
        cached: Arc<Mutex<Option<Cached>>>,
        stop: CancellationToken,
    ) {
        let me = self.clone();
        let api = &self.shared.api;
        let task = match key.kind {
            Kind::ConfigMap => {
                let s = api.watch_config_map(&key.namespace, &key.name);
                futures::future::Either::Left(async move {
                    me.follow(&key, s, &cached, &stop, Cached::ConfigMap).await
                })
            }
            Kind::Secret => {
                let s = api.watch_secret(&key.namespace, &key.name);
                futures::future::Either::Right(async move {
                    me.follow(&key, s, &cached, &stop, Cached::Secret).await
                })
            }
        };
        self.shared.tasks.spawn(task);
    }

    async fn follow<K>(
        &self,
        key: &ObjectKey,
        mut stream: WatchStream<K>,
        cached: &Mutex<Option<Cached>>,
        stop: &CancellationToken,
        wrap: fn(Option<K>) -> Cached,
    ) where
        K: kube::Resource + Clone,
    {
        let mut listed: Option<K> = None;
        let mut current_rv: Option<Option<String>> = None;
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => ev,
            };
            let value = match ev {
                None => return,
                Some(Err(e)) => {
                    warn!(kind = ?key.kind, namespace = %key.namespace, name = %key.name, error = %e, "watch failed; retrying");
                    continue;
                }
                Some(Ok(Event::Init)) => {
                    listed = None;
                    continue;
                }
                Some(Ok(Event::InitApply(o))) => {
                    listed = Some(o);
                    continue;
                }
                Some(Ok(Event::InitDone)) => listed.take(),
                Some(Ok(Event::Apply(o))) => Some(o),
                Some(Ok(Event::Delete(_))) => None,
            };
            let rv = value
                .as_ref()
                .map(|o| o.meta().resource_version.clone().unwrap_or_default());
            let first = current_rv.is_none();
            if current_rv.as_ref() == Some(&rv) {
                continue;
            }
            current_rv = Some(rv);
            *cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(wrap(value));
            if !first {
                let pods: Vec<String> = self
                    .entries()
                    .get(key)
                    .map(|e| e.pods.iter().cloned().collect())
                    .unwrap_or_default();
                debug!(kind = ?key.kind, namespace = %key.namespace, name = %key.name, pods = pods.len(), "referenced object changed");
                for uid in pods {
                    let _ = self.shared.changed.send(uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_volumes_projections_and_env() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "uid": "u"},
            "spec": {
                "volumes": [
                    {"name": "a", "configMap": {"name": "cm1"}},
                    {"name": "b", "secret": {"secretName": "s1"}},
                    {"name": "c", "projected": {"sources": [
                        {"configMap": {"name": "cm2"}}, {"secret": {"name": "s2"}}]}},
                    {"name": "d", "emptyDir": {}}
                ],
                "containers": [{"name": "x", "envFrom": [{"configMapRef": {"name": "cm3"}}],
                    "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}]
            }
        }))
        .unwrap_or_default();
        let mut names: Vec<String> = referenced(&pod)
            .into_iter()
            .map(|k| format!("{:?}/{}/{}", k.kind, k.namespace, k.name))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ConfigMap/ns/cm1",
                "ConfigMap/ns/cm2",
                "ConfigMap/ns/cm3",
                "Secret/ns/s1",
                "Secret/ns/s2",
                "Secret/ns/s3"
            ]
        );
    }
}
