//! The kubelet's API-server side (upstream `pkg/kubelet/{config,status,nodelease,events}`,
//! `kubelet_node_status.go`, `util/manager`): everything that reads from or writes to
//! kube-apiserver, written against the traits in [`api`] so each part is unit-tested with
//! [`fake::FakeApi`] and a paused clock.

pub mod api;
pub mod certificate;
pub mod client;
pub mod error;
pub mod events;
#[cfg(feature = "test-util")]
pub mod fake;
pub mod kube_api;
pub mod kubelet_node_status;
pub mod mirror_client;
pub mod node_informer;
pub mod nodelease;
pub mod object_manager;
pub mod pod_source;
pub mod rest_metrics;
pub mod status_manager;

pub use api::{
    CsrClient, EventSink, MirrorClient, NodeClient, NodeWatcher, ObjectSource, PodSource,
    PodStatusWriter, Reviewer,
};
pub use client::{ApiClient, RateLimiter};
pub use error::ApiError;
