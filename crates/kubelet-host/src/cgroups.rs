//! Pod cgroups on cgroup v1 (upstream `cm/pod_container_manager_linux.go`,
//! `cm/qos_container_manager_linux.go`): the kubelet makes the pod's cgroup, with the pod's
//! limits, before the runtime puts containers under it, and removes it once they are gone.

use std::path::{Path, PathBuf};

/// Limits written on the pod's cgroup; `None` leaves the kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_max: Option<i64>,
}

pub trait Cgroups: Send + Sync + std::fmt::Debug + 'static {
    /// Creates `path` (e.g. "/kubepods/burstable/pod<uid>") and writes the limits.
    fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()>;
    /// Removes `path` from every controller; missing is fine.
    fn remove(&self, path: &str) -> std::io::Result<()>;
    fn exists(&self, path: &str) -> bool;
}

/// The controllers the kubelet manages limits in; the runtime creates the others as needed.
const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

#[derive(Debug, Clone)]
pub struct CgroupV1 {
    pub root: PathBuf,
}

impl Default for CgroupV1 {
    fn default() -> Self {
        CgroupV1 {
            root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

fn write(dir: &Path, file: &str, value: impl ToString) -> std::io::Result<()> {
    let p = dir.join(file);
    if p.exists() {
        std::fs::write(p, value.to_string())?;
    }
    Ok(())
}

impl CgroupV1 {
    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        self.root
            .join(controller)
            .join(path.trim_start_matches('/'))
    }

    /// Every controller hierarchy mounted under the root (cpu, memory, ..., not "unified").
    fn hierarchies(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "unified"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Cgroups for CgroupV1 {
    fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
        for c in CONTROLLERS {
            if self.root.join(c).is_dir() {
                std::fs::create_dir_all(self.dir(c, path))?;
            }
        }
        let cpu = self.dir("cpu", path);
        if let Some(s) = limits.cpu_shares {
            write(&cpu, "cpu.shares", s)?;
        }
        if let Some(p) = limits.cpu_period {
            write(&cpu, "cpu.cfs_period_us", p)?;
        }
        if let Some(q) = limits.cpu_quota {
            write(&cpu, "cpu.cfs_quota_us", q)?;
        }
        if let Some(m) = limits.memory_limit {
            write(&self.dir("memory", path), "memory.limit_in_bytes", m)?;
        }
        if let Some(n) = limits.pids_max {
            write(
                &self.dir("pids", path),
                "pids.max",
                if n < 0 {
                    "max".to_string()
                } else {
                    n.to_string()
                },
            )?;
        }
        Ok(())
    }

    fn remove(&self, path: &str) -> std::io::Result<()> {
        let rel = path.trim_start_matches('/');
        for h in self.hierarchies() {
            let dir = h.join(rel);
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // A cgroup that still has processes (EBUSY) is retried by the caller.
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        self.hierarchies().iter().any(|h| h.join(rel).is_dir())
    }
}

/// CPU and memory use of a cgroup, as cadvisor reads it for the summary API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu_ns: u64,
    pub memory_usage: u64,
    /// Usage less inactive file pages: what the kubelet counts against limits.
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// The value of `key` in a memory.stat text.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl CgroupV1 {
    /// Reads `path`'s cpuacct and memory accounting; `None` if the cgroup is not there.
    pub fn usage(&self, path: &str) -> Option<CgroupUsage> {
        let read = |c: &str, f: &str| std::fs::read_to_string(self.dir(c, path).join(f)).ok();
        let cpu_ns = read("cpuacct", "cpuacct.usage")?.trim().parse().ok()?;
        let memory_usage: u64 = read("memory", "memory.usage_in_bytes")?
            .trim()
            .parse()
            .ok()?;
        let stat = read("memory", "memory.stat").unwrap_or_default();
        let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
        Some(CgroupUsage {
            cpu_ns,
            memory_usage,
            working_set: memory_usage.saturating_sub(inactive),
            rss: stat_value(&stat, "total_rss").unwrap_or(0),
            page_faults: stat_value(&stat, "total_pgfault").unwrap_or(0),
            major_page_faults: stat_value(&stat, "total_pgmajfault").unwrap_or(0),
        })
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Records calls and keeps a set of paths, for unit tests.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    pub state: std::sync::Mutex<std::collections::BTreeMap<String, PodLimits>>,
}

#[cfg(any(test, feature = "test-util"))]
impl Cgroups for FakeCgroups {
    fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.into(), limits.clone());
        Ok(())
    }
    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
        Ok(())
    }
    fn exists(&self, path: &str) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_files() {
        let root = std::env::temp_dir().join(format!("krs-cg-usage-{}", std::process::id()));
        let cg = CgroupV1 { root: root.clone() };
        assert_eq!(cg.usage("/kubepods/podx"), None);
        let cpu = root.join("cpuacct/kubepods/podx");
        let mem = root.join("memory/kubepods/podx");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "12345\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "1000\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "cache 5\ninactive_file 1\ntotal_inactive_file 300\ntotal_rss 600\ntotal_pgfault 7\ntotal_pgmajfault 2\n",
        )
        .unwrap();
        let u = cg.usage("/kubepods/podx").unwrap();
        assert_eq!(
            u,
            CgroupUsage {
                cpu_ns: 12345,
                memory_usage: 1000,
                working_set: 700,
                rss: 600,
                page_faults: 7,
                major_page_faults: 2
            }
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn v1_layout_in_a_scratch_root() {
        let root = std::env::temp_dir().join(format!("krs-cg-{}", std::process::id()));
        for c in ["cpu", "memory", "pids", "unified"] {
            std::fs::create_dir_all(root.join(c)).unwrap();
        }
        let cg = CgroupV1 { root: root.clone() };
        // Files exist in real cgroupfs; create the ones we write so the scratch dir behaves alike.
        let pod = "/kubepods/burstable/podu1";
        cg.ensure(pod, &PodLimits::default()).unwrap();
        std::fs::write(root.join("cpu/kubepods/burstable/podu1/cpu.shares"), "").unwrap();
        std::fs::write(root.join("pids/kubepods/burstable/podu1/pids.max"), "").unwrap();
        cg.ensure(
            pod,
            &PodLimits {
                cpu_shares: Some(512),
                pids_max: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cpu/kubepods/burstable/podu1/cpu.shares")).unwrap(),
            "512"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("pids/kubepods/burstable/podu1/pids.max")).unwrap(),
            "max"
        );
        assert!(cg.exists(pod));
        std::fs::remove_file(root.join("cpu/kubepods/burstable/podu1/cpu.shares")).unwrap();
        std::fs::remove_file(root.join("pids/kubepods/burstable/podu1/pids.max")).unwrap();
        cg.remove(pod).unwrap();
        assert!(!cg.exists(pod));
        cg.remove(pod).unwrap();
        let _ = std::fs::remove_dir_all(root);
    }
}
