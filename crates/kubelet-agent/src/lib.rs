//! kubelet-rs: the Kubernetes node agent. Module names follow upstream's `pkg/kubelet`
//! packages; see docs/architecture.md for the data flow.

pub mod certificate;
pub mod credentialprovider;
pub mod eviction;
pub mod healthz;
pub mod instrumented_services;
pub mod kubelet;
pub mod kuberuntime;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod node_facts;
pub mod options;
pub mod pleg;
pub mod pod_workers;
pub mod prober;
pub mod security_context;
pub mod server;
pub mod stats;
pub mod tasks;
pub mod volume_manager;
