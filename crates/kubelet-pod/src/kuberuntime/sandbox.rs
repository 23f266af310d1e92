//! Pod sandboxes: their CRI config (hostname, namespaces, DNS, cgroup parent), the pod
//! cgroup, /etc/hosts, and stopping and removing a pod (upstream
//! `kuberuntime_sandbox.go`, `kuberuntime_manager.go` KillPod).

use super::*;

pub(super) fn pod_log_dir(root: &std::path::Path, p: &PodRef) -> PathBuf {
    root.join(format!("{}_{}_{}", p.namespace, p.name, p.uid))
}

/// Upstream's sandbox hostname: spec.hostname or the pod name, at most 63 characters.
pub fn pod_hostname(pod: &Pod) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = h.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

pub(super) fn ns_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: Option<bool>| f.unwrap_or(false);
    api::NamespaceOption {
        network: if flag(spec.and_then(|s| s.host_network)) {
            api::NamespaceMode::Node
        } else {
            api::NamespaceMode::Pod
        } as i32,
        pid: if flag(spec.and_then(|s| s.host_pid)) {
            api::NamespaceMode::Node
        } else if flag(spec.and_then(|s| s.share_process_namespace)) {
            api::NamespaceMode::Pod
        } else {
            api::NamespaceMode::Container
        } as i32,
        ipc: if flag(spec.and_then(|s| s.host_ipc)) {
            api::NamespaceMode::Node
        } else {
            api::NamespaceMode::Pod
        } as i32,
        target_id: String::new(),
    }
}

