//! The runtime floor: the same burst issued straight through CRI, as fast as a kubelet could
//! possibly do it (RunPodSandbox, CreateContainer, StartContainer per pod, all pods at once).
//! Run it with no kubelet running: a kubelet would take these sandboxes for orphans.

use anyhow::{Context, Result};
use futures::future::join_all;
use kubelet_cri::RuntimeService;
use kubelet_cri::api;
use kubelet_cri::remote::RemoteRuntime;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use crate::stats::{r4, summary};

pub const LABEL: &str = "kubelet-bench";

fn sandbox_config(run: &str, i: usize, logs: &Path) -> api::PodSandboxConfig {
    let name = format!("floor-{i}");
    let uid = format!("{run}-{i:04}");
    let ns = api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        target_id: String::new(),
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: "kubelet-bench-floor".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: logs.join(&uid).to_string_lossy().into_owned(),
        dns_config: Some(api::DnsConfig::default()),
        labels: HashMap::from([
            (LABEL.to_string(), run.to_string()),
            ("io.kubernetes.pod.name".to_string(), name),
            (
                "io.kubernetes.pod.namespace".to_string(),
                "kubelet-bench-floor".to_string(),
            ),
            ("io.kubernetes.pod.uid".to_string(), uid),
        ]),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(image: &str, run: &str) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        labels: HashMap::from([(LABEL.to_string(), run.to_string())]),
        log_path: "c/0.log".into(),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources::default()),
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    target_id: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

async fn one(
    rt: &RemoteRuntime,
    cfg: api::PodSandboxConfig,
    ccfg: api::ContainerConfig,
) -> Result<(String, Duration, Duration)> {
    let t0 = Instant::now();
    let sb = rt
        .run_pod_sandbox(cfg.clone(), String::new())
        .await
        .context("RunPodSandbox")?;
    let sandbox_ready = t0.elapsed();
    let res = async {
        let c = rt
            .create_container(&sb, ccfg, cfg)
            .await
            .context("CreateContainer")?;
        rt.start_container(&c).await.context("StartContainer")
    }
    .await;
    match res {
        Ok(()) => Ok((sb, sandbox_ready, t0.elapsed())),
        Err(e) => {
            remove(rt, &sb).await;
            Err(e)
        }
    }
}

async fn remove(rt: &RemoteRuntime, sb: &str) {
    let _ = rt.stop_pod_sandbox(sb).await;
    let _ = rt.remove_pod_sandbox(sb).await;
}

/// Removes every sandbox this harness created (by label), e.g. after an interrupted run.
pub async fn clean(endpoint: &str) -> Result<usize> {
    let rt = RemoteRuntime::connect(endpoint, Duration::from_secs(120))?;
    let all = rt.list_pod_sandbox(None).await?;
    let ours: Vec<_> = all
        .iter()
        .filter(|s| s.labels.contains_key(LABEL))
        .collect();
    join_all(ours.iter().map(|s| remove(&rt, &s.id))).await;
    Ok(ours.len())
}

pub async fn run(endpoint: &str, pods: usize, warmup: usize, image: &str) -> Result<Value> {
    let rt = RemoteRuntime::connect(endpoint, Duration::from_secs(120))?;
    rt.version()
        .await
        .context("CRI Version: is containerd up?")?;
    let run = format!(
        "{:x}",
        crate::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    );
    let logs = std::env::temp_dir().join(format!("kubelet-bench-floor-{run}"));
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let ccfg = container_config(image, &run);
    // Warm-up pods, not counted: the first sandbox after a runtime restart pays for loading
    // the CNI plugins and the image's snapshot, which a kubelet's bursts never do.
    for i in 0..warmup {
        let (id, _, _) = one(&rt, sandbox_config(&run, 9000 + i, &logs), ccfg.clone())
            .await
            .context("warm-up pod")?;
        remove(&rt, &id).await;
    }
    let t0 = Instant::now();
    let results =
        join_all((0..pods).map(|i| one(&rt, sandbox_config(&run, i, &logs), ccfg.clone()))).await;
    let all_s = t0.elapsed().as_secs_f64();
    let mut lat = vec![];
    let mut sandbox = vec![];
    let mut ids = vec![];
    let mut errors = vec![];
    for r in results {
        match r {
            Ok((id, s, d)) => {
                ids.push(id);
                sandbox.push(s.as_secs_f64());
                lat.push(d.as_secs_f64());
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let t1 = Instant::now();
    join_all(ids.iter().map(|id| remove(&rt, id))).await;
    let cleanup_s = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&logs);
    Ok(json!({
        "pods": pods,
        "warmup": warmup,
        "image": image,
        "startup": summary(&lat),
        "sandbox": summary(&sandbox),
        "all_running_s": r4(all_s),
        "failed": errors.len(),
        "errors": errors.into_iter().take(5).collect::<Vec<_>>(),
        "cleanup_s": r4(cleanup_s),
        "samples": lat.iter().map(|x| r4(*x)).collect::<Vec<_>>(),
    }))
}
