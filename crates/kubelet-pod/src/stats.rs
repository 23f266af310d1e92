//! The summary API's data (upstream `pkg/kubelet/stats`, CRI stats provider): containers'
//! CPU, memory and writable layer from CRI `ListContainerStats`, refined from their cgroups
//! as cadvisor does; pod and node CPU and memory from cgroups; networks from the sandbox's
//! `/proc/<pid>/net/dev`; volumes, logs and ephemeral storage measured on disk.

use crate::volume_manager::VolumeManager;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubelet_core::clock::SharedClock;
use kubelet_core::stats::{
    ContainerStats, CpuStats, FsStats, InterfaceStats, MemoryStats, NetworkStats, NodeStats,
    PodReference, PodStats, ProcessStats, RlimitStats, RuntimeStats, Summary, VolumeStats,
    ephemeral_storage, is_local_ephemeral_volume, sum_cpu_memory, usage_nano_cores,
};
use kubelet_cri::{RuntimeService, api};
use kubelet_host::Host;
use kubelet_host::cgroups::{CgroupUsage, Cgroups};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// How long measured volume usage is reused: walking directory trees on every request
/// would let a client make the kubelet do unbounded disk work (upstream: volumeStatsAggPeriod).
const VOLUME_STATS_TTL: Duration = Duration::from_secs(10);
/// Upstream's name for the inline interface of NetworkStats.
const DEFAULT_INTERFACE: &str = "eth0";

/// A volume's usage and whether it counts as ephemeral storage.
pub type MeasuredVolume = (VolumeStats, bool);

/// Why `/stats/summary` could not be made (upstream's words).
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("failed to get rootFs info: {0}")]
    RootFs(#[source] kubelet_host::HostError),
    #[error("failed to list all {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kubelet_cri::CriError,
    },
}

#[derive(Debug)]
pub struct StatsProvider {
    pub node_name: String,
    pub rt: Arc<dyn RuntimeService>,
    pub host: Arc<dyn Host>,
    /// cgroupfs accounting; `None` under the systemd driver or in tests.
    pub cgroups: Option<Arc<dyn Cgroups>>,
    /// Where the pods' cgroups are (`<cgroupRoot>/kubepods`); set with [`Self::with_layout`].
    pub cgroup_layout: kubelet_core::cm::CgroupLayout,
    pub root_dir: PathBuf,
    pub pod_logs_root: PathBuf,
    pub volumes: Arc<VolumeManager>,
    pub clock: SharedClock,
    /// The kubepods cgroup's memory limit (capacity less the reservations): what the "pods"
    /// system container reports as available beyond its working set. `None`: the capacity.
    pub pods_memory_limit: Option<u64>,
    /// Last CPU sample (time ns, usage ns) per container id or cgroup path.
    cpu: Mutex<HashMap<String, (i64, u64)>>,
    /// Sandbox id → pid, which does not change.
    pids: Mutex<HashMap<String, u32>>,
    volume_cache: Mutex<HashMap<String, (Instant, Vec<MeasuredVolume>)>>,
}

fn time_ns(ns: i64) -> Option<Time> {
    (ns > 0).then(|| {
        kubelet_core::status::time_of(
            k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or_default(),
        )
    })
}

fn fs_stats(f: &kubelet_host::FsStats, time: Option<Time>) -> FsStats {
    FsStats {
        time,
        available_bytes: Some(f.available_bytes),
        capacity_bytes: Some(f.capacity_bytes),
        used_bytes: Some(f.used_bytes),
        inodes_free: Some(f.inodes_free),
        inodes: Some(f.inodes),
        inodes_used: Some(f.inodes.saturating_sub(f.inodes_free)),
    }
}

/// Capacity of the filesystem, usage of `path` on it.
fn path_stats(path: &Path, on: &FsStats) -> Option<FsStats> {
    let u = kubelet_host::fs::disk_usage(path).ok()?;
    Some(FsStats {
        used_bytes: Some(u.bytes),
        inodes_used: Some(u.inodes),
        ..on.clone()
    })
}

