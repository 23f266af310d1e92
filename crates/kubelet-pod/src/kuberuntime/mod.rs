//! Turns pod specs into CRI calls and CRI state back into a runtime snapshot
//! (upstream `pkg/kubelet/kuberuntime`). This file is the manager (`kuberuntime_manager.go`):
//! the runtime snapshot and SyncPod; `sandbox`, `container`, `images` and `gc` hold the rest,
//! as upstream's files of the same names do.

mod container;
mod gc;
mod images;
mod sandbox;
mod security_context;
#[cfg(test)]
pub(crate) mod tests;

pub use container::legacy_log_name;
pub use kubelet_core::images::{InvalidImageError, validate_image};
pub use sandbox::pod_hostname;
use sandbox::*;

use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_api::events::{NORMAL, Recorder, WARNING, pod_ref};
use kubelet_core::actions::{PodActions, init_containers};
use kubelet_core::backoff::{Backoff, crash_loop_key, crash_loop_message};
use kubelet_core::clock::SharedClock;
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

/// Why a container's config cannot be made; the text is the CreateContainerConfigError
/// message.
#[derive(Debug, thiserror::Error)]
pub enum ContainerConfigError {
    #[error(transparent)]
    Source(#[from] crate::credentialprovider::SourceError),
    #[error(transparent)]
    Env(#[from] kubelet_core::envvars::EnvError),
    #[error(transparent)]
    Mount(#[from] crate::volume_manager::MountError),
    #[error(transparent)]
    NonRoot(#[from] kubelet_core::security_context::NonRootError),
    #[error("{}", .0.message())]
    Runtime(#[from] CriError),
    /// Standalone: `kind` is configMap or secret, as upstream's message has it.
    #[error("couldn't get {kind} {namespace}/{name}, no kubeClient defined")]
    Standalone {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

/// The pod cgroup could not be made.
#[derive(Debug, thiserror::Error)]
#[error("creating pod cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// A step of starting a container that failed: the waiting reason and message its status
/// shows, when to try again, and whether the runtime changed on the way.
#[derive(Debug)]
struct StepFailed {
    reason: &'static str,
    message: String,
    retry: Duration,
    changed: bool,
}

impl StepFailed {
    /// CreateContainerConfigError: what it waits on (a ConfigMap, a Secret) may appear soon.
    fn config(e: impl std::fmt::Display) -> Self {
        StepFailed {
            reason: "CreateContainerConfigError",
            message: e.to_string(),
            retry: Duration::from_secs(5),
            changed: false,
        }
    }

    /// A runtime call failed; `changed` if a container exists by now.
    fn runtime(reason: &'static str, e: &CriError, changed: bool) -> Self {
        StepFailed {
            reason,
            message: e.message(),
            retry: Duration::from_secs(1),
            changed,
        }
    }
}

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
    pub cgroup_driver: kubelet_core::cm::Driver,
    /// Where pod cgroups are named: `<cgroupRoot>/kubepods/[tier/]pod<uid>`.
    pub cgroup_layout: kubelet_core::cm::CgroupLayout,
    /// The machine's memory, for Burstable containers' OOM scores.
    pub memory_capacity: u64,
    /// Container GC's limits, which a pod's own sync also keeps to.
    pub gc_policy: kubelet_core::gc::GcPolicy,
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
    /// Notified when a pod cgroup is made or removed, where upstream updates the QoS tiers.
    pub qos_changed: Arc<tokio::sync::Notify>,
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

impl RuntimeManager {
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
            if let Err(e) = self.ensure_pod_cgroup(pod).await {
                let msg = e.to_string();
                self.emit(pod, None, WARNING, "FailedCreatePodSandBox", msg.clone());
                res.error = Some(msg);
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
            res.changed |= match started {
                Ok(changed) => changed,
                Err(f) => {
                    self.step_failed(pod, c, &mut res, f.reason, f.message, f.retry);
                    f.changed
                }
            };
            // Init containers run one at a time; a failure stops the sequence.
            if actions.next_init_container.is_some() {
                break;
            }
        }
        res
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
}
