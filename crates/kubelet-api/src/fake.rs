//! An in-memory API server for unit tests: objects in maps, every request recorded, failures
//! injected per operation, and watches fed from what tests store.

use crate::api::{
    CsrClient, EventSink, MirrorClient, NodeClient, NodeWatcher, ObjectSource, PodSource,
    PodStatusWriter, Reviewer, WatchStream,
};
use crate::error::{ApiError, Result};
use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodStatus, Secret, Service};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::watcher::Event as WatchEvent;
use kubelet_core::labels::PodRef;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

type Key = (String, String);
type Senders<K> = Vec<(Key, mpsc::UnboundedSender<Result<WatchEvent<K>>>)>;
/// Picks one kind's stored objects and the watches of single objects of that kind.
type Watched<K> = fn(&mut State) -> (&mut BTreeMap<Key, K>, &mut Senders<K>);

#[derive(Debug, Default)]
pub struct State {
    pub pods: BTreeMap<Key, Pod>,
    /// Every accepted pod status patch, in order.
    pub status_patches: Vec<(PodRef, PodStatus)>,
    pub deleted_pods: Vec<PodRef>,
    pub nodes: BTreeMap<String, Node>,
    pub node_status_patches: usize,
    pub leases: BTreeMap<Key, Lease>,
    pub events: Vec<Event>,
    pub event_patches: Vec<(String, String, serde_json::Value)>,
    pub secrets: BTreeMap<Key, Secret>,
    pub config_maps: BTreeMap<Key, ConfigMap>,
    pub runtime_classes: BTreeMap<String, RuntimeClass>,
    pub services: BTreeMap<Key, Service>,
    /// CertificateSigningRequests (cluster-scoped: the namespace is empty).
    pub csrs: BTreeMap<Key, CertificateSigningRequest>,
    /// Every request by operation name, in order.
    pub calls: Vec<String>,
    /// Errors to answer the next requests of an operation with.
    failures: HashMap<String, VecDeque<ApiError>>,
    next_rv: u64,
    pod_watches: Senders<Pod>,
    node_watches: Senders<Node>,
    config_map_watches: Senders<ConfigMap>,
    secret_watches: Senders<Secret>,
    service_watches: Senders<Service>,
    csr_watches: Senders<CertificateSigningRequest>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// The key an object is stored under: its namespace and name.
fn meta_key(m: &ObjectMeta) -> Key {
    key(
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
    )
}

/// Sends `ev` to the watches of the one object `k`, forgetting those that have ended.
fn tell<K: Clone>(watches: &mut Senders<K>, k: &Key, ev: WatchEvent<K>) {
    watches.retain(|(w, tx)| w != k || tx.send(Ok(ev.clone())).is_ok());
}

fn conflict(what: &str) -> ApiError {
    ApiError::status(
        409,
        "Conflict",
        format!("{what}: the object has been modified"),
    )
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` requests of `op` (a trait method's name) fail with `code`.
    pub fn fail(&self, op: &str, n: usize, code: u16) {
        let mut s = self.state();
        let q = s.failures.entry(op.to_string()).or_default();
        for _ in 0..n {
            q.push_back(ApiError::status(
                code,
                "Injected",
                format!("injected {code} for {op}"),
            ));
        }
    }

    /// How many requests of `op` were made.
    pub fn count(&self, op: &str) -> usize {
        self.state().calls.iter().filter(|c| *c == op).count()
    }

    /// Waits until `cond` holds of the state (checked after every request).
    pub async fn wait_for(&self, cond: impl Fn(&State) -> bool) {
        loop {
            let notified = self.changed.notified();
            if cond(&self.state()) {
                return;
            }
            notified.await;
        }
    }

    fn call(&self, op: &str) -> Result<MutexGuard<'_, State>> {
        let mut s = self.state();
        s.calls.push(op.to_string());
        self.changed.notify_waiters();
        match s.failures.get_mut(op).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(s),
        }
    }

    fn bump(s: &mut State) -> String {
        s.next_rv += 1;
        s.next_rv.to_string()
    }

    /// Stores a pod (as the scheduler's binding would) and tells the pod watches.
    pub fn put_pod(&self, mut pod: Pod) {
        let mut s = self.state();
        pod.metadata.resource_version = Some(Self::bump(&mut s));
        s.pods.insert(meta_key(&pod.metadata), pod.clone());
        s.pod_watches
            .retain(|(_, tx)| tx.send(Ok(WatchEvent::Apply(pod.clone()))).is_ok());
        drop(s);
        self.changed.notify_waiters();
    }

    /// Removes a pod and tells the pod watches.
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        let mut s = self.state();
        if let Some(pod) = s.pods.remove(&key(namespace, name)) {
            s.pod_watches
                .retain(|(_, tx)| tx.send(Ok(WatchEvent::Delete(pod.clone()))).is_ok());
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// Makes every pod watch list afresh, as kube's watcher does after a lost watch.
    pub fn relist_pod_watches(&self) {
        let mut s = self.state();
        let pods: Vec<Pod> = s.pods.values().cloned().collect();
        s.pod_watches.retain(|(_, tx)| {
            std::iter::once(WatchEvent::Init)
                .chain(pods.iter().cloned().map(WatchEvent::InitApply))
                .chain(std::iter::once(WatchEvent::InitDone))
                .all(|ev| tx.send(Ok(ev)).is_ok())
        });
    }

    /// Removes a pod without telling the watches (a delete the watch missed).
    pub fn lose_pod(&self, namespace: &str, name: &str) {
        self.state().pods.remove(&key(namespace, name));
    }

    pub fn put_config_map(&self, cm: ConfigMap) {
        self.put_watched(cm, |s| (&mut s.config_maps, &mut s.config_map_watches));
    }

    pub fn put_secret(&self, sec: Secret) {
        self.put_watched(sec, |s| (&mut s.secrets, &mut s.secret_watches));
    }

    /// Stores `obj` with a new resourceVersion in the map `fields` picks, and tells the
    /// watches of that one object (in the list `fields` picks with it).
    fn put_watched<K>(&self, mut obj: K, fields: Watched<K>)
    where
        K: k8s_openapi::Metadata<Ty = ObjectMeta> + Clone,
    {
        let mut s = self.state();
        obj.metadata_mut().resource_version = Some(Self::bump(&mut s));
        let k = meta_key(obj.metadata());
        let (objects, watches) = fields(&mut s);
        objects.insert(k.clone(), obj.clone());
        tell(watches, &k, WatchEvent::Apply(obj));
    }

    /// A watch of the one object `k`, starting with it if it is stored (request `op`).
    fn watch_one<K>(&self, op: &str, k: Key, fields: Watched<K>) -> WatchStream<K>
    where
        K: Clone + Send + 'static,
    {
        let mut s = self.state();
        s.calls.push(op.into());
        let (objects, watches) = fields(&mut s);
        let (tx, stream) = open(objects.get(&k).cloned().into_iter().collect());
        watches.push((k, tx));
        stream
    }

    pub fn delete_config_map(&self, namespace: &str, name: &str) {
        let mut s = self.state();
        let k = key(namespace, name);
        if let Some(cm) = s.config_maps.remove(&k) {
            tell(&mut s.config_map_watches, &k, WatchEvent::Delete(cm));
        }
    }

    /// Live watches of single ConfigMaps and Secrets.
    pub fn watchers(&self) -> usize {
        let s = self.state();
        s.config_map_watches
            .iter()
            .filter(|(_, tx)| !tx.is_closed())
            .count()
            + s.secret_watches
                .iter()
                .filter(|(_, tx)| !tx.is_closed())
                .count()
    }
}

/// A watch that starts with the initial list of `items`.
fn open<K: Send + 'static>(
    items: Vec<K>,
) -> (mpsc::UnboundedSender<Result<WatchEvent<K>>>, WatchStream<K>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(Ok(WatchEvent::Init));
    for i in items {
        let _ = tx.send(Ok(WatchEvent::InitApply(i)));
    }
    let _ = tx.send(Ok(WatchEvent::InitDone));
    let stream = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .boxed();
    (tx, stream)
}

#[async_trait]
impl PodStatusWriter for FakeApi {
    async fn patch_pod_status(&self, pod: &PodRef, status: &PodStatus) -> Result<()> {
        let mut s = self.call("patch_pod_status")?;
        let k = key(&pod.namespace, &pod.name);
        let Some(p) = s.pods.get_mut(&k) else {
            return Err(ApiError::not_found(format!(
                "pods \"{}\" not found",
                pod.name
            )));
        };
        if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) {
            return Err(ApiError::status(
                409,
                "Conflict",
                "Precondition failed: UID in precondition",
            ));
        }
        p.status = Some(status.clone());
        s.status_patches.push((pod.clone(), status.clone()));
        Ok(())
    }

    async fn delete_pod(&self, pod: &PodRef) -> Result<()> {
        let mut s = self.call("delete_pod")?;
        let k = key(&pod.namespace, &pod.name);
        match s.pods.get(&k) {
            None => Err(ApiError::not_found(format!(
                "pods \"{}\" not found",
                pod.name
            ))),
            Some(p) if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) => Err(
                ApiError::status(409, "Conflict", "Precondition failed: UID in precondition"),
            ),
            Some(_) => {
                if let Some(gone) = s.pods.remove(&k) {
                    s.pod_watches
                        .retain(|(_, tx)| tx.send(Ok(WatchEvent::Delete(gone.clone()))).is_ok());
                }
                s.deleted_pods.push(pod.clone());
                drop(s);
                self.changed.notify_waiters();
                Ok(())
            }
        }
    }
}

#[async_trait]
impl MirrorClient for FakeApi {
    async fn create_pod(&self, pod: &Pod) -> Result<Pod> {
        let mut s = self.call("create_pod")?;
        let k = meta_key(&pod.metadata);
        if s.pods.contains_key(&k) {
            return Err(ApiError::status(
                409,
                "AlreadyExists",
                format!("pods \"{}\" already exists", k.1),
            ));
        }
        let mut pod = pod.clone();
        pod.metadata.resource_version = Some(Self::bump(&mut s));
        let n = s.next_rv;
        pod.metadata.uid = Some(format!("fake-uid-{n}"));
        s.pods.insert(k, pod.clone());
        s.pod_watches
            .retain(|(_, tx)| tx.send(Ok(WatchEvent::Apply(pod.clone()))).is_ok());
        drop(s);
        self.changed.notify_waiters();
        Ok(pod)
    }
}

fn merge(into: &mut serde_json::Value, patch: &serde_json::Value) {
    match (into, patch) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn patched<K: serde::Serialize + serde::de::DeserializeOwned>(
    obj: &K,
    patch: &serde_json::Value,
) -> Result<K> {
    let bad = |e: serde_json::Error| ApiError::status(422, "Invalid", e.to_string());
    let mut v = serde_json::to_value(obj).map_err(bad)?;
    merge(&mut v, patch);
    serde_json::from_value(v).map_err(bad)
}

/// The stored node `name`, or the API server's 404.
fn stored_node<'a>(s: &'a State, name: &str) -> Result<&'a Node> {
    s.nodes
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("nodes \"{name}\" not found")))
}

#[async_trait]
impl NodeClient for FakeApi {
    async fn get_node(&self, name: &str) -> Result<Node> {
        let s = self.call("get_node")?;
        stored_node(&s, name).cloned()
    }

    async fn create_node(&self, node: &Node) -> Result<Node> {
        let mut s = self.call("create_node")?;
        let name = node.metadata.name.clone().unwrap_or_default();
        if s.nodes.contains_key(&name) {
            return Err(ApiError::status(
                409,
                "AlreadyExists",
                format!("nodes \"{name}\" already exists"),
            ));
        }
        let mut n = node.clone();
        n.metadata.uid = Some(format!("uid-{name}"));
        n.metadata.resource_version = Some(Self::bump(&mut s));
        s.nodes.insert(name.clone(), n.clone());
        tell(
            &mut s.node_watches,
            &key("", &name),
            WatchEvent::Apply(n.clone()),
        );
        Ok(n)
    }

    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        let mut s = self.call("patch_node")?;
        let mut n = patched(stored_node(&s, name)?, patch)?;
        n.metadata.resource_version = Some(Self::bump(&mut s));
        s.nodes.insert(name.to_string(), n.clone());
        tell(
            &mut s.node_watches,
            &key("", name),
            WatchEvent::Apply(n.clone()),
        );
        Ok(n)
    }

    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        let mut s = self.call("patch_node_status")?;
        let n = stored_node(&s, name)?;
        // Only the status may change through the subresource.
        let mut n2 = patched(n, patch)?;
        n2.metadata = n.metadata.clone();
        n2.spec = n.spec.clone();
        s.node_status_patches += 1;
        n2.metadata.resource_version = Some(Self::bump(&mut s));
        s.nodes.insert(name.to_string(), n2.clone());
        tell(
            &mut s.node_watches,
            &key("", name),
            WatchEvent::Apply(n2.clone()),
        );
        Ok(n2)
    }

    async fn get_lease(&self, namespace: &str, name: &str) -> Result<Lease> {
        let s = self.call("get_lease")?;
        s.leases
            .get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("leases \"{name}\" not found")))
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease> {
        let mut s = self.call("create_lease")?;
        let k = meta_key(&lease.metadata);
        if s.leases.contains_key(&k) {
            return Err(ApiError::status(
                409,
                "AlreadyExists",
                "lease already exists",
            ));
        }
        let mut l = lease.clone();
        l.metadata.resource_version = Some(Self::bump(&mut s));
        s.leases.insert(k, l.clone());
        Ok(l)
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease> {
        let mut s = self.call("replace_lease")?;
        let k = meta_key(&lease.metadata);
        let Some(cur) = s.leases.get(&k) else {
            return Err(ApiError::not_found("lease not found"));
        };
        if cur.metadata.resource_version != lease.metadata.resource_version {
            return Err(conflict("leases"));
        }
        let mut l = lease.clone();
        l.metadata.resource_version = Some(Self::bump(&mut s));
        s.leases.insert(k, l.clone());
        Ok(l)
    }
}

impl FakeApi {
    /// Changes a stored lease behind the kubelet's back (another writer).
    pub fn touch_lease(&self, namespace: &str, name: &str) {
        let mut s = self.state();
        let rv = Self::bump(&mut s);
        if let Some(l) = s.leases.get_mut(&key(namespace, name)) {
            l.metadata.resource_version = Some(rv);
        }
    }
}

#[async_trait]
impl EventSink for FakeApi {
    async fn create_event(&self, event: &Event) -> Result<()> {
        let mut s = self.call("create_event")?;
        s.events.push(event.clone());
        Ok(())
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        let mut s = self.call("patch_event")?;
        s.event_patches
            .push((namespace.to_string(), name.to_string(), patch.clone()));
        if let Some(e) = s
            .events
            .iter_mut()
            .find(|e| e.metadata.name.as_deref() == Some(name))
        {
            if let Some(c) = patch.get("count").and_then(|c| c.as_i64()) {
                e.count = Some(c as i32);
            }
            if let Some(t) = patch
                .get("lastTimestamp")
                .and_then(|t| serde_json::from_value::<Time>(t.clone()).ok())
            {
                e.last_timestamp = Some(t);
            }
        }
        Ok(())
    }
}

impl PodSource for FakeApi {
    fn watch_pods(&self, _node: &str) -> WatchStream<Pod> {
        let mut s = self.state();
        s.calls.push("watch_pods".into());
        let (tx, stream) = open(s.pods.values().cloned().collect());
        s.pod_watches.push((key("", ""), tx));
        drop(s);
        self.changed.notify_waiters();
        stream
    }
}

impl NodeWatcher for FakeApi {
    fn watch_node(&self, name: &str) -> WatchStream<Node> {
        let mut s = self.state();
        s.calls.push("watch_node".into());
        let (tx, stream) = open(s.nodes.get(name).cloned().into_iter().collect());
        s.node_watches.push((key("", name), tx));
        drop(s);
        self.changed.notify_waiters();
        stream
    }
}

#[async_trait]
impl ObjectSource for FakeApi {
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        let s = self.call("get_secret")?;
        Ok(s.secrets.get(&key(namespace, name)).cloned())
    }

    async fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        let s = self.call("get_config_map")?;
        Ok(s.config_maps.get(&key(namespace, name)).cloned())
    }

    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>> {
        let s = self.call("get_runtime_class")?;
        Ok(s.runtime_classes.get(name).cloned())
    }

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest> {
        let _s = self.call("create_token")?;
        let mut r = request.clone();
        let secs = request.spec.expiration_seconds.unwrap_or(3600);
        r.status = Some(TokenRequestStatus {
            token: format!("token-{namespace}-{service_account}-{secs}"),
            expiration_timestamp: Time(
                k8s_openapi::jiff::Timestamp::from_second(1_767_225_600 + secs)
                    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            ),
        });
        Ok(r)
    }

    fn watch_config_map(&self, namespace: &str, name: &str) -> WatchStream<ConfigMap> {
        self.watch_one("watch_config_map", key(namespace, name), |s| {
            (&mut s.config_maps, &mut s.config_map_watches)
        })
    }

    fn watch_secret(&self, namespace: &str, name: &str) -> WatchStream<Secret> {
        self.watch_one("watch_secret", key(namespace, name), |s| {
            (&mut s.secrets, &mut s.secret_watches)
        })
    }

    fn watch_services(&self) -> WatchStream<Service> {
        let mut s = self.state();
        let (tx, stream) = open(s.services.values().cloned().collect());
        s.service_watches.push((key("", ""), tx));
        stream
    }
}

#[async_trait]
impl Reviewer for FakeApi {
    async fn token_review(&self, review: &TokenReview) -> Result<TokenReview> {
        let _s = self.call("token_review")?;
        Ok(review.clone())
    }

    async fn access_review(&self, review: &SubjectAccessReview) -> Result<SubjectAccessReview> {
        let _s = self.call("access_review")?;
        Ok(review.clone())
    }
}

/// The stored CSRs and the watches of single CSRs.
fn csrs(
    s: &mut State,
) -> (
    &mut BTreeMap<Key, CertificateSigningRequest>,
    &mut Senders<CertificateSigningRequest>,
) {
    (&mut s.csrs, &mut s.csr_watches)
}

impl FakeApi {
    /// Changes a stored CSR as a controller would (new resourceVersion, watches told).
    pub fn update_csr(&self, name: &str, f: impl FnOnce(&mut CertificateSigningRequest)) {
        let Some(mut csr) = self.state().csrs.get(&key("", name)).cloned() else {
            return;
        };
        f(&mut csr);
        self.put_watched(csr, csrs);
        self.changed.notify_waiters();
    }

    fn add_csr_condition(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        message: &str,
        cert: Option<&[u8]>,
    ) {
        self.update_csr(name, |c| {
            let status = c.status.get_or_insert_with(Default::default);
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if !conds.iter().any(|c| c.type_ == type_) {
                conds.push(CertificateSigningRequestCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    ..Default::default()
                });
            }
            if let Some(pem) = cert {
                status.certificate = Some(k8s_openapi::ByteString(pem.to_vec()));
            }
        });
    }

    /// Approves a CSR (as csrapproving does) and, with `cert`, issues it (as csrsigning).
    pub fn approve_csr(&self, name: &str, cert: Option<&[u8]>) {
        self.add_csr_condition(
            name,
            "Approved",
            "AutoApproved",
            "approved by the test",
            cert,
        );
    }

    pub fn deny_csr(&self, name: &str, reason: &str, message: &str) {
        self.add_csr_condition(name, "Denied", reason, message, None);
    }

    /// Deletes a CSR and tells its watches.
    pub fn delete_csr(&self, name: &str) {
        let mut s = self.state();
        let k = key("", name);
        if let Some(c) = s.csrs.remove(&k) {
            tell(&mut s.csr_watches, &k, WatchEvent::Delete(c));
        }
    }
}

#[async_trait]
impl CsrClient for FakeApi {
    async fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest> {
        let mut s = self.call("create_csr")?;
        let mut csr = csr.clone();
        let rv = Self::bump(&mut s);
        if csr.metadata.name.as_deref().unwrap_or_default().is_empty() {
            let Some(prefix) = csr.metadata.generate_name.clone() else {
                return Err(ApiError::status(
                    422,
                    "Invalid",
                    "name or generateName is required",
                ));
            };
            csr.metadata.name = Some(format!("{prefix}{rv:0>5}"));
        }
        let k = meta_key(&csr.metadata);
        if s.csrs.contains_key(&k) {
            return Err(ApiError::status(
                409,
                "AlreadyExists",
                format!("certificatesigningrequests \"{}\" already exists", k.1),
            ));
        }
        csr.metadata.uid = Some(format!("csr-uid-{rv}"));
        csr.metadata.resource_version = Some(rv);
        s.csrs.insert(k.clone(), csr.clone());
        tell(&mut s.csr_watches, &k, WatchEvent::Apply(csr.clone()));
        Ok(csr)
    }

    fn watch_csr(&self, name: &str) -> WatchStream<CertificateSigningRequest> {
        let w = self.watch_one("watch_csr", key("", name), csrs);
        self.changed.notify_waiters();
        w
    }
}