/// Interfaces in a /proc/net/dev text, loopback left out.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (name != "lo" && f.len() >= 16).then(|| InterfaceStats {
                name: name.to_string(),
                rx_bytes: Some(f[0]),
                rx_errors: Some(f[2]),
                tx_bytes: Some(f[8]),
                tx_errors: Some(f[10]),
            })
        })
        .collect()
}

fn network(text: &str, time: Option<Time>, host: bool) -> Option<NetworkStats> {
    let mut ifs = parse_net_dev(text);
    if host {
        // The node's own links, not the pods' veths and bridges (as cadvisor).
        ifs.retain(|i| {
            !["veth", "cni", "docker", "flannel", "cali", "virbr"]
                .iter()
                .any(|p| i.name.starts_with(p))
        });
    }
    let default = ifs
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .or(ifs.first())?
        .clone();
    Some(NetworkStats {
        time,
        default,
        interfaces: ifs,
    })
}

fn memory_of(u: &CgroupUsage, time: Option<Time>, capacity: Option<u64>) -> MemoryStats {
    MemoryStats {
        time,
        available_bytes: capacity.map(|c| c.saturating_sub(u.working_set)),
        usage_bytes: Some(u.memory_usage),
        working_set_bytes: Some(u.working_set),
        rss_bytes: Some(u.rss),
        page_faults: Some(u.page_faults),
        major_page_faults: Some(u.major_page_faults),
    }
}

/// Per pod name, the sandboxes to report: the ready ones, or else the newest (upstream
/// `removeTerminatedPods`).
fn live_sandboxes(all: Vec<api::PodSandbox>) -> HashMap<String, api::PodSandbox> {
    let mut by_pod: HashMap<(String, String, String), Vec<api::PodSandbox>> = HashMap::new();
    for s in all {
        let m = s.metadata.clone().unwrap_or_default();
        by_pod
            .entry((m.namespace, m.name, m.uid))
            .or_default()
            .push(s);
    }
    let mut out = HashMap::new();
    for (_, mut v) in by_pod {
        v.sort_by_key(|s| s.created_at);
        let ready: Vec<_> = v
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .cloned()
            .collect();
        let keep = if ready.is_empty() {
            v.pop().into_iter().collect()
        } else {
            ready
        };
        for s in keep {
            out.insert(s.id.clone(), s);
        }
    }
    out
}

/// Per sandbox and container name: the running containers, or else the newest (upstream
/// `removeTerminatedContainers`).
fn live_containers(all: Vec<api::Container>) -> HashMap<String, api::Container> {
    let mut by_name: HashMap<(String, String), Vec<api::Container>> = HashMap::new();
    for c in all {
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        by_name
            .entry((c.pod_sandbox_id.clone(), name))
            .or_default()
            .push(c);
    }
    let mut out = HashMap::new();
    for (_, mut v) in by_name {
        v.sort_by_key(|c| c.created_at);
        let running: Vec<_> = v
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .cloned()
            .collect();
        let keep = if running.is_empty() {
            v.pop().into_iter().collect()
        } else {
            running
        };
        for c in keep {
            out.insert(c.id.clone(), c);
        }
    }
    out
}

impl StatsProvider {
    /// Whether the runtime's image filesystem (CRI `ImageFsInfo`) is another device than the
    /// kubelet's root dir (upstream `HasDedicatedImageFs`); false when either is unknown.
    pub async fn dedicated_image_fs(&self) -> bool {
        let Ok(fs) = self.rt.image_fs_info().await else {
            return false;
        };
        let Some(mount) = fs
            .first()
            .and_then(|u| u.fs_id.as_ref())
            .map(|id| PathBuf::from(&id.mountpoint))
        else {
            return false;
        };
        match (
            self.host.device_of(&self.root_dir),
            self.host.device_of(&mount),
        ) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_name: String,
        rt: Arc<dyn RuntimeService>,
        host: Arc<dyn Host>,
        cgroups: Option<Arc<dyn Cgroups>>,
        root_dir: PathBuf,
        pod_logs_root: PathBuf,
        volumes: Arc<VolumeManager>,
        clock: SharedClock,
    ) -> Self {
        StatsProvider {
            node_name,
            rt,
            host,
            cgroups,
            cgroup_layout: Default::default(),
            root_dir,
            pod_logs_root,
            volumes,
            clock,
            pods_memory_limit: None,
            cpu: Mutex::default(),
            pids: Mutex::default(),
            volume_cache: Mutex::default(),
        }
    }

