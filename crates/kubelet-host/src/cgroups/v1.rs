//! cgroup v1: one hierarchy per controller under the mount.

use super::{CgroupUsage, Cgroups, PodLimits, pids_value, remove_dir, stat_value, write};
use kubelet_core::cm::CgroupVersion;
use std::path::PathBuf;

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

#[async_trait::async_trait]
impl Cgroups for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    /// Reads `path`'s cpuacct and memory accounting; `None` if the cgroup is not there.
    fn usage(&self, path: &str) -> Option<CgroupUsage> {
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
            processes: super::count_processes(&self.dir("pids", path)),
        })
    }

    async fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
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
        // 0 is no limit (as runc skips it), not a limit of nothing.
        if let Some(m) = limits.memory_limit.filter(|m| *m != 0) {
            write(&self.dir("memory", path), "memory.limit_in_bytes", m)?;
        }
        if let Some(n) = limits.pids_max {
            write(&self.dir("pids", path), "pids.max", pids_value(n))?;
        }
        Ok(())
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        let rel = path.trim_start_matches('/');
        for h in self.hierarchies() {
            remove_dir(&h.join(rel))?;
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        self.hierarchies().iter().any(|h| h.join(rel).is_dir())
    }

    /// The managed controllers' hierarchies (those mounted) that lack `path`.
    fn missing(&self, path: &str) -> Vec<PathBuf> {
        CONTROLLERS
            .into_iter()
            .filter(|c| self.root.join(c).is_dir())
            .map(|c| self.dir(c, path))
            .filter(|d| !d.is_dir())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_usage_files() {
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
                major_page_faults: 2,
                processes: None,
            }
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn v1_layout_in_a_scratch_root() {
        let root = std::env::temp_dir().join(format!("krs-cg-{}", std::process::id()));
        for c in ["cpu", "memory", "pids", "unified"] {
            std::fs::create_dir_all(root.join(c)).unwrap();
        }
        let cg = CgroupV1 { root: root.clone() };
        // Files exist in real cgroupfs; create the ones we write so the scratch dir behaves alike.
        let pod = "/kubepods/burstable/podu1";
        cg.ensure(pod, &PodLimits::default()).await.unwrap();
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
        .await
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
        cg.remove(pod).await.unwrap();
        assert!(!cg.exists(pod));
        cg.remove(pod).await.unwrap();
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn a_root_is_missing_where_any_managed_hierarchy_lacks_it() {
        let root = std::env::temp_dir().join(format!("krs-cg-missing-{}", std::process::id()));
        for c in ["cpu", "cpuacct", "memory", "pids", "freezer"] {
            std::fs::create_dir_all(root.join(c)).unwrap();
        }
        let cg = CgroupV1 { root: root.clone() };
        assert!(
            cg.missing("/").is_empty(),
            "the root cgroup is always there"
        );
        assert_eq!(cg.missing("/krs").len(), 4, "freezer is not ours to check");
        for c in ["cpu", "cpuacct", "pids"] {
            std::fs::create_dir_all(root.join(c).join("krs")).unwrap();
        }
        assert_eq!(cg.missing("/krs"), vec![root.join("memory/krs")]);
        assert!(cg.exists("/krs"), "exists: in any hierarchy");
        std::fs::create_dir_all(root.join("memory/krs")).unwrap();
        assert!(cg.missing("/krs").is_empty());
        // Pods under the root land in every hierarchy.
        cg.ensure("/krs/kubepods/podu", &PodLimits::default())
            .await
            .unwrap();
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            assert!(root.join(c).join("krs/kubepods/podu").is_dir(), "{c}");
        }
        assert!(cg.missing("/krs/kubepods/podu").is_empty());
        cg.remove("/krs/kubepods/podu").await.unwrap();
        assert!(!cg.exists("/krs/kubepods/podu"));
        let _ = std::fs::remove_dir_all(root);
    }
}
