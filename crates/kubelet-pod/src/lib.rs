//! The pod pipeline (upstream `pkg/kubelet` below the API side): pod workers, kuberuntime,
//! PLEG, prober, lifecycle hooks, volume manager, eviction, logs, stats and metrics. It acts on
//! the decisions in kubelet-core and reports through kubelet-api; see docs/architecture.md.

pub mod admission;
pub mod config;
pub mod container_gc;
pub mod credentialprovider;
pub mod eviction;
pub mod images;
pub mod instrumented_services;
pub mod kuberuntime;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod pleg;
pub mod pod_workers;
pub mod prober;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod volume_manager;