impl RuntimeManager {
    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
        let r = PodRef::of(pod);
        let spec = pod.spec.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let (dns, dns_warnings) = pod_dns_config_checked(
            pod,
            &self.cfg.cluster_dns,
            &self.cfg.cluster_domain,
            &self.cfg.host_dns,
        );
        // As upstream, each time the sandbox config is formed (sandbox and container starts).
        for w in dns_warnings {
            self.emit(pod, None, WARNING, "DNSConfigForming", w);
        }
        let port_mappings = spec
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) != 0)
            .map(|p| api::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => api::Protocol::Udp,
                    Some("SCTP") => api::Protocol::Sctp,
                    _ => api::Protocol::Tcp,
                } as i32,
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or(0),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect();
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: r.name.clone(),
                uid: r.uid.clone(),
                namespace: r.namespace.clone(),
                attempt,
            }),
            hostname: if host_network {
                String::new()
            } else {
                // An over-long FQDN is refused before the sandbox is made (sync_pod).
                kubelet_core::admission::fqdn_hostname(
                    pod,
                    &pod_hostname(pod),
                    &self.cfg.cluster_domain,
                )
                .ok()
                .flatten()
                .unwrap_or_else(|| pod_hostname(pod))
            },
            log_directory: pod_log_dir(&self.cfg.pod_logs_root, &r)
                .to_string_lossy()
                .into_owned(),
            dns_config: Some(api::DnsConfig {
                servers: dns.servers,
                searches: dns.searches,
                options: dns.options,
            }),
            port_mappings,
            labels: {
                let mut l = labels::sandbox_labels(pod);
                l.insert(
                    labels::KUBELET_ROOT_DIR.into(),
                    self.cfg.root_dir.to_string_lossy().into_owned(),
                );
                l
            },
            annotations: labels::sandbox_annotations(pod),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: if self.cgroups.is_some() {
                    self.pod_cgroup(pod)
                } else {
                    String::new()
                },
                security_context: Some(security_context::sandbox(
                    kubelet_core::security_context::sandbox_security(pod),
                    ns_options(pod),
                )),
                sysctls: spec
                    .and_then(|s| s.security_context.as_ref())
                    .and_then(|sc| sc.sysctls.as_ref())
                    .map(|v| {
                        v.iter()
                            .map(|s| (s.name.clone(), s.value.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }

    fn pod_cgroup_name(&self, pod: &Pod) -> kubelet_core::cm::CgroupName {
        let qos = pod
            .spec
            .as_ref()
            .map(kubelet_core::qos::pod_qos)
            .unwrap_or(kubelet_core::qos::QosClass::BestEffort);
        self.cfg
            .cgroup_layout
            .pod(qos, pod.metadata.uid.as_deref().unwrap_or_default())
    }

    /// The pod's cgroup as the runtime is given it in `cgroup_parent`: a path under
    /// cgroupfs, the expanded slice path under systemd.
    pub(super) fn pod_cgroup(&self, pod: &Pod) -> String {
        self.pod_cgroup_name(pod).path(self.cfg.cgroup_driver)
    }

    /// Creates the pod's cgroup (a slice under systemd) with the pod's limits, before the
    /// runtime puts the sandbox in it.
    pub(super) async fn ensure_pod_cgroup(&self, pod: &Pod) -> Result<(), CgroupError> {
        let (Some(cg), Some(spec)) = (&self.cgroups, pod.spec.as_ref()) else {
            return Ok(());
        };
        let r = kubelet_core::cm::pod_resources(spec);
        let limits = kubelet_host::cgroups::PodLimits {
            cpu_shares: Some(r.cpu_shares),
            cpu_quota: r.cpu_quota,
            cpu_period: r.cpu_quota.map(|_| kubelet_core::cm::CFS_PERIOD_US),
            memory_limit: r.memory_limit,
            pids_max: (self.cfg.pod_pids_limit > 0).then_some(self.cfg.pod_pids_limit),
        };
        let path = self.pod_cgroup_name(pod).to_cgroupfs();
        self.qos_changed.notify_one();
        cg.ensure(&path, &limits)
            .await
            .map_err(|source| CgroupError { path, source })
    }

    /// Removes the pod's cgroup, whatever its QoS class was (orphans carry no spec).
    pub(super) async fn remove_pod_cgroup(&self, uid: &str) {
        let Some(cg) = &self.cgroups else { return };
        use kubelet_core::qos::QosClass;
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = self.cfg.cgroup_layout.pod(qos, uid).to_cgroupfs();
            if cg.exists(&path)
                && let Err(e) = cg.remove(&path).await
            {
                warn!(cgroup = %path, error = %e, "removing pod cgroup failed");
            }
        }
        self.qos_changed.notify_one();
    }

    /// Writes the pod's /etc/hosts under its directory and returns its mount; `None` while the
    /// pod has no IP (upstream mounts it only then).
    pub(super) async fn hosts_mount(&self, pod: &Pod, pod_ip: Option<&str>) -> Option<api::Mount> {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ip = pod_ip.map(str::to_string).or_else(|| {
            if host_network {
                self.cfg.host_ip.clone()
            } else {
                None
            }
        })?;
        let node_hosts = if host_network {
            tokio::fs::read_to_string("/etc/hosts")
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        let hostname = if host_network {
            String::new()
        } else {
            pod_hostname(pod)
        };
        let content = kubelet_core::hosts::hosts_file(
            pod,
            &hostname,
            &[ip],
            &self.cfg.cluster_domain,
            &node_hosts,
        );
        let dir = self
            .cfg
            .root_dir
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap_or_default());
        let file = dir.join("etc-hosts");
        let written = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&file, content).await
        };
        if let Err(e) = written.await {
            warn!(file = %file.display(), error = %e, "writing the pod's hosts file failed");
            return None;
        }
        Some(api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: file.to_string_lossy().into_owned(),
            selinux_relabel: true,
            ..Default::default()
        })
    }

    /// Stops every running container (in parallel), then every ready sandbox.
    pub async fn kill_pod(&self, pod: Option<&Pod>, status: &PodStatus) -> Result<(), CriError> {
        let running: Vec<&ContainerStatus> = kubelet_core::actions::running_container_ids(status);
        futures::future::join_all(
            running
                .iter()
                .map(|c| self.kill_container(pod, c, None, None)),
        )
        .await;
        for sb in status.sandboxes.iter().filter(|s| s.ready) {
            match self.rt.stop_pod_sandbox(&sb.id).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes every container and sandbox of a pod, and its logs: the pod is gone for good.
    pub async fn remove_pod(&self, r: &PodRef, status: &PodStatus) -> Result<(), CriError> {
        for c in &status.containers {
            match self.rt.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
            let link = self
                .cfg
                .container_logs_root
                .join(legacy_log_name(r, &c.name, &c.id));
            let _ = tokio::fs::remove_file(link).await;
        }
        for sb in &status.sandboxes {
            for res in [
                self.rt.stop_pod_sandbox(&sb.id).await,
                self.rt.remove_pod_sandbox(&sb.id).await,
            ] {
                match res {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
        }
        self.exited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (owner, _)| owner != &r.uid);
        // Only the kubelet's own files: volumes (later) are unmounted before this.
        let pod_dir = self.cfg.root_dir.join("pods").join(&r.uid);
        let _ = tokio::fs::remove_dir_all(pod_dir.join("containers")).await;
        let _ = tokio::fs::remove_file(pod_dir.join("etc-hosts")).await;
        self.remove_pod_cgroup(&r.uid).await;
        let _ = tokio::fs::remove_dir(&pod_dir).await;
        let dir = pod_log_dir(&self.cfg.pod_logs_root, r);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %dir.display(), error = %e, "removing pod log directory failed");
        }
        Ok(())
    }
}
