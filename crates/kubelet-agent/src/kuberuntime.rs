//! Turns pod specs into CRI calls and CRI state back into a runtime snapshot
//! (upstream `pkg/kubelet/kuberuntime`).

use crate::clock::SharedClock;
use crate::events::{NORMAL, Recorder, WARNING, pod_ref};
use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_core::actions::{PodActions, init_containers};
use kubelet_core::backoff::{Backoff, go_duration};
use kubelet_core::dns::{DnsConfig, pod_dns_config_checked};
use kubelet_core::hash::container_hash;
use kubelet_core::labels::{self, PodRef};
use kubelet_core::quantity::parse_milli;
use kubelet_core::runtime::{
    ContainerState, ContainerStatus, PodStatus, SandboxStatus, instant_of,
};
use kubelet_core::status::StartFailure;
use kubelet_cri::{CriError, RuntimeService, api};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Upstream's floor for a container's stop timeout.
const MIN_GRACE_SECONDS: i64 = 2;
/// Default when neither the pod nor its containers say.
const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub host_dns: DnsConfig,
    /// /var/log/pods
    pub pod_logs_root: PathBuf,
    /// /var/log/containers
    pub container_logs_root: PathBuf,
    pub pod_pids_limit: i64,
    /// --root-dir: pods/<uid>/ holds the kubelet's per-pod files.
    pub root_dir: PathBuf,
    /// The node's IP, for `status.hostIP` in the downward API.
    pub host_ip: Option<String>,
    /// Node allocatable, the default for unset limits in resourceFieldRef.
    pub allocatable: std::collections::BTreeMap<String, String>,
    /// cgroupDriver systemd (slice names) rather than cgroupfs (paths).
    pub systemd_cgroups: bool,
}

#[derive(Debug)]
pub struct RuntimeManager {
    pub rt: Arc<dyn RuntimeService>,
    /// "containerd", for container IDs.
    pub runtime_name: String,
    pub cfg: RuntimeConfig,
    pub recorder: Recorder,
    pub clock: SharedClock,
    /// Pod cgroups; `None` leaves cgroups to the runtime (unit tests).
    pub cgroups: Option<Arc<dyn kubelet_host::cgroups::Cgroups>>,
    /// Pull secrets; `None` in standalone mode.
    pub secrets: Option<Arc<dyn crate::credentialprovider::SecretSource>>,
    /// Statuses of exited containers, which never change: (pod UID, status) by container ID.
    pub exited: std::sync::Mutex<HashMap<String, (String, ContainerStatus)>>,
    /// The pods' volumes: set up by the pod worker, mounted into containers here.
    pub volumes: Arc<crate::volume_manager::VolumeManager>,
}

/// Upstream reads at most this much of a termination message file.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// FallbackToLogsOnError: the last lines and bytes of the log.
const FALLBACK_LOG_LINES: u64 = 80;
const FALLBACK_LOG_BYTES: usize = 2048;
/// Hooks have no deadline upstream; we bound them so a stuck hook cannot wedge a worker.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Per-pod state a worker keeps between syncs.
#[derive(Debug)]
pub struct WorkerState {
    pub crash_backoff: Backoff<String>,
    pub image_backoff: Backoff<String>,
    /// Why containers could not start in the last sync (upstream's reason cache).
    pub last_failures: HashMap<String, StartFailure>,
    /// When the pod's volumes were last set up or refreshed.
    pub volumes_synced: Option<Instant>,
}

