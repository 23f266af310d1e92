//! The eviction manager (upstream `pkg/kubelet/eviction`), local-storage part: a pod whose
//! emptyDir outgrows its `sizeLimit`, whose ephemeral storage outgrows its containers' summed
//! limits, or with a container whose rootfs and logs outgrow its own limit, is evicted, as
//! upstream's `localStorageEviction`.

use crate::pod_workers::PodWorkers;
use crate::stats::StatsProvider;
use crate::volume_manager::VolumeManager;
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::eviction::{
    empty_dir_limits, empty_dir_over_limit, ephemeral_storage_over_limit, has_ephemeral_limits,
};
use std::collections::HashMap;
use std::path::PathBuf;
use tracing::{info, warn};

/// Upstream's eviction monitoring interval.
pub const MONITORING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Measures the limited emptyDirs of every running pod and evicts those over their limit;
/// then, from the summary stats, the pods and containers with ephemeral-storage limits.
pub async fn local_storage_evictions(
    workers: &PodWorkers,
    volumes: &VolumeManager,
    stats: &StatsProvider,
) {
    let mut limited_pods = vec![];
    for pod in workers.pods() {
        if terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if empty_dir_evicted(workers, volumes, &pod).await {
            continue;
        }
        if has_ephemeral_limits(&pod) {
            limited_pods.push(pod);
        }
    }
    if limited_pods.is_empty() {
        return;
    }
    let pod_stats = match stats.pod_storage_stats(&limited_pods).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no stats for the local-storage eviction checks");
            return;
        }
    };
    for ps in &pod_stats {
        let Some(pod) = limited_pods
            .iter()
            .find(|p| p.metadata.uid.as_deref() == Some(ps.pod_ref.uid.as_str()))
        else {
            continue;
        };
        if let Some(message) = ephemeral_storage_over_limit(pod, ps) {
            info!(pod = ?pod.metadata.name, uid = %ps.pod_ref.uid, %message, "evicting pod");
            workers.evict(&ps.pod_ref.uid, message);
        }
    }
}

/// Upstream's `emptyDirLimitEviction` for one pod; whether it was evicted.
async fn empty_dir_evicted(workers: &PodWorkers, volumes: &VolumeManager, pod: &Pod) -> bool {
    let limited: Vec<(String, PathBuf)> = empty_dir_limits(pod)
        .into_iter()
        .filter_map(|(name, _, _)| {
            let v = pod
                .spec
                .as_ref()?
                .volumes
                .as_ref()?
                .iter()
                .find(|v| v.name == name)?;
            Some((name.to_string(), volumes.host_path(pod, v)?))
        })
        .collect();
    if limited.is_empty() {
        return false;
    }
    // Walking a directory tree blocks: keep it off the runtime's threads.
    let usage = tokio::task::spawn_blocking(move || {
        limited
            .into_iter()
            .filter_map(|(name, dir)| {
                kubelet_host::fs::disk_usage(&dir)
                    .map_err(
                        |e| warn!(dir = %dir.display(), error = %e, "measuring emptyDir failed"),
                    )
                    .ok()
                    .map(|u| (name, u.bytes))
            })
            .collect::<HashMap<String, u64>>()
    })
    .await
    .unwrap_or_default();
    if let Some(message) = empty_dir_over_limit(pod, &|n| usage.get(n).copied()) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        info!(pod = ?pod.metadata.name, %uid, %message, "evicting pod");
        workers.evict(uid, message);
        return true;
    }
    false
}
