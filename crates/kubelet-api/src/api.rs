//! The seam in front of the API server: one trait per consumer, each request a method.
//! `ApiClient` implements them against kube-apiserver (`kube_api.rs`, the only place a
//! `kube::Api` is built); `fake::FakeApi` implements them in memory for unit tests.

use crate::error::Result;
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodStatus, Secret, Service};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::runtime::watcher;
use kubelet_core::labels::PodRef;

/// A watch's events: an initial list (Init, InitApply.., InitDone), then changes. A watch
/// resumes by itself after errors, which it reports as items.
pub type WatchStream<K> = BoxStream<'static, Result<watcher::Event<K>>>;

/// Writes what the status manager decided (upstream `status.Manager`'s client side).
#[async_trait]
pub trait PodStatusWriter: Send + Sync + std::fmt::Debug {
    /// Strategic-merge patch of the status, applied only to this incarnation (its UID).
    async fn patch_pod_status(&self, pod: &PodRef, status: &PodStatus) -> Result<()>;
    /// The final delete: no grace period, UID precondition.
    async fn delete_pod(&self, pod: &PodRef) -> Result<()>;
}

/// Mirror pods: the API server's copies of static pods (upstream `pod.MirrorClient`).
/// Deletes go through [`PodStatusWriter::delete_pod`] (grace 0, UID precondition).
#[async_trait]
pub trait MirrorClient: PodStatusWriter + NodeClient {
    async fn create_pod(&self, pod: &Pod) -> Result<Pod>;
}

/// The Node object and its heartbeat Lease in `kube-node-lease`.
#[async_trait]
pub trait NodeClient: Send + Sync + std::fmt::Debug {
    async fn get_node(&self, name: &str) -> Result<Node>;
    async fn create_node(&self, node: &Node) -> Result<Node>;
    /// Strategic-merge patch of the Node's metadata or spec.
    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node>;
    /// Strategic-merge patch of the Node's status subresource.
    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node>;
    async fn get_lease(&self, namespace: &str, name: &str) -> Result<Lease>;
    async fn create_lease(&self, lease: &Lease) -> Result<Lease>;
    /// A full update, refused (409) if the lease changed since it was read.
    async fn replace_lease(&self, lease: &Lease) -> Result<Lease>;
}

/// core/v1 Events.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    async fn create_event(&self, event: &Event) -> Result<()>;
    /// Merge patch of a repeated event (count, lastTimestamp).
    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()>;
}

/// The pods bound to this node.
pub trait PodSource: Send + Sync + std::fmt::Debug {
    fn watch_pods(&self, node: &str) -> WatchStream<Pod>;
}

/// This node's Node object (upstream's node informer, field-selected by name).
pub trait NodeWatcher: Send + Sync + std::fmt::Debug {
    fn watch_node(&self, name: &str) -> WatchStream<Node>;
}

/// The objects pods refer to: read once, or watched.
#[async_trait]
pub trait ObjectSource: Send + Sync + std::fmt::Debug {
    /// `None` when it does not exist.
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>>;
    async fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>>;
    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>>;
    /// A service account token bound to a pod (the `token` subresource).
    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest>;
    /// One object, by name.
    fn watch_config_map(&self, namespace: &str, name: &str) -> WatchStream<ConfigMap>;
    fn watch_secret(&self, namespace: &str, name: &str) -> WatchStream<Secret>;
    /// Every Service, for the containers' environment.
    fn watch_services(&self) -> WatchStream<Service>;
}

/// Authentication and authorization of 10250's clients by the API server.
#[async_trait]
pub trait Reviewer: Send + Sync + std::fmt::Debug {
    async fn token_review(&self, review: &TokenReview) -> Result<TokenReview>;
    async fn access_review(&self, review: &SubjectAccessReview) -> Result<SubjectAccessReview>;
}

/// certificates.k8s.io/v1 CertificateSigningRequests, for the certificate manager
/// (upstream `util/certificate/csr`).
#[async_trait]
pub trait CsrClient: Send + Sync + std::fmt::Debug {
    /// Creates the CSR; the answer carries the name (for `generateName`) and the UID.
    async fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest>;
    /// The one CSR of that name (list then watch, field selector `metadata.name`).
    fn watch_csr(&self, name: &str) -> WatchStream<CertificateSigningRequest>;
}