impl Default for WorkerState {
    fn default() -> Self {
        WorkerState {
            crash_backoff: Backoff::crash_loop(),
            image_backoff: Backoff::crash_loop(),
            last_failures: HashMap::new(),
            volumes_synced: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct SyncResult {
    /// Containers that could not be started, with upstream's waiting reason.
    pub failures: HashMap<String, StartFailure>,
    /// When to try again (a back-off expiring), if sooner than the resync.
    pub retry_after: Option<Duration>,
    /// Whether anything was changed in the runtime.
    pub changed: bool,
    /// A failure of the sync as a whole (e.g. the sandbox could not be created).
    pub error: Option<String>,
}

impl SyncResult {
    fn retry(&mut self, d: Duration) {
        self.retry_after = Some(self.retry_after.map_or(d, |r| r.min(d)));
    }
}

fn pod_log_dir(root: &std::path::Path, p: &PodRef) -> PathBuf {
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

fn ns_options(pod: &Pod) -> api::NamespaceOption {
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

fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_GRACE_SECONDS)
}

/// A reference is valid if it parses as a docker reference: lowercase repository path, an
/// optional tag and digest.
pub fn validate_image(image: &str) -> Result<(), String> {
    let err = |why: &str| Err(format!("couldn't parse image reference {image:?}: {why}"));
    if image.is_empty() {
        return err("invalid reference format");
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return err("invalid reference format");
        };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return err("invalid reference format");
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || t.starts_with(['.', '-']))
    {
        return err("invalid reference format");
    }
    let mut parts = repo.split('/');
    let first = parts.next().unwrap_or("");
    let domain_like =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !domain_like && first.chars().any(|c| c.is_ascii_uppercase()) {
        return err("repository name must be lowercase");
    }
    for (i, comp) in repo.split('/').enumerate() {
        if i == 0 && domain_like {
            if comp.is_empty()
                || !comp
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                return err("invalid reference format");
            }
            continue;
        }
        if comp.is_empty()
            || !comp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        {
            return err(if comp.chars().any(|c| c.is_ascii_uppercase()) {
                "repository name must be lowercase"
            } else {
                "invalid reference format"
            });
        }
        if comp.starts_with(['.', '_', '-']) || comp.ends_with(['.', '_', '-']) {
            return err("invalid reference format");
        }
    }
    Ok(())
}

/// CPU shares and quota as upstream computes them from requests and limits.
fn linux_resources(c: &Container, pids_limit: i64) -> api::LinuxContainerResources {
    let res = c.resources.as_ref();
    let get = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(|q| parse_milli(&q.0).ok())
    };
    let req_cpu = get(res.and_then(|r| r.requests.as_ref()), "cpu");
    let lim_cpu = get(res.and_then(|r| r.limits.as_ref()), "cpu");
    let lim_mem = get(res.and_then(|r| r.limits.as_ref()), "memory");
    let cpu_for_shares = req_cpu.or(lim_cpu).unwrap_or(0);
    let shares = ((cpu_for_shares * 1024) / 1000).max(2) as i64;
    const PERIOD: i64 = 100_000;
    let quota = lim_cpu
        .map(|m| ((m as i64 * PERIOD) / 1000).max(1000))
        .unwrap_or(0);
    let _ = pids_limit;
    api::LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: if quota > 0 { PERIOD } else { 0 },
        cpu_quota: quota,
        memory_limit_in_bytes: lim_mem.map(|m| (m / 1000) as i64).unwrap_or(0),
        ..Default::default()
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
        let privileged = spec
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .any(|c| {
                        c.security_context
                            .as_ref()
                            .and_then(|sc| sc.privileged)
                            .unwrap_or(false)
                    })
            })
            .unwrap_or(false);
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
            labels: labels::sandbox_labels(pod),
            annotations: labels::sandbox_annotations(pod),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: if self.cgroups.is_some() {
                    self.pod_cgroup(pod)
                } else {
                    String::new()
                },
                security_context: Some(crate::security_context::sandbox_security_context(
                    pod,
                    ns_options(pod),
                    privileged,
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

    fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        image_ref: &str,
        restart_count: u32,
        mounts: Vec<api::Mount>,
        env: &[(String, String)],
    ) -> api::ContainerConfig {
        let envs = env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let (command, args) = kubelet_core::envvars::expand_command(c, env);
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: c.name.clone(),
                attempt: restart_count,
            }),
            image: Some(api::ImageSpec {
                image: image_ref.into(),
                annotations: Default::default(),
            }),
            command,
            args,
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs,
            mounts,
            labels: labels::container_labels(pod, c),
            annotations: labels::container_annotations(pod, c, container_hash(c), restart_count),
            log_path: format!("{}/{}.log", c.name, restart_count),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(linux_resources(c, self.cfg.pod_pids_limit)),
                security_context: Some(crate::security_context::container_security_context(
                    pod,
                    c,
                    ns_options(pod),
                )),
            }),
            ..Default::default()
        }
    }

    /// An empty, world-writable file for the container's termination message, bind-mounted at
    /// `terminationMessagePath`: `<root>/pods/<uid>/containers/<name>/<random>`.
    async fn termination_log_mount(&self, r: &PodRef, c: &Container) -> Option<api::Mount> {
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if path.is_empty() {
            return None;
        }
        let dir = self
            .cfg
            .root_dir
            .join("pods")
            .join(&r.uid)
            .join("containers")
            .join(&c.name);
        let seed = format!("{}{}", self.clock.now_unix_ns(), c.name);
        let file = dir.join(format!(
            "{:08x}",
            kubelet_core::hash::fnv1a(seed.as_bytes()) as u32
        ));
        let made = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&file, b"").await?;
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).await
        };
        if let Err(e) = made.await {
            warn!(file = %file.display(), error = %e, "creating termination message file failed");
            return None;
        }
        Some(api::Mount {
            container_path: path,
            host_path: file.to_string_lossy().into_owned(),
            ..Default::default()
        })
    }

    /// The termination message of an exited container, as upstream reads it.
    async fn termination_message(&self, st: &api::ContainerStatus) -> String {
        let ann = &st.annotations;
        let path = ann
            .get(labels::TERMINATION_MESSAGE_PATH)
            .cloned()
            .unwrap_or_default();
        let policy = ann
            .get(labels::TERMINATION_MESSAGE_POLICY)
            .map(String::as_str)
            .unwrap_or("File");
        let mut msg = String::new();
        if let Some(m) = st
            .mounts
            .iter()
            .find(|m| !path.is_empty() && m.container_path == path)
            && let Ok(f) = tokio::fs::File::open(&m.host_path).await
        {
            let mut buf = Vec::new();
            let _ = f.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut buf).await;
            msg = String::from_utf8_lossy(&buf).into_owned();
        }
        if msg.is_empty()
            && policy == "FallbackToLogsOnError"
            && st.exit_code != 0
            && !st.log_path.is_empty()
        {
            msg = match kubelet_cri::logs::read_last(
                std::path::Path::new(&st.log_path),
                FALLBACK_LOG_LINES,
                FALLBACK_LOG_BYTES,
            )
            .await
            {
                Ok(tail) => String::from_utf8_lossy(&tail).into_owned(),
                Err(e) => format!("Error on reading termination message from logs: {e}"),
            };
        }
        msg
    }

    fn pod_cgroup(&self, pod: &Pod) -> String {
        let qos = pod
            .spec
            .as_ref()
            .map(kubelet_core::qos::pod_qos)
            .unwrap_or(kubelet_core::qos::QosClass::BestEffort);
        kubelet_core::qos::pod_cgroup(
            qos,
            pod.metadata.uid.as_deref().unwrap_or_default(),
            self.cfg.systemd_cgroups,
        )
    }

    /// Creates the pod's cgroup with the pod's limits (cgroupfs only: under systemd the
    /// runtime makes the slice).
    fn ensure_pod_cgroup(&self, pod: &Pod) -> Result<(), String> {
        let (Some(cg), Some(spec)) = (&self.cgroups, pod.spec.as_ref()) else {
            return Ok(());
        };
        if self.cfg.systemd_cgroups {
            return Ok(());
        }
        let r = kubelet_core::qos::pod_resources(spec);
        let limits = kubelet_host::cgroups::PodLimits {
            cpu_shares: Some(r.cpu_shares),
            cpu_quota: r.cpu_quota,
            cpu_period: r.cpu_quota.map(|_| kubelet_core::qos::CFS_PERIOD_US),
            memory_limit: r.memory_limit,
            pids_max: (self.cfg.pod_pids_limit > 0).then_some(self.cfg.pod_pids_limit),
        };
        let path = self.pod_cgroup(pod);
        cg.ensure(&path, &limits)
            .map_err(|e| format!("creating pod cgroup {path}: {e}"))
    }

    /// Removes the pod's cgroup, whatever its QoS class was (orphans carry no spec).
    fn remove_pod_cgroup(&self, uid: &str) {
        let Some(cg) = &self.cgroups else { return };
        use kubelet_core::qos::{QosClass, pod_cgroup};
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = pod_cgroup(qos, uid, self.cfg.systemd_cgroups);
            if cg.exists(&path)
                && let Err(e) = cg.remove(&path)
            {
                warn!(cgroup = %path, error = %e, "removing pod cgroup failed");
            }
        }
    }

    /// runAsNonRoot, checked against the image's user (asked of the runtime only when needed).
    async fn verify_non_root(
        &self,
        pod: &Pod,
        c: &Container,
        image_ref: &str,
    ) -> Result<(), String> {
        if crate::security_context::effective(pod, c).run_as_non_root != Some(true) {
            return Ok(());
        }
        let img = self
            .rt
            .image_status(image_ref)
            .await
            .map_err(|e| e.message())?;
        let uid = img.as_ref().and_then(|i| i.uid.as_ref()).map(|u| u.value);
        let username = img.map(|i| i.username).unwrap_or_default();
        crate::security_context::verify_run_as_non_root(pod, c, uid, &username)
    }

    /// Writes the pod's /etc/hosts under its directory and returns its mount; `None` while the
    /// pod has no IP (upstream mounts it only then).
    async fn hosts_mount(&self, pod: &Pod, pod_ip: Option<&str>) -> Option<api::Mount> {
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

    /// The container's environment, with what it refers to fetched from the API server.
    async fn container_env(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ip: Option<String>,
    ) -> Result<kubelet_core::envvars::Env, String> {
        use kubelet_core::envvars::{EnvSources, container_env, referenced};
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let (cms, secs) = referenced(c);
        let mut src = EnvSources {
            master_namespace: "default".into(),
            allocatable: self.cfg.allocatable.clone(),
            host_ip: self.cfg.host_ip.clone().unwrap_or_default(),
            pod_ips: pod_ip.into_iter().collect(),
            ..Default::default()
        };
        match &self.secrets {
            Some(o) => {
                src.services = o.services().await?;
                for name in cms {
                    let cm = o.get_config_map(&ns, &name).await?;
                    src.config_maps.insert(name, cm);
                }
                for name in secs {
                    let s = o.get_secret(&ns, &name).await?;
                    src.secrets.insert(name, s);
                }
            }
            None => {
                if let Some(name) = cms.first() {
                    return Err(format!(
                        "couldn't get configMap {ns}/{name}, no kubeClient defined"
                    ));
                }
                if let Some(name) = secs.first() {
                    return Err(format!(
                        "couldn't get secret {ns}/{name}, no kubeClient defined"
                    ));
                }
            }
        }
        container_env(pod, c, &src)
    }

    /// The runtime's view of one pod: every sandbox and container carrying its UID.
    pub async fn pod_status(&self, uid: &str) -> Result<PodStatus, CriError> {
        let sel = HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]);
        let (sandboxes, containers) = tokio::try_join!(
            self.rt.list_pod_sandbox(Some(api::PodSandboxFilter {
                label_selector: sel.clone(),
                ..Default::default()
            })),
            self.rt.list_containers(Some(api::ContainerFilter {
                label_selector: sel,
                ..Default::default()
            })),
        )?;
        let mut out = PodStatus::default();
        for sb in &sandboxes {
            out.sandboxes.push(SandboxStatus {
                id: sb.id.clone(),
                attempt: sb.metadata.as_ref().map_or(0, |m| m.attempt),
                ready: sb.state == api::PodSandboxState::SandboxReady as i32,
                created_at: sb.created_at,
                ip: String::new(),
                additional_ips: vec![],
                host_network: false,
            });
        }
        out.sort();
        if let Some(newest) = out.sandboxes.first_mut() {
            match self.rt.pod_sandbox_status(&newest.id).await {
                Ok(s) => {
                    if let Some(n) = s.network {
                        newest.ip = n.ip;
                        newest.additional_ips =
                            n.additional_ips.into_iter().map(|i| i.ip).collect();
                    }
                    newest.host_network = s
                        .linux
                        .and_then(|l| l.namespaces)
                        .and_then(|n| n.options)
                        .is_some_and(|o| o.network == api::NamespaceMode::Node as i32);
                }
                Err(e) if e.is_not_found() => newest.ready = false,
                Err(e) => return Err(e),
            }
        }
        let cached: HashMap<String, ContainerStatus> = {
            let mut cache = self.exited.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|id, (owner, _)| owner != uid || containers.iter().any(|c| &c.id == id));
            containers
                .iter()
                .filter_map(|c| cache.get(&c.id).map(|(_, s)| (c.id.clone(), s.clone())))
                .collect()
        };
        let fresh: Vec<&api::Container> = containers
            .iter()
            .filter(|c| !cached.contains_key(&c.id))
            .collect();
        let statuses =
            futures::future::join_all(fresh.iter().map(|c| self.rt.container_status(&c.id))).await;
        out.containers.extend(cached.into_values());
        for (c, st) in fresh.into_iter().zip(statuses) {
            let mut st = match st {
                Ok(s) => s,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let exited = st.state == api::ContainerState::ContainerExited as i32;
            if exited {
                if st.annotations.is_empty() {
                    st.annotations = c.annotations.clone();
                }
                let tmsg = self.termination_message(&st).await;
                if !tmsg.is_empty() {
                    if !st.message.is_empty() {
                        st.message.push_str(": ");
                    }
                    st.message.push_str(&tmsg);
                }
            }
            let cs = self.convert_container(c, st);
            if exited {
                self.exited
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(c.id.clone(), (uid.to_string(), cs.clone()));
            }
            out.containers.push(cs);
        }
        out.sort();
        Ok(out)
    }

    fn convert_container(&self, c: &api::Container, st: api::ContainerStatus) -> ContainerStatus {
        let state = match api::ContainerState::try_from(st.state) {
            Ok(api::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(api::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(api::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        };
        let ann = if st.annotations.is_empty() {
            &c.annotations
        } else {
            &st.annotations
        };
        let grace = ann
            .get(labels::POD_DELETION_GRACE_PERIOD)
            .or_else(|| ann.get(labels::POD_TERMINATION_GRACE_PERIOD))
            .and_then(|v| v.parse().ok());
        ContainerStatus {
            id: c.id.clone(),
            name: c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
                .unwrap_or_default(),
            restart_count: labels::parse_restart_count(ann),
            hash: labels::parse_hash(ann),
            state,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason,
            message: st.message,
            image: st.image.map(|i| i.image).unwrap_or_default(),
            image_ref: st.image_ref,
            runtime: self.runtime_name.clone(),
            grace_period: grace,
            log_path: st.log_path,
            sandbox_id: c.pod_sandbox_id.clone(),
        }
    }

    fn emit(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        self.recorder
            .emit(pod_ref(pod, container), type_, reason, message);
    }

    /// Stops one container: SIGTERM, then SIGKILL after the grace period (at least 2 s).
    /// `probe_grace` is a failed probe's own grace period, which a deletion's overrides.
    pub async fn kill_container(
        &self,
        pod: Option<&Pod>,
        c: &ContainerStatus,
        message: Option<&str>,
        probe_grace: Option<i64>,
    ) {
        let deleting = pod.is_some_and(|p| p.metadata.deletion_grace_period_seconds.is_some());
        let mut grace = probe_grace
            .filter(|_| !deleting)
            .or(pod.map(grace_seconds))
            .or(c.grace_period)
            .unwrap_or(MIN_GRACE_SECONDS);
        if let Some(p) = pod {
            let msg = message
                .map(str::to_string)
                .unwrap_or_else(|| format!("Stopping container {}", c.name));
            self.emit(p, Some(&c.name), NORMAL, "Killing", msg);
            let spec = p.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|x| x.name == c.name)
            });
            let hook = spec
                .and_then(|s| s.lifecycle.as_ref())
                .and_then(|l| l.pre_stop.as_ref());
            if let (Some(spec), Some(hook)) = (spec, hook)
                && grace > 0
                && c.state == ContainerState::Running
            {
                let t0 = Instant::now();
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                let limit = Duration::from_secs(grace as u64);
                let run = crate::lifecycle::run(
                    self.rt.as_ref(),
                    p,
                    spec,
                    &c.id,
                    ip.as_deref(),
                    hook,
                    limit,
                );
                match tokio::time::timeout(limit, run).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.emit(p, Some(&c.name), WARNING, "FailedPreStopHook", e),
                    Err(_) => self.emit(
                        p,
                        Some(&c.name),
                        WARNING,
                        "FailedPreStopHook",
                        format!("PreStopHook failed to complete within {grace}s"),
                    ),
                }
                grace -= t0.elapsed().as_secs() as i64;
            }
        }
        let grace = grace.max(MIN_GRACE_SECONDS);
        if let Err(e) = self
            .rt
            .stop_container(&c.id, Duration::from_secs(grace as u64))
            .await
            && !e.is_not_found()
        {
            warn!(container = %c.name, id = %c.id, error = %e, "stopping container failed");
        }
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
        self.remove_pod_cgroup(&r.uid);
        let _ = tokio::fs::remove_dir(&pod_dir).await;
        let dir = pod_log_dir(&self.cfg.pod_logs_root, r);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %dir.display(), error = %e, "removing pod log directory failed");
        }
        Ok(())
    }

    /// Removes exited containers beyond the newest one per name: that one gives `lastState`
    /// and the termination message; older runs only cost disk (upstream's container GC keeps
    /// one dead container per container, too). Restart counts live on the containers' labels.
    async fn prune_dead_containers(&self, r: &PodRef, status: &PodStatus) {
        let mut kept = std::collections::HashSet::new();
        for c in status
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Exited)
        {
            if kept.insert(c.name.as_str()) {
                continue;
            }
            match self.rt.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => {
                    warn!(container = %c.name, id = %c.id, error = %e, "removing dead container failed");
                    continue;
                }
                _ => {}
            }
            self.exited
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&c.id);
            let link = self
                .cfg
                .container_logs_root
                .join(legacy_log_name(r, &c.name, &c.id));
            let _ = tokio::fs::remove_file(link).await;
            if !c.log_path.is_empty() {
                let _ = tokio::fs::remove_file(&c.log_path).await;
            }
        }
    }

    /// Removes sandboxes that are dead, not the newest, and whose every container has a newer
    /// run elsewhere: nothing of them is needed for status or restart counts any more. This is
    /// also what clears a sandbox left behind by a runtime call that timed out.
    async fn prune_dead_sandboxes(&self, status: &PodStatus) {
        let Some(newest) = status.sandboxes.first() else {
            return;
        };
        for sb in status
            .sandboxes
            .iter()
            .skip(1)
            .filter(|s| !s.ready && s.id != newest.id)
        {
            let superseded = status
                .containers
                .iter()
                .filter(|c| c.sandbox_id == sb.id)
                .all(|c| {
                    c.state == ContainerState::Exited
                        && status.containers.iter().any(|n| {
                            n.name == c.name && n.sandbox_id != sb.id && n.created_at > c.created_at
                        })
                });
            if !superseded {
                continue;
            }
            for res in [
                self.rt.stop_pod_sandbox(&sb.id).await,
                self.rt.remove_pod_sandbox(&sb.id).await,
            ] {
                if let Err(e) = res
                    && !e.is_not_found()
                {
                    warn!(sandbox = %sb.id, error = %e, "removing dead sandbox failed");
                }
            }
        }
    }

    /// One pass of upstream's `SyncPod`: compute the actions and carry them out.
    pub async fn sync_pod(
        &self,
        pod: &Pod,
        status: &PodStatus,
        ws: &mut WorkerState,
    ) -> SyncResult {
        self.sync_pod_with_probes(pod, status, ws, &|_| None).await
    }

    /// `SyncPod`, killing containers whose liveness or startup probe failed.
    pub async fn sync_pod_with_probes(
        &self,
        pod: &Pod,
        status: &PodStatus,
        ws: &mut WorkerState,
        probe_failed: &(
             dyn Fn(&ContainerStatus) -> Option<kubelet_core::actions::ProbeFailure> + Sync
         ),
    ) -> SyncResult {
        let actions =
            kubelet_core::actions::compute_pod_actions_with_probes(pod, status, probe_failed);
        let mut res = SyncResult::default();
        self.prune_dead_containers(&PodRef::of(pod), status).await;
        self.prune_dead_sandboxes(status).await;
        if actions
            != (PodActions {
                sandbox_id: actions.sandbox_id.clone(),
                attempt: actions.attempt,
                ..Default::default()
            })
        {
            debug!(?actions, "pod actions");
        }
        if actions.kill_pod {
            let running = !kubelet_core::actions::running_container_ids(status).is_empty()
                || status.sandboxes.iter().any(|s| s.ready);
            if running {
                if actions.create_sandbox && !status.sandboxes.is_empty() {
                    info!("pod sandbox changed, it will be killed and re-created");
                    self.emit(
                        pod,
                        None,
                        NORMAL,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.".into(),
                    );
                }
                res.changed = true;
                if let Err(e) = self.kill_pod(Some(pod), status).await {
                    res.error = Some(format!("killing pod: {e}"));
                    return res;
                }
            }
            if !actions.create_sandbox {
                return res;
            }
        } else {
            for (id, info) in &actions.containers_to_kill {
                if let Some(c) = status.containers.iter().find(|c| &c.id == id) {
                    res.changed = true;
                    self.kill_container(Some(pod), c, Some(&info.message), info.grace_period)
                        .await;
                }
            }
        }

        let r = PodRef::of(pod);
        let sandbox_config = self.sandbox_config(pod, actions.attempt);
        let sandbox_id = if actions.create_sandbox {
            res.changed = true;
            let dir = pod_log_dir(&self.cfg.pod_logs_root, &r);
            if let Err(e) = tokio::fs::create_dir_all(&dir).await {
                res.error = Some(format!("creating pod log directory {}: {e}", dir.display()));
                return res;
            }
            if let Err(e) = kubelet_core::admission::fqdn_hostname(
                pod,
                &pod_hostname(pod),
                &self.cfg.cluster_domain,
            ) {
                let msg = format!("Failed to create pod sandbox: {e}");
                self.emit(pod, None, WARNING, "FailedCreatePodSandBox", msg.clone());
                res.error = Some(msg);
                return res;
            }
            if let Err(e) = self.ensure_pod_cgroup(pod) {
                self.emit(pod, None, WARNING, "FailedCreatePodSandBox", e.clone());
                res.error = Some(e);
                return res;
            }
            let class = pod
                .spec
                .as_ref()
                .and_then(|s| s.runtime_class_name.as_deref())
                .filter(|c| !c.is_empty());
            let handler = match (class, &self.secrets) {
                (None, _) => String::new(),
                (Some(c), Some(src)) => match src.runtime_handler(c).await {
                    Ok(h) => h,
                    Err(e) => {
                        let msg = format!("Failed to create pod sandbox: {e}");
                        self.emit(pod, None, WARNING, "FailedCreatePodSandBox", msg.clone());
                        res.error = Some(msg);
                        return res;
                    }
                },
                (Some(c), None) => {
                    let msg = format!(
                        "Failed to create pod sandbox: failed to lookup RuntimeClass {c}: no API server"
                    );
                    self.emit(pod, None, WARNING, "FailedCreatePodSandBox", msg.clone());
                    res.error = Some(msg);
                    return res;
                }
            };
            match self
                .rt
                .run_pod_sandbox(sandbox_config.clone(), handler)
                .await
            {
                Ok(id) => id,
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {}", e.message());
                    self.emit(pod, None, WARNING, "FailedCreatePodSandBox", msg.clone());
                    res.error = Some(msg);
                    return res;
                }
            }
        } else {
            match actions.sandbox_id.clone() {
                Some(id) => id,
                None => return res,
            }
        };

        let to_start: Vec<&Container> = match actions.next_init_container {
            Some(i) => init_containers(pod).get(i).into_iter().collect(),
            None => {
                let cs = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.as_slice())
                    .unwrap_or_default();
                let sidecars = actions
                    .sidecars_to_start
                    .iter()
                    .filter_map(|i| init_containers(pod).get(*i));
                sidecars
                    .chain(
                        actions
                            .containers_to_start
                            .iter()
                            .filter_map(|i| cs.get(*i)),
                    )
                    .collect()
            }
        };
        for c in to_start {
            let started = self
                .start_container(pod, c, status, &sandbox_id, &sandbox_config, ws, &mut res)
                .await;
            res.changed |= started;
            // Init containers run one at a time; a failure stops the sequence.
            if actions.next_init_container.is_some() {
                break;
            }
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        status: &PodStatus,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        ws: &mut WorkerState,
        res: &mut SyncResult,
    ) -> bool {
        let r = PodRef::of(pod);
        let fail = |res: &mut SyncResult, reason: &str, message: String| {
            res.failures.insert(
                c.name.clone(),
                StartFailure {
                    reason: reason.into(),
                    message,
                },
            );
        };
        let prev = status.find(&c.name);
        // CrashLoopBackOff: the last run of this container ended too recently.
        if let Some(prev) = prev.filter(|p| p.state == ContainerState::Exited) {
            let key = format!(
                "{}_{}_{}_{}_{:x}",
                r.name,
                r.namespace,
                r.uid,
                c.name,
                container_hash(c)
            );
            let now = Instant::now();
            let finished = instant_of(prev.finished_at, now, self.clock.now_unix_ns());
            if let Some((delay, left)) = ws.crash_backoff.in_backoff_since(&key, finished, now) {
                self.emit(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "BackOff",
                    "Back-off restarting failed container".into(),
                );
                fail(
                    res,
                    "CrashLoopBackOff",
                    format!(
                        "back-off {} restarting failed container={} pod={}_{}({})",
                        go_duration(delay),
                        c.name,
                        r.name,
                        r.namespace,
                        r.uid
                    ),
                );
                res.retry(left);
                return false;
            }
            ws.crash_backoff.next(&key, finished, now);
        }

        let image = c.image.clone().unwrap_or_default();
        let image_ref = match self
            .ensure_image(pod, c, &image, sandbox_config, ws, res)
            .await
        {
            Some(i) => i,
            None => return false,
        };
        let restart_count = prev.map_or(0, |p| p.restart_count + 1);
        let pod_ip = match self.rt.pod_sandbox_status(sandbox_id).await {
            Ok(s) => s.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
            Err(_) => None,
        }
        .or_else(|| {
            self.cfg.host_ip.clone().filter(|_| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false)
            })
        });
        // Read once: /etc/hosts, the env and the postStart hook all use it.
        let known_pod_ip = pod_ip.clone();
        let env = match self.container_env(pod, c, pod_ip).await {
            Ok(env) => env,
            Err(msg) => {
                // A ConfigMap or Secret may appear later: check again shortly.
                self.step_failed(
                    pod,
                    c,
                    res,
                    "CreateContainerConfigError",
                    msg,
                    Duration::from_secs(5),
                );
                return false;
            }
        };
        for w in &env.warnings {
            self.emit(
                pod,
                None,
                WARNING,
                "InvalidEnvironmentVariableNames",
                w.clone(),
            );
        }
        if let Err(msg) = self.verify_non_root(pod, c, &image_ref).await {
            self.step_failed(
                pod,
                c,
                res,
                "CreateContainerConfigError",
                msg,
                Duration::from_secs(5),
            );
            return false;
        }
        let mut mounts: Vec<api::Mount> = self
            .termination_log_mount(&r, c)
            .await
            .into_iter()
            .collect();
        match self.volumes.container_mounts(pod, c, &env.vars) {
            Ok(m) => mounts.extend(m),
            Err(msg) => {
                self.step_failed(
                    pod,
                    c,
                    res,
                    "CreateContainerConfigError",
                    msg,
                    Duration::from_secs(5),
                );
                return false;
            }
        }
        if kubelet_core::hosts::mounts_hosts_file(c)
            && let Some(m) = self.hosts_mount(pod, known_pod_ip.as_deref()).await
        {
            mounts.push(m);
        }
        let config = self.container_config(pod, c, &image_ref, restart_count, mounts, &env.vars);
        let log_dir = pod_log_dir(&self.cfg.pod_logs_root, &r).join(&c.name);
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            warn!(dir = %log_dir.display(), error = %e, "creating container log directory failed");
        }
        let id = match self
            .rt
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.step_failed(
                    pod,
                    c,
                    res,
                    "CreateContainerError",
                    e.message(),
                    Duration::from_secs(1),
                );
                return false;
            }
        };
        self.emit(
            pod,
            Some(&c.name),
            NORMAL,
            "Created",
            format!("Created container {}", c.name),
        );
        if let Err(e) = self.rt.start_container(&id).await {
            self.step_failed(
                pod,
                c,
                res,
                "RunContainerError",
                e.message(),
                Duration::from_secs(1),
            );
            return true;
        }
        self.emit(
            pod,
            Some(&c.name),
            NORMAL,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let run = crate::lifecycle::run(
                self.rt.as_ref(),
                pod,
                c,
                &id,
                known_pod_ip.as_deref(),
                hook,
                POST_START_TIMEOUT,
            );
            if let Err(e) = run.await {
                self.emit(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "FailedPostStartHook",
                    e.clone(),
                );
                let started = ContainerStatus {
                    id: id.clone(),
                    name: c.name.clone(),
                    restart_count,
                    hash: None,
                    state: ContainerState::Running,
                    created_at: 0,
                    started_at: 0,
                    finished_at: 0,
                    exit_code: 0,
                    reason: String::new(),
                    message: String::new(),
                    image: String::new(),
                    image_ref: String::new(),
                    runtime: self.runtime_name.clone(),
                    grace_period: None,
                    log_path: String::new(),
                    sandbox_id: sandbox_id.to_string(),
                };
                self.kill_container(Some(pod), &started, Some("FailedPostStartHook"), None)
                    .await;
                fail(res, &format!("PostStartHookError: {e}"), e.clone());
                res.retry(Duration::from_secs(1));
                return true;
            }
        }
        let target = log_dir.join(format!("{restart_count}.log"));
        let link = self
            .cfg
            .container_logs_root
            .join(legacy_log_name(&r, &c.name, &id));
        if tokio::fs::create_dir_all(&self.cfg.container_logs_root)
            .await
            .is_ok()
        {
            let _ = tokio::fs::remove_file(&link).await;
            let _ = tokio::fs::symlink(&target, &link).await;
        }
        true
    }

    /// A step of starting a container failed: the `Failed` event, the waiting reason, a retry.
    fn step_failed(
        &self,
        pod: &Pod,
        c: &Container,
        res: &mut SyncResult,
        reason: &str,
        message: String,
        retry: Duration,
    ) {
        self.emit(
            pod,
            Some(&c.name),
            WARNING,
            "Failed",
            format!("Error: {message}"),
        );
        res.failures.insert(
            c.name.clone(),
            StartFailure {
                reason: reason.into(),
                message,
            },
        );
        res.retry(retry);
    }

    /// Makes sure the image is present per the pull policy; returns the image ref to run.
    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        image: &str,
        sandbox_config: &api::PodSandboxConfig,
        ws: &mut WorkerState,
        res: &mut SyncResult,
    ) -> Option<String> {
        let name = c.name.as_str();
        let mut fail = |reason: &str, message: String| {
            res.failures.insert(
                name.to_string(),
                StartFailure {
                    reason: reason.into(),
                    message,
                },
            );
        };
        if let Err(why) = validate_image(image) {
            let msg = format!("Failed to apply default image tag {image:?}: {why}");
            self.emit(pod, Some(name), WARNING, "InspectFailed", msg.clone());
            fail("InvalidImageName", msg);
            return None;
        }
        let policy = c.image_pull_policy.as_deref().unwrap_or_else(|| {
            let tagged = image
                .rsplit('/')
                .next()
                .is_some_and(|l| l.contains(':') && !l.ends_with(":latest"))
                || image.contains('@');
            if tagged { "IfNotPresent" } else { "Always" }
        });
        let present = match self.rt.image_status(image).await {
            Ok(i) => i.map(|i| i.id),
            Err(e) => {
                let msg = format!("Failed to inspect image {image:?}: {}", e.message());
                self.emit(pod, Some(name), WARNING, "InspectFailed", msg.clone());
                fail("ImageInspectError", msg);
                res.retry(Duration::from_secs(1));
                return None;
            }
        };
        match (policy, present) {
            ("Never", None) => {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.emit(pod, Some(name), WARNING, "ErrImageNeverPull", msg.clone());
                fail("ErrImageNeverPull", msg);
                None
            }
            ("Never" | "IfNotPresent", Some(id)) => {
                self.emit(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                Some(id)
            }
            _ => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                let key = format!("{uid}_{image}");
                let now = Instant::now();
                if ws.image_backoff.in_backoff_since_update(&key, now) {
                    let msg = format!("Back-off pulling image {image:?}");
                    self.emit(pod, Some(name), NORMAL, "BackOff", msg.clone());
                    fail("ImagePullBackOff", msg);
                    res.retry(
                        ws.image_backoff
                            .current(&key)
                            .unwrap_or(Duration::from_secs(10)),
                    );
                    return None;
                }
                let (auths, missing) = match &self.secrets {
                    Some(src) => {
                        crate::credentialprovider::pull_credentials(src.as_ref(), pod, image).await
                    }
                    None => (vec![], vec![]),
                };
                if !missing.is_empty() {
                    let msg = format!(
                        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                        missing.join(", ")
                    );
                    self.emit(pod, None, WARNING, "FailedToRetrieveImagePullSecret", msg);
                }
                self.emit(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulling",
                    format!("Pulling image {image:?}"),
                );
                let t0 = Instant::now();
                // Each matching credential in turn, most specific first; anonymous if none.
                let attempts: Vec<Option<api::AuthConfig>> = if auths.is_empty() {
                    vec![None]
                } else {
                    auths.into_iter().map(Some).collect()
                };
                let mut pulled = Err(CriError::Missing {
                    op: "PullImage",
                    what: "attempt",
                });
                for auth in attempts {
                    pulled = self
                        .rt
                        .pull_image(image, auth, Some(sandbox_config.clone()))
                        .await;
                    if pulled.is_ok() {
                        break;
                    }
                }
                match pulled {
                    Ok(r) => {
                        self.emit(
                            pod,
                            Some(name),
                            NORMAL,
                            "Pulled",
                            format!("Successfully pulled image {image:?} in {:?}", t0.elapsed()),
                        );
                        Some(r)
                    }
                    Err(e) => {
                        ws.image_backoff.next(&key, now, now);
                        let msg = e.message();
                        self.emit(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            format!("Failed to pull image {image:?}: {msg}"),
                        );
                        self.emit(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            "Error: ErrImagePull".into(),
                        );
                        fail("ErrImagePull", msg);
                        res.retry(
                            ws.image_backoff
                                .current(&key)
                                .unwrap_or(Duration::from_secs(10)),
                        );
                        None
                    }
                }
            }
        }
    }
}