    /// Reads the pods' cgroups under `layout` (the node's `cgroupRoot`).
    pub fn with_layout(mut self, layout: kubelet_core::cm::CgroupLayout) -> Self {
        self.cgroup_layout = layout;
        self
    }

    pub fn with_pods_memory_limit(mut self, limit: u64) -> Self {
        self.pods_memory_limit = Some(limit);
        self
    }

    /// CPU stats from a cumulative sample, with the rate since the previous sample of `key`.
    /// With `record` false the sample is not kept: the rate served by `/stats/summary` stays
    /// over its own window when another reader (the eviction manager) looks in between.
    fn cpu_stats(&self, key: &str, ts: i64, usage: u64, record: bool) -> CpuStats {
        let mut cache = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let prev = if record {
            cache.insert(key.to_string(), (ts, usage))
        } else {
            cache.get(key).copied()
        };
        CpuStats {
            time: time_ns(ts),
            usage_nano_cores: prev.and_then(|p| usage_nano_cores(p, (ts, usage))),
            usage_core_nano_seconds: Some(usage),
        }
    }

    fn root_fs(&self, now: i64) -> Result<FsStats, StatsError> {
        self.host
            .fs_stats(&self.root_dir)
            .map(|f| fs_stats(&f, time_ns(now)))
            .map_err(StatsError::RootFs)
    }

    /// The summary as the eviction manager reads it: everything but the CPU-rate samples of
    /// `/stats/summary`, which it leaves as they are.
    pub async fn eviction_summary(&self, pods: &[Pod]) -> Result<Summary, StatsError> {
        let now = self.clock.now_unix_ns();
        let root_fs = self.root_fs(now)?;
        let node = self.node_stats(now, &root_fs, false).await;
        let pods = self.pod_stats(pods, now, &root_fs, false).await?;
        Ok(Summary { node, pods })
    }

