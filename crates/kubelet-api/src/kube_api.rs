//! The API seam against kube-apiserver: every request waits for the client's rate limiter,
//! then goes out through kube. Watches do not take tokens: like upstream's reflectors, a
//! watch is one long request, and its relists are paced by kube's back-off.

use crate::api::{
    EventSink, NodeClient, ObjectSource, PodSource, PodStatusWriter, Reviewer, WatchStream,
};
use crate::client::ApiClient;
use crate::error::{ApiError, Result};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
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

    async fn get_optional<K>(&self, op: &'static str, api: Api<K>, name: &str) -> Result<Option<K>>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.throttle().await?;
        match api.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) => match ApiError::from_kube(op, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
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
        self.throttle().await?;
        let patch = status_patch(&pod.uid, status);
        self.namespaced::<Pod>(&pod.namespace)
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .map(drop)
            .map_err(|e| ApiError::from_kube("patch pod status", e))
    }

    async fn delete_pod(&self, pod: &PodRef) -> Result<()> {
        self.throttle().await?;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.namespaced::<Pod>(&pod.namespace)
            .delete(&pod.name, &dp)
            .await
            .map(drop)
            .map_err(|e| ApiError::from_kube("delete pod", e))
    }
}

#[async_trait]
impl NodeClient for ApiClient {
    async fn get_node(&self, name: &str) -> Result<Node> {
        self.throttle().await?;
        self.all::<Node>()
            .get(name)
            .await
            .map_err(|e| ApiError::from_kube("get node", e))
    }

    async fn create_node(&self, node: &Node) -> Result<Node> {
        self.throttle().await?;
        self.all::<Node>()
            .create(&PostParams::default(), node)
            .await
            .map_err(|e| ApiError::from_kube("create node", e))
    }

    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        self.throttle().await?;
        self.all::<Node>()
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| ApiError::from_kube("patch node", e))
    }

    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node> {
        self.throttle().await?;
        self.all::<Node>()
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| ApiError::from_kube("patch node status", e))
    }

    async fn get_lease(&self, namespace: &str, name: &str) -> Result<Lease> {
        self.throttle().await?;
        self.namespaced::<Lease>(namespace)
            .get(name)
            .await
            .map_err(|e| ApiError::from_kube("get lease", e))
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease> {
        self.throttle().await?;
        let ns = lease.metadata.namespace.as_deref().unwrap_or_default();
        self.namespaced::<Lease>(ns)
            .create(&PostParams::default(), lease)
            .await
            .map_err(|e| ApiError::from_kube("create lease", e))
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease> {
        self.throttle().await?;
        let ns = lease.metadata.namespace.as_deref().unwrap_or_default();
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        self.namespaced::<Lease>(ns)
            .replace(name, &PostParams::default(), lease)
            .await
            .map_err(|e| ApiError::from_kube("update lease", e))
    }
}

#[async_trait]
impl EventSink for ApiClient {
    async fn create_event(&self, event: &Event) -> Result<()> {
        self.throttle().await?;
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        self.namespaced::<Event>(ns)
            .create(&PostParams::default(), event)
            .await
            .map(drop)
            .map_err(|e| ApiError::from_kube("create event", e))
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        self.throttle().await?;
        self.namespaced::<Event>(namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(|e| ApiError::from_kube("patch event", e))
    }
}

impl PodSource for ApiClient {
    fn watch_pods(&self, node: &str) -> WatchStream<Pod> {
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        // kube's watcher does not back off on its own: the default back-off paces relists.
        watch(self.all::<Pod>(), cfg)
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
        self.throttle().await?;
        self.namespaced::<ServiceAccount>(namespace)
            .create_subresource("token", service_account, &PostParams::default(), request)
            .await
            .map_err(|e| ApiError::from_kube("create token", e))
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
        self.throttle().await?;
        self.all::<TokenReview>()
            .create(&PostParams::default(), review)
            .await
            .map_err(|e| ApiError::from_kube("create tokenreview", e))
    }

    async fn access_review(&self, review: &SubjectAccessReview) -> Result<SubjectAccessReview> {
        self.throttle().await?;
        self.all::<SubjectAccessReview>()
            .create(&PostParams::default(), review)
            .await
            .map_err(|e| ApiError::from_kube("create subjectaccessreview", e))
    }
}
