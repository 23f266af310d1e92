//! The API seam against kube-apiserver: every request waits for the client's rate limiter,
//! then goes out through kube. Watches do not take tokens: like upstream's reflectors, a
//! watch is one long request, and its relists are paced by kube's back-off.

use crate::api::{
    CsrClient, EventSink, MirrorClient, NodeClient, NodeWatcher, ObjectSource, PodSource,
    PodStatusWriter, Reviewer, WatchStream,
};
use crate::client::ApiClient;
use crate::error::{ApiError, Result};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, Pod, PodStatus, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kubelet_core::labels::PodRef;

/// The strategic-merge patch: conditions merge by type (keeping other writers' conditions),
/// and `metadata.uid` makes it apply only to this incarnation of the pod.
pub fn status_patch(uid: &str, status: &PodStatus) -> serde_json::Value {
    serde_json::json!({ "metadata": { "uid": uid }, "status": status })
}

impl ApiClient {
    fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn all<K>(&self) -> Api<K>
    where
        K: kube::Resource,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// Waits for the rate limiter, then sends the request (futures are lazy: nothing goes out
    /// before the token); an error names `op`.
    async fn request<T>(
        &self,
        op: &'static str,
        send: impl Future<Output = kube::Result<T>>,
    ) -> Result<T> {
        self.throttle().await?;
        send.await.map_err(|e| ApiError::from_kube(op, e))
    }

    async fn get_optional<K>(&self, op: &'static str, api: Api<K>, name: &str) -> Result<Option<K>>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match self.request(op, api.get(name)).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn watch<K>(api: Api<K>, cfg: watcher::Config) -> WatchStream<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    <K as kube::Resource>::DynamicType: Default,
{
    watcher::watcher(api, cfg)
        .default_backoff()
        .map_err(ApiError::from)
        .boxed()
}

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

#[async_trait]
impl PodStatusWriter for ApiClient {
    async fn patch_pod_status(&self, pod: &PodRef, status: &PodStatus) -> Result<()> {
        let patch = status_patch(&pod.uid, status);
        self.request(
            "patch pod status",
            self.namespaced::<Pod>(&pod.namespace).patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            ),
        )
        .await
        .map(drop)
    }

    async fn delete_pod(&self, pod: &PodRef) -> Result<()> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.request(
            "delete pod",
            self.namespaced::<Pod>(&pod.namespace)
                .delete(&pod.name, &dp),
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl MirrorClient for ApiClient {
    async fn create_pod(&self, pod: &Pod) -> Result<Pod> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        self.request(
            "create mirror pod",
            self.namespaced::<Pod>(ns)
                .create(&PostParams::default(), pod),
        )
        .await
    }
}

#[async_trait]
impl NodeClient for ApiClient {
    async fn get_node(&self, name: &str) -> Result<Node> {
        self.request("get node", self.all::<Node>().get(name)).await
    }

    async fn create_node(&self, node: &Node) -> Result<Node> {
        self.request(
            "create node",
            self.all::<Node>().create(&PostParams::default(), node),
        )
        .await
    }

    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        self.request(
            "patch node",
            self.all::<Node>()
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .await
    }

    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        self.request(
            "patch node status",
            self.all::<Node>().patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            ),
        )
        .await
    }

    async fn get_lease(&self, namespace: &str, name: &str) -> Result<Lease> {
        self.request("get lease", self.namespaced::<Lease>(namespace).get(name))
            .await
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease> {
        let ns = lease.metadata.namespace.as_deref().unwrap_or_default();
        self.request(
            "create lease",
            self.namespaced::<Lease>(ns)
                .create(&PostParams::default(), lease),
        )
        .await
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease> {
        let ns = lease.metadata.namespace.as_deref().unwrap_or_default();
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        self.request(
            "update lease",
            self.namespaced::<Lease>(ns)
                .replace(name, &PostParams::default(), lease),
        )
        .await
    }
}

#[async_trait]
impl EventSink for ApiClient {
    async fn create_event(&self, event: &Event) -> Result<()> {
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        self.request(
            "create event",
            self.namespaced::<Event>(ns)
                .create(&PostParams::default(), event),
        )
        .await
        .map(drop)
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        self.request(
            "patch event",
            self.namespaced::<Event>(namespace).patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            ),
        )
        .await
        .map(drop)
    }
}

impl PodSource for ApiClient {
    fn watch_pods(&self, node: &str) -> WatchStream<Pod> {
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        // kube's watcher does not back off on its own: the default back-off paces relists.
        watch(self.all::<Pod>(), cfg)
    }
}

impl NodeWatcher for ApiClient {
    fn watch_node(&self, name: &str) -> WatchStream<Node> {
        watch(self.all::<Node>(), by_name(name))
    }
}

#[async_trait]
impl ObjectSource for ApiClient {
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        self.get_optional("get secret", self.namespaced(namespace), name)
            .await
    }

    async fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        self.get_optional("get configmap", self.namespaced(namespace), name)
            .await
    }

    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>> {
        self.get_optional("get runtimeclass", self.all(), name)
            .await
    }

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest> {
        self.request(
            "create token",
            self.namespaced::<ServiceAccount>(namespace)
                .create_subresource("token", service_account, &PostParams::default(), request),
        )
        .await
    }

    fn watch_config_map(&self, namespace: &str, name: &str) -> WatchStream<ConfigMap> {
        watch(self.namespaced(namespace), by_name(name))
    }

    fn watch_secret(&self, namespace: &str, name: &str) -> WatchStream<Secret> {
        watch(self.namespaced(namespace), by_name(name))
    }

    fn watch_services(&self) -> WatchStream<Service> {
        watch(self.all(), watcher::Config::default())
    }
}

#[async_trait]
impl Reviewer for ApiClient {
    async fn token_review(&self, review: &TokenReview) -> Result<TokenReview> {
        self.request(
            "create tokenreview",
            self.all::<TokenReview>()
                .create(&PostParams::default(), review),
        )
        .await
    }

    async fn access_review(&self, review: &SubjectAccessReview) -> Result<SubjectAccessReview> {
        self.request(
            "create subjectaccessreview",
            self.all::<SubjectAccessReview>()
                .create(&PostParams::default(), review),
        )
        .await
    }
}

#[async_trait]
impl CsrClient for ApiClient {
    async fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest> {
        self.request(
            "create certificatesigningrequest",
            self.all::<CertificateSigningRequest>()
                .create(&PostParams::default(), csr),
        )
        .await
    }

    fn watch_csr(&self, name: &str) -> WatchStream<CertificateSigningRequest> {
        watch(self.all(), by_name(name))
    }
}