/// `/var/log/containers/<pod>_<ns>_<container>-<id>.log`, at most 255 characters.
pub fn legacy_log_name(r: &PodRef, container: &str, id: &str) -> String {
    let base = format!("{}_{}_{}-{}", r.name, r.namespace, container, id);
    let mut base: String = base.chars().take(255 - 4).collect();
    base.push_str(".log");
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kubelet_cri::fake::FakeRuntime;

    fn manager(rt: Arc<FakeRuntime>, logs: &std::path::Path) -> RuntimeManager {
        RuntimeManager {
            rt,
            runtime_name: "fake".into(),
            cfg: RuntimeConfig {
                cluster_dns: vec!["10.0.0.10".into()],
                cluster_domain: "cluster.local".into(),
                host_dns: DnsConfig::default(),
                pod_logs_root: logs.join("pods"),
                container_logs_root: logs.join("containers"),
                pod_pids_limit: -1,
                root_dir: logs.join("root"),
                host_ip: None,
                allocatable: Default::default(),
                systemd_cgroups: false,
            },
            recorder: Recorder::disabled(),
            clock: Arc::new(SystemClock),
            secrets: None,
            cgroups: Some(Arc::new(kubelet_host::cgroups::FakeCgroups::default())),
            exited: Default::default(),
            volumes: Arc::new(crate::volume_manager::VolumeManager::new(
                logs.join("root"),
                Arc::new(kubelet_host::mount::FakeMounter::default()),
                None,
                Recorder::disabled(),
                Arc::new(SystemClock),
            )),
        }
    }

    fn pod(image: &str, policy: &str, restart: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    image_pull_policy: Some(policy.into()),
                    ..Default::default()
                }],
                restart_policy: Some(restart.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "krs-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn starts_then_keeps_a_pod() {
        let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
        let dir = tmp();
        let m = manager(rt.clone(), &dir);
        let p = pod("busybox", "Never", "Always");
        let mut ws = WorkerState::default();
        let st = m.pod_status("u1").await.unwrap();
        let res = m.sync_pod(&p, &st, &mut ws).await;
        assert!(
            res.changed && res.failures.is_empty() && res.error.is_none(),
            "{res:?}"
        );
        assert_eq!(rt.running_containers(), vec!["c"]);
        let st = m.pod_status("u1").await.unwrap();
        assert_eq!(st.containers[0].state, ContainerState::Running);
        assert_eq!(st.sandboxes[0].ip, "10.88.0.3");
        rt.clear_calls();
        let res = m.sync_pod(&p, &st, &mut ws).await;
        assert!(!res.changed);
        assert!(
            rt.calls().is_empty(),
            "a synced pod costs no runtime calls: {:?}",
            rt.calls()
        );
        assert!(dir.join("pods/ns_p_u1/c").is_dir());
        m.remove_pod(&PodRef::of(&p), &st).await.unwrap();
        assert_eq!(rt.sandbox_count(), 0);
        assert!(!dir.join("pods/ns_p_u1").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn dead_sandbox_is_recreated_then_removed() {
        let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
        let dir = tmp();
        let m = manager(rt.clone(), &dir);
        let p = pod("busybox", "Never", "Always");
        let mut ws = WorkerState::default();
        m.sync_pod(&p, &PodStatus::default(), &mut ws).await;
        let st = m.pod_status("u1").await.unwrap();
        let old = st.sandboxes[0].id.clone();
        rt.kill_sandbox(&old);
        let st = m.pod_status("u1").await.unwrap();
        let res = m.sync_pod(&p, &st, &mut ws).await;
        assert!(res.changed && res.error.is_none(), "{res:?}");
        let st = m.pod_status("u1").await.unwrap();
        assert_eq!(st.sandboxes.len(), 2);
        assert_eq!(st.sandboxes[0].attempt, 1);
        assert_eq!(
            st.find("c").unwrap().restart_count,
            1,
            "the restart count carries over"
        );
        // The next sync removes the dead sandbox: its container has a newer run.
        m.sync_pod(&p, &st, &mut ws).await;
        let st = m.pod_status("u1").await.unwrap();
        assert_eq!(st.sandboxes.len(), 1);
        assert_ne!(st.sandboxes[0].id, old);
        assert_eq!(st.find("c").unwrap().restart_count, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[derive(Debug)]
    struct Secrets(k8s_openapi::api::core::v1::Secret);

    #[async_trait::async_trait]
    impl crate::credentialprovider::SecretSource for Secrets {
        async fn get(
            &self,
            _ns: &str,
            name: &str,
        ) -> Result<k8s_openapi::api::core::v1::Secret, String> {
            if name == "regcred" {
                Ok(self.0.clone())
            } else {
                Err(format!("secrets {name:?} not found"))
            }
        }
    }

    #[tokio::test]
    async fn pulls_with_image_pull_secrets() {
        let rt = Arc::new(FakeRuntime::with_images(&[]));
        rt.serve_image("reg.example/team/app:1", Some("bob"));
        let dir = tmp();
        let mut m = manager(rt.clone(), &dir);
        let json = r#"{"auths": {"reg.example": {"username": "bob", "password": "pw"}}}"#;
        m.secrets = Some(Arc::new(Secrets(k8s_openapi::api::core::v1::Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(
                [(
                    ".dockerconfigjson".to_string(),
                    k8s_openapi::ByteString(json.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        })));
        let mut p = pod("reg.example/team/app:1", "IfNotPresent", "Always");
        // Without the secret the registry refuses.
        let res = m
            .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
            .await;
        assert_eq!(res.failures["c"].reason, "ErrImagePull");
        assert!(res.failures["c"].message.contains("401"));
        p.spec.as_mut().unwrap().image_pull_secrets = Some(vec![
            k8s_openapi::api::core::v1::LocalObjectReference {
                name: "missing".into(),
            },
            k8s_openapi::api::core::v1::LocalObjectReference {
                name: "regcred".into(),
            },
        ]);
        let st = m.pod_status("u1").await.unwrap();
        let res = m.sync_pod(&p, &st, &mut WorkerState::default()).await;
        assert!(res.failures.is_empty(), "{res:?}");
        assert!(
            rt.calls()
                .contains(&"PullImage reg.example/team/app:1 user=bob".to_string()),
            "{:?}",
            rt.calls()
        );
        assert_eq!(rt.running_containers(), vec!["c"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn never_pull_missing_image_is_reported() {
        let rt = Arc::new(FakeRuntime::with_images(&[]));
        let dir = tmp();
        let m = manager(rt.clone(), &dir);
        let p = pod("nothere:1", "Never", "Always");
        let res = m
            .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
            .await;
        let f = &res.failures["c"];
        assert_eq!(f.reason, "ErrImageNeverPull");
        assert_eq!(
            f.message,
            "Container image \"nothere:1\" is not present with pull policy of Never"
        );
        let p = pod("Bad Image", "IfNotPresent", "Always");
        let res = m
            .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
            .await;
        assert_eq!(res.failures["c"].reason, "InvalidImageName");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(start_paused = true)]
    async fn pull_failure_backs_off() {
        let rt = Arc::new(FakeRuntime::with_images(&[]));
        let dir = tmp();
        let m = manager(rt.clone(), &dir);
        let p = pod("example.invalid/x:1", "IfNotPresent", "Always");
        let mut ws = WorkerState::default();
        let res = m.sync_pod(&p, &PodStatus::default(), &mut ws).await;
        assert_eq!(res.failures["c"].reason, "ErrImagePull");
        assert_eq!(res.retry_after, Some(Duration::from_secs(10)));
        let st = m.pod_status("u1").await.unwrap();
        let res = m.sync_pod(&p, &st, &mut ws).await;
        assert_eq!(res.failures["c"].reason, "ImagePullBackOff");
        assert_eq!(
            res.failures["c"].message,
            "Back-off pulling image \"example.invalid/x:1\""
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn runtime_failure_is_an_error_not_a_panic() {
        let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
        let dir = tmp();
        let m = manager(rt.clone(), &dir);
        rt.fail("RunPodSandbox", "network plugin exploded");
        let res = m
            .sync_pod(
                &pod("busybox", "Never", "Always"),
                &PodStatus::default(),
                &mut WorkerState::default(),
            )
            .await;
        assert_eq!(
            res.error.as_deref(),
            Some("Failed to create pod sandbox: network plugin exploded")
        );
        rt.heal("RunPodSandbox");
        rt.fail(
            "StartContainer",
            "exec: \"nope\": executable file not found in $PATH",
        );
        let res = m
            .sync_pod(
                &pod("busybox", "Never", "Always"),
                &PodStatus::default(),
                &mut WorkerState::default(),
            )
            .await;
        assert_eq!(res.failures["c"].reason, "RunContainerError");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "docker.io/library/busybox:latest",
            "localhost:5000/a/b:c",
            "registry.k8s.io/pause:3.6",
            "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Busybox",
            "a b",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a@sha256:xyz",
            "UPPER/x",
        ] {
            assert!(validate_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_and_resources() {
        let mut p = pod("busybox", "Never", "Always");
        p.metadata.name = Some(format!("{}-.x", "a".repeat(61)));
        assert_eq!(pod_hostname(&p), "a".repeat(61));
        let c = Container {
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(
                    [(
                        "cpu".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("250m".into()),
                    )]
                    .into(),
                ),
                limits: Some(
                    [
                        (
                            "cpu".to_string(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
                        ),
                        (
                            "memory".to_string(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Mi".into()),
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = linux_resources(&c, -1);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (256, 50_000, 100_000, 64 << 20)
        );
        assert_eq!(linux_resources(&Container::default(), -1).cpu_shares, 2);
    }
}