    /// The summary; `only_cpu_and_memory` as upstream's query parameter of that name.
    pub async fn summary(
        &self,
        pods: &[Pod],
        only_cpu_and_memory: bool,
    ) -> Result<Summary, StatsError> {
        let now = self.clock.now_unix_ns();
        let root_fs = self.root_fs(now)?;
        let node = self.node_stats(now, &root_fs, true).await;
        let mut pod_stats = self.pod_stats(pods, now, &root_fs, true).await?;
        pod_stats.sort_by(|a, b| {
            (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name))
        });
        let mut s = Summary {
            node,
            pods: pod_stats,
        };
        if only_cpu_and_memory {
            let n = &mut s.node;
            (n.network, n.fs, n.runtime, n.rlimit) = (None, None, None, None);
            for p in &mut s.pods {
                (p.network, p.ephemeral_storage) = (None, None);
                p.volume_stats.clear();
                for c in &mut p.containers {
                    (c.rootfs, c.logs) = (None, None);
                }
            }
        }
        Ok(s)
    }

    async fn node_stats(&self, now: i64, root_fs: &FsStats, record: bool) -> NodeStats {
        let t = time_ns(now);
        let machine = self.host.machine_info().ok();
        let capacity = machine.as_ref().map(|m| m.memory_bytes);
        let root = self.cgroups.as_ref().and_then(|c| c.usage("/"));
        // The node allocatable cgroup, the "pods" system container; the node itself is the
        // host's root cgroup whatever the cgroupRoot, as cadvisor's "/".
        let kubepods = self.cgroup_layout.kubepods().to_cgroupfs();
        let pods = self.cgroups.as_ref().and_then(|c| c.usage(&kubepods));
        let boot = self
            .host
            .read_to_string(Path::new("/proc/stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            });
        let mut system_containers = vec![];
        if let Some(u) = pods {
            system_containers.push(ContainerStats {
                name: "pods".into(),
                start_time: boot.and_then(|b| time_ns(b * 1_000_000_000)),
                cpu: Some(self.cpu_stats(&kubepods, now, u.cpu_ns, record)),
                // Available to pods: the kubepods limit (capacity less the reservations).
                memory: Some(memory_of(
                    &u,
                    t.clone(),
                    self.pods_memory_limit.or(capacity),
                )),
                ..Default::default()
            });
        }
        let image_fs = match self.rt.image_fs_info().await {
            Ok(fs) => fs.first().map(|u| {
                let mut f = u
                    .fs_id
                    .as_ref()
                    .and_then(|id| self.host.fs_stats(Path::new(&id.mountpoint)).ok())
                    .map(|f| fs_stats(&f, time_ns(u.timestamp)))
                    .unwrap_or_default();
                f.time = time_ns(u.timestamp).or(t.clone());
                f.used_bytes = u.used_bytes.as_ref().map(|v| v.value);
                f.inodes_used = u.inodes_used.as_ref().map(|v| v.value);
                f
            }),
            Err(e) => {
                debug!(error = %e, "ImageFsInfo failed");
                None
            }
        };
        let net = self
            .host
            .read_to_string(Path::new("/proc/net/dev"))
            .ok()
            .and_then(|s| network(&s, t.clone(), true));
        let max_pid = self
            .host
            .read_to_string(Path::new("/proc/sys/kernel/pid_max"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // Tasks, threads included, as upstream's sysinfo(2) `procs`: what pid_max bounds.
        let procs = Some(i64::from(rustix::system::sysinfo().procs));
        NodeStats {
            node_name: self.node_name.clone(),
            system_containers,
            start_time: boot.and_then(|b| time_ns(b * 1_000_000_000)),
            cpu: root.map(|u| self.cpu_stats("/", now, u.cpu_ns, record)),
            memory: root.map(|u| memory_of(&u, t.clone(), capacity)),
            network: net,
            fs: Some(root_fs.clone()),
            runtime: Some(RuntimeStats { image_fs }),
            rlimit: Some(RlimitStats {
                time: t,
                max_pid,
                num_of_running_processes: procs,
            }),
        }
    }

    fn pod_cgroup(&self, pod: Option<&Pod>, uid: &str) -> Option<String> {
        let qos = pod
            .and_then(|p| p.spec.as_ref())
            .map(kubelet_core::qos::pod_qos)?;
        // The Cgroups trait takes cgroupfs names whatever the driver.
        Some(self.cgroup_layout.pod(qos, uid).to_cgroupfs())
    }

    async fn pod_stats(
        &self,
        pods: &[Pod],
        now: i64,
        root_fs: &FsStats,
        record: bool,
    ) -> Result<Vec<PodStats>, StatsError> {
        let e =
            |what: &'static str, source: kubelet_cri::CriError| StatsError::List { what, source };
        let sandboxes = live_sandboxes(
            self.rt
                .list_pod_sandbox(None)
                .await
                .map_err(|x| e("pod sandboxes", x))?,
        );
        let containers = live_containers(
            self.rt
                .list_containers(None)
                .await
                .map_err(|x| e("containers", x))?,
        );
        let stats = self
            .rt
            .list_container_stats(None)
            .await
            .map_err(|x| e("container stats", x))?;
        let by_uid: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        let mut image_fs: HashMap<String, Option<kubelet_host::FsStats>> = HashMap::new();
        let mut out: HashMap<String, PodStats> = HashMap::new();
        for st in stats {
            let Some(id) = st.attributes.as_ref().map(|a| a.id.clone()) else {
                continue;
            };
            let Some(c) = containers.get(&id) else {
                continue;
            };
            let Some(sb) = sandboxes.get(&c.pod_sandbox_id) else {
                continue;
            };
            let meta = sb.metadata.clone().unwrap_or_default();
            let pod = by_uid.get(meta.uid.as_str()).copied();
            let cg = self.pod_cgroup(pod, &meta.uid);
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let mut cs = ContainerStats {
                name: name.clone(),
                start_time: time_ns(c.created_at),
                ..Default::default()
            };
            cs.cpu = Some(match &st.cpu {
                Some(u) => {
                    let usage = u.usage_core_nano_seconds.as_ref().map_or(0, |v| v.value);
                    self.cpu_stats(&id, u.timestamp, usage, record)
                }
                None => CpuStats {
                    time: time_ns(now),
                    usage_nano_cores: Some(0),
                    usage_core_nano_seconds: Some(0),
                },
            });
            cs.memory = Some(MemoryStats {
                time: time_ns(st.memory.as_ref().map_or(now, |m| m.timestamp)),
                working_set_bytes: Some(
                    st.memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes.as_ref())
                        .map_or(0, |v| v.value),
                ),
                ..Default::default()
            });
            // cadvisor's view of the container's own cgroup fills in what CRI leaves out.
            if let (Some(cgs), Some(pod_cg)) = (&self.cgroups, &cg)
                && let Some(u) = cgs.container_usage(pod_cg, &id)
            {
                cs.memory = Some(memory_of(&u, time_ns(now), None));
            }
            if let Some(w) = &st.writable_layer {
                let mut r = FsStats {
                    time: time_ns(w.timestamp),
                    used_bytes: w.used_bytes.as_ref().map(|v| v.value),
                    inodes_used: w.inodes_used.as_ref().map(|v| v.value),
                    ..Default::default()
                };
                if let Some(fs_id) = &w.fs_id {
                    let info = image_fs
                        .entry(fs_id.mountpoint.clone())
                        .or_insert_with(|| self.host.fs_stats(Path::new(&fs_id.mountpoint)).ok());
                    if let Some(i) = info {
                        r.available_bytes = Some(i.available_bytes);
                        r.capacity_bytes = Some(i.capacity_bytes);
                        r.inodes_free = Some(i.inodes_free);
                        r.inodes = Some(i.inodes);
                    }
                }
                cs.rootfs = Some(r);
            } else {
                cs.rootfs = Some(FsStats::default());
            }
            let log_dir = self.pod_log_dir(&meta).join(&name);
            cs.logs = path_stats(&log_dir, root_fs);
            let ps = out.entry(sb.id.clone()).or_insert_with(|| PodStats {
                pod_ref: PodReference {
                    name: meta.name.clone(),
                    namespace: meta.namespace.clone(),
                    uid: meta.uid.clone(),
                },
                start_time: time_ns(sb.created_at),
                ..Default::default()
            });
            ps.containers.push(cs);
        }
        let mut result = vec![];
        for (sandbox_id, mut ps) in out {
            ps.containers.sort_by(|a, b| a.name.cmp(&b.name));
            let uid = ps.pod_ref.uid.clone();
            let pod = by_uid.get(uid.as_str()).copied();
            let pod_usage = self
                .pod_cgroup(pod, &uid)
                .and_then(|cg| Some((cg.clone(), self.cgroups.as_ref()?.usage(&cg)?)));
            match pod_usage {
                Some((cg, u)) => {
                    ps.cpu = Some(self.cpu_stats(&cg, now, u.cpu_ns, record));
                    ps.memory = Some(memory_of(&u, time_ns(now), None));
                    ps.process_stats = u.processes.map(|n| ProcessStats {
                        process_count: Some(n),
                    });
                }
                None => (ps.cpu, ps.memory) = sum_cpu_memory(&ps.containers),
            }
            ps.network = self.pod_network(&sandbox_id, now).await;
            let volumes = match pod {
                Some(p) => self.volume_stats(p, root_fs).await,
                None => vec![],
            };
            let ephemeral: Vec<VolumeStats> = volumes
                .iter()
                .filter(|(_, e)| *e)
                .map(|(v, _)| v.clone())
                .collect();
            let meta = api::PodSandboxMetadata {
                name: ps.pod_ref.name.clone(),
                uid: uid.clone(),
                namespace: ps.pod_ref.namespace.clone(),
                attempt: 0,
            };
            let pod_logs = self.pod_level_logs(&self.pod_log_dir(&meta), root_fs);
            ps.ephemeral_storage = Some(ephemeral_storage(
                &ps.containers,
                &ephemeral,
                root_fs,
                pod_logs.as_ref(),
            ));
            ps.volume_stats = volumes.into_iter().map(|(v, _)| v).collect();
            result.push(ps);
        }
        Ok(result)
    }

    fn pod_log_dir(&self, m: &api::PodSandboxMetadata) -> PathBuf {
        self.pod_logs_root
            .join(format!("{}_{}_{}", m.namespace, m.name, m.uid))
    }

    /// Files directly in the pod's log directory (runtimes may keep pod-level logs there).
    fn pod_level_logs(&self, dir: &Path, root_fs: &FsStats) -> Option<FsStats> {
        let rd = std::fs::read_dir(dir).ok()?;
        let mut r = FsStats {
            used_bytes: None,
            inodes_used: None,
            ..root_fs.clone()
        };
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(u) = kubelet_host::fs::disk_usage(&e.path()) {
                r.used_bytes = Some(r.used_bytes.unwrap_or(0) + u.bytes);
                r.inodes_used = Some(r.inodes_used.unwrap_or(0) + u.inodes);
            }
        }
        Some(FsStats {
            used_bytes: Some(r.used_bytes.unwrap_or(0)),
            inodes_used: Some(r.inodes_used.unwrap_or(0)),
            ..r
        })
    }

    async fn pod_network(&self, sandbox_id: &str, now: i64) -> Option<NetworkStats> {
        let cached = self
            .pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sandbox_id)
            .copied();
        let pid = match cached {
            Some(p) => p,
            None => {
                let p = self.rt.pod_sandbox_pid(sandbox_id).await.ok().flatten()?;
                self.pids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sandbox_id.to_string(), p);
                p
            }
        };
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
        network(&text, time_ns(now), false)
    }

    /// Usage of each of the pod's volumes that the kubelet manages on disk (not hostPath),
    /// and whether it counts as ephemeral storage; measured at most every 10 s.
    pub async fn volume_stats(&self, pod: &Pod, root_fs: &FsStats) -> Vec<MeasuredVolume> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some((at, v)) = self
            .volume_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            && at.elapsed() < VOLUME_STATS_TTL
        {
            return v.clone();
        }
        let dirs: Vec<(String, PathBuf, bool)> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter(|v| v.host_path.is_none())
            .filter_map(|v| {
                Some((
                    v.name.clone(),
                    self.volumes.host_path(pod, v)?,
                    is_local_ephemeral_volume(v),
                ))
            })
            .collect();
        let host = self.host.clone();
        let root_fs = root_fs.clone();
        let measured = tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .filter_map(|(name, dir, ephemeral)| {
                    let on = host
                        .fs_stats(&dir)
                        .map(|f| fs_stats(&f, root_fs.time.clone()))
                        .ok()?;
                    let fs = path_stats(&dir, &on)?;
                    Some((VolumeStats { fs, name }, ephemeral))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut cache = self.volume_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < VOLUME_STATS_TTL * 6);
        cache.insert(uid, (Instant::now(), measured.clone()));
        measured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a `cgroupRoot` the "pods" system container and each pod's CPU, memory and
    /// process count come from the cgroups under `<root>/kubepods`; the node's own from the
    /// host's root cgroup.
    #[tokio::test]
    async fn pod_stats_come_from_cgroups_under_the_cgroup_root() {
        let s = crate::testing::setup(&[]);
        let p = crate::kuberuntime::tests::pod("busybox", "Never", "Always");
        s.workers.update(Arc::new(p.clone()));
        s.until("running", |s| s.phase().as_deref() == Some("Running"))
            .await;
        let cgroups = Arc::new(kubelet_host::cgroups::FakeCgroups::default());
        let usage = |working_set: u64, processes| CgroupUsage {
            cpu_ns: 1,
            memory_usage: working_set,
            working_set,
            processes,
            ..Default::default()
        };
        {
            let mut u = cgroups.usages.lock().unwrap();
            u.insert("/".into(), usage(1000, None));
            u.insert("/kadm-n1/kubepods".into(), usage(300, None));
            u.insert(
                "/kadm-n1/kubepods/besteffort/podu1".into(),
                usage(70, Some(3)),
            );
            // What a kubelet without the root would read: not ours.
            u.insert("/kubepods".into(), usage(5, None));
            u.insert("/kubepods/besteffort/podu1".into(), usage(6, Some(9)));
        }
        let volumes = s.runtime.volumes.clone();
        let stats = StatsProvider::new(
            "n1".into(),
            s.rt.clone(),
            Arc::new(kubelet_host::FakeHost::default()),
            Some(cgroups),
            volumes.root_dir.clone(),
            s.dir.join("pods"),
            volumes,
            s.clock.clone(),
        )
        .with_layout(kubelet_core::cm::CgroupLayout::new("/kadm-n1").unwrap());
        let sum = stats.summary(&[p], false).await.unwrap();
        let ws = |m: &Option<kubelet_core::stats::MemoryStats>| {
            m.as_ref().and_then(|m| m.working_set_bytes)
        };
        assert_eq!(ws(&sum.node.memory), Some(1000));
        let pods = &sum.node.system_containers;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].name, "pods");
        assert_eq!(ws(&pods[0].memory), Some(300));
        assert_eq!(sum.pods.len(), 1);
        assert_eq!(ws(&sum.pods[0].memory), Some(70));
        assert_eq!(
            sum.pods[0]
                .process_stats
                .as_ref()
                .and_then(|p| p.process_count),
            Some(3)
        );
        s.stop().await;
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 10 3 0 0 0 0 0 4000 20 5 0 0 0 0 0\n";
        let n = network(text, None, false).unwrap();
        assert_eq!(n.default.name, "eth0");
        assert_eq!(
            (
                n.default.rx_bytes,
                n.default.rx_errors,
                n.default.tx_bytes,
                n.default.tx_errors
            ),
            (Some(2000), Some(3), Some(4000), Some(5))
        );
        assert_eq!(n.interfaces.len(), 1);
    }

    #[test]
    fn terminated_sandboxes_and_containers_are_left_out() {
        let sb = |id: &str, created: i64, ready: bool| api::PodSandbox {
            id: id.into(),
            metadata: Some(api::PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "ns".into(),
                attempt: 0,
            }),
            state: if ready {
                api::PodSandboxState::SandboxReady as i32
            } else {
                api::PodSandboxState::SandboxNotready as i32
            },
            created_at: created,
            ..Default::default()
        };
        let live = live_sandboxes(vec![sb("old", 1, false), sb("new", 2, true)]);
        assert_eq!(live.keys().collect::<Vec<_>>(), vec!["new"]);
        let live = live_sandboxes(vec![sb("a", 1, false), sb("b", 2, false)]);
        assert_eq!(live.keys().collect::<Vec<_>>(), vec!["b"]);
        let c = |id: &str, created: i64, running: bool| api::Container {
            id: id.into(),
            pod_sandbox_id: "b".into(),
            metadata: Some(api::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            state: if running {
                api::ContainerState::ContainerRunning as i32
            } else {
                api::ContainerState::ContainerExited as i32
            },
            created_at: created,
            ..Default::default()
        };
        let live = live_containers(vec![c("x", 1, false), c("y", 2, true), c("z", 3, false)]);
        assert_eq!(live.keys().collect::<Vec<_>>(), vec!["y"]);
    }
}
