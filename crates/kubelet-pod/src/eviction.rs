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

/// Measures the limited emptyDirs of every running pod and evicts those over their limit;
/// then, from the summary stats, the pods and containers with ephemeral-storage limits.
pub async fn local_storage_evictions(
    workers: &PodWorkers,
    volumes: &VolumeManager,
    stats: &StatsProvider,
) {
    let mut limited_pods = vec![];
    for pod in workers.active_pods() {
        if pod.metadata.deletion_timestamp.is_some() {
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
        let files = pod_files_bytes(&volumes.root_dir, &ps.pod_ref.uid);
        if let Some(message) = ephemeral_storage_over_limit(pod, ps, files) {
            info!(pod = ?pod.metadata.name, uid = %ps.pod_ref.uid, %message, "evicting pod");
            workers.evict(&ps.pod_ref.uid, message);
        }
    }
}

/// The bytes of the pod's etc-hosts and termination-log files (`<root>/pods/<uid>/etc-hosts`,
/// `<root>/pods/<uid>/containers/<name>/<file>`), which its containers can write. Links are
/// not followed.
pub fn pod_files_bytes(root: &std::path::Path, uid: &str) -> u64 {
    let dir = root.join("pods").join(uid);
    let size = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len())
    };
    let mut total = size(&dir.join("etc-hosts"));
    let containers = std::fs::read_dir(dir.join("containers"))
        .into_iter()
        .flatten();
    for c in containers.flatten() {
        if !c.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for f in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            total = total.saturating_add(size(&f.path()));
        }
    }
    total
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_files_count_hosts_and_termination_logs_not_links() {
        let root = std::env::temp_dir().join(format!("krs-podfiles-{}", std::process::id()));
        let dir = root.join("pods/u1");
        std::fs::create_dir_all(dir.join("containers/c")).unwrap();
        std::fs::write(dir.join("etc-hosts"), vec![b'x'; 100]).unwrap();
        std::fs::write(dir.join("containers/c/abc"), vec![b'y'; 20]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("containers/c/link")).unwrap();
        assert_eq!(pod_files_bytes(&root, "u1"), 120);
        assert_eq!(pod_files_bytes(&root, "nope"), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn an_empty_dir_over_its_size_limit_evicts_the_pod() {
        let s = crate::testing::setup(&[]);
        let mut p = crate::kuberuntime::tests::pod("busybox", "Never", "Always");
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = serde_json::from_value(serde_json::json!([
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}
            ]))
            .ok();
            spec.containers[0].volume_mounts = serde_json::from_value(serde_json::json!([
                {"name": "scratch", "mountPath": "/scratch"}
            ]))
            .ok();
        }
        s.workers.update(std::sync::Arc::new(p));
        s.until("running", |s| s.phase().as_deref() == Some("Running"))
            .await;
        let volumes = s.runtime.volumes.clone();
        let stats = StatsProvider::new(
            "n1".into(),
            s.rt.clone(),
            std::sync::Arc::new(kubelet_host::FakeHost::default()),
            None,
            volumes.root_dir.clone(),
            s.dir.join("pods"),
            volumes.clone(),
            s.clock.clone(),
        );
        // Within the limit: nothing happens.
        local_storage_evictions(&s.workers, &volumes, &stats).await;
        assert_eq!(s.phase().as_deref(), Some("Running"));
        let dir = volumes
            .root_dir
            .join("pods/u1/volumes/kubernetes.io~empty-dir/scratch");
        std::fs::write(dir.join("big"), vec![0u8; 8192]).unwrap();
        local_storage_evictions(&s.workers, &volumes, &stats).await;
        s.until("evicted", |s| s.phase().as_deref() == Some("Failed"))
            .await;
        assert_eq!(s.reason().as_deref(), Some("Evicted"));
        assert_eq!(
            s.status.cached("u1").and_then(|st| st.message).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Ki\". ")
        );
        assert!(s.rt.running_containers().is_empty());
        s.stop().await;
    }
}
