//! cgroup v2 (unified): one tree; a controller works in a child only once the parent lists
//! it in `cgroup.subtree_control`. Limits as runc's fs2 writes them: `cpu.weight` from the
//! shares, `cpu.max`, `memory.max`, `pids.max`.

use super::{
    CgroupUsage, Cgroups, PodLimits, pids_value, remove_dir, stat_value, write, write_required,
};
use kubelet_core::cm::{CFS_PERIOD_US, CgroupVersion, cpu_max, shares_to_weight};
use std::path::{Path, PathBuf};

/// Controllers enabled down to pod cgroups, where the host has them (as upstream's list).
const DELEGATED: [&str; 5] = ["cpu", "cpuset", "memory", "hugetlb", "pids"];
/// Those pod limits cannot do without.
const NEEDED: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    root: PathBuf,
    /// Read for the root cgroup, which has no `memory.current`.
    meminfo: PathBuf,
}

impl CgroupV2 {
    pub fn new(root: &Path) -> Self {
        CgroupV2 {
            root: root.into(),
            meminfo: PathBuf::from("/proc/meminfo"),
        }
    }

    #[cfg(test)]
    fn with_meminfo(root: &Path, meminfo: &Path) -> Self {
        CgroupV2 {
            root: root.into(),
            meminfo: meminfo.into(),
        }
    }

    fn dir(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Enables the delegated controllers `dir` offers in its `cgroup.subtree_control`. One
    /// write first; if the kernel refuses it (e.g. cpu while real-time tasks run), each
    /// controller alone, and only those pod limits need must succeed.
    fn delegate(dir: &Path) -> std::io::Result<()> {
        let offered = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let want: Vec<&str> = DELEGATED
            .into_iter()
            .filter(|c| offered.split_whitespace().any(|o| o == *c))
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = want.iter().map(|c| format!("+{c}")).collect();
        if write(dir, "cgroup.subtree_control", all.join(" ")).is_ok() {
            return Ok(());
        }
        for c in want {
            let r = write(dir, "cgroup.subtree_control", format!("+{c}"));
            if let Err(e) = r
                && NEEDED.contains(&c)
            {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("enabling {c} in {}: {e}", dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// Node memory from /proc/meminfo: used is total less free, the working set also less
    /// the inactive file cache (what the root's memory.stat would say).
    fn root_memory(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(&self.meminfo).ok()?;
        let total = crate::meminfo_bytes(&text, "MemTotal")?;
        let free = crate::meminfo_bytes(&text, "MemFree")?;
        let inactive = crate::meminfo_bytes(&text, "Inactive(file)").unwrap_or(0);
        let used = total.saturating_sub(free);
        Some((used, used.saturating_sub(inactive)))
    }
}

#[async_trait::async_trait]
impl Cgroups for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    async fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
        // Each level from the root down gets its controllers before its child is made.
        let mut dir = self.root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            Self::delegate(&dir)?;
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        if let Some(s) = limits.cpu_shares {
            write_required(&dir, "cpu.weight", shares_to_weight(s))?;
        }
        if limits.cpu_quota.is_some() || limits.cpu_period.is_some() {
            let period = limits.cpu_period.unwrap_or(CFS_PERIOD_US);
            write_required(&dir, "cpu.max", cpu_max(limits.cpu_quota, period))?;
        }
        // 0 is no limit (as runc skips it), not a limit of nothing.
        if let Some(m) = limits.memory_limit.filter(|m| *m != 0) {
            let v = if m < 0 { "max".into() } else { m.to_string() };
            write_required(&dir, "memory.max", v)?;
        }
        if let Some(n) = limits.pids_max {
            write_required(&dir, "pids.max", pids_value(n))?;
        }
        Ok(())
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        remove_dir(&self.dir(path))
    }

    fn exists(&self, path: &str) -> bool {
        self.dir(path).is_dir()
    }

    fn missing(&self, path: &str) -> Vec<PathBuf> {
        let d = self.dir(path);
        if d.is_dir() { vec![] } else { vec![d] }
    }

    fn usage(&self, path: &str) -> Option<CgroupUsage> {
        let dir = self.dir(path);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let cpu = read("cpu.stat")?;
        let cpu_ns = stat_value(&cpu, "usage_usec")?.saturating_mul(1000);
        let stat = read("memory.stat").unwrap_or_default();
        let inactive = stat_value(&stat, "inactive_file").unwrap_or(0);
        let (memory_usage, working_set) = match read("memory.current") {
            Some(m) => {
                let m: u64 = m.trim().parse().ok()?;
                (m, m.saturating_sub(inactive))
            }
            None if path.trim_matches('/').is_empty() => self.root_memory()?,
            None => return None,
        };
        Some(CgroupUsage {
            cpu_ns,
            memory_usage,
            working_set,
            // v2 has no total_rss; anonymous memory is what cadvisor reports for it.
            rss: stat_value(&stat, "anon").unwrap_or(0),
            page_faults: stat_value(&stat, "pgfault").unwrap_or(0),
            major_page_faults: stat_value(&stat, "pgmajfault").unwrap_or(0),
            processes: super::count_processes(&dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch tree that looks like a v2 mount: the files the kernel would offer.
    fn scratch(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("krs-cg2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        root
    }

    /// What the kernel does when a cgroup is made: its interface files appear.
    fn kernel_files(dir: &Path) {
        for f in [
            "cpu.weight",
            "cpu.max",
            "memory.max",
            "pids.max",
            "cgroup.subtree_control",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu memory pids\n").unwrap();
    }

    #[tokio::test]
    async fn writes_v2_limits_and_delegates_controllers() {
        let root = scratch("ensure");
        let cg = CgroupV2::new(&root);
        cg.ensure("/kubepods", &PodLimits::default()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +memory +pids",
            "hugetlb is not offered here, so not asked for"
        );
        kernel_files(&root.join("kubepods"));
        std::fs::create_dir_all(root.join("kubepods/burstable")).unwrap();
        kernel_files(&root.join("kubepods/burstable"));
        let pod = "/kubepods/burstable/podu1";
        cg.ensure(pod, &PodLimits::default()).await.unwrap();
        kernel_files(&root.join("kubepods/burstable/podu1"));
        cg.ensure(
            pod,
            &PodLimits {
                cpu_shares: Some(1024),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: Some(64 << 20),
                pids_max: Some(-1),
            },
        )
        .await
        .unwrap();
        let read = |f: &str| {
            std::fs::read_to_string(root.join("kubepods/burstable/podu1").join(f)).unwrap()
        };
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("pids.max"), "max");
        assert_eq!(
            std::fs::read_to_string(root.join("kubepods/burstable/cgroup.subtree_control"))
                .unwrap(),
            "+cpu +cpuset +memory +pids"
        );
        assert!(cg.exists(pod));
        // A limit whose controller is not enabled there is an error, not a silent no-op.
        std::fs::remove_file(root.join("kubepods/burstable/podu1/memory.max")).unwrap();
        let e = cg
            .ensure(
                pod,
                &PodLimits {
                    memory_limit: Some(1 << 20),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("memory.max is missing"), "{e}");
        for f in [
            "cpu.weight",
            "cpu.max",
            "pids.max",
            "cgroup.subtree_control",
            "cgroup.controllers",
        ] {
            std::fs::remove_file(root.join("kubepods/burstable/podu1").join(f)).unwrap();
        }
        cg.remove(pod).await.unwrap();
        assert!(!cg.exists(pod));
        cg.remove(pod).await.unwrap();
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn pods_under_a_cgroup_root_get_controllers_down_the_tree() {
        let root = scratch("root");
        let cg = CgroupV2::new(&root);
        assert!(cg.missing("/").is_empty());
        assert_eq!(cg.missing("/krs"), vec![root.join("krs")]);
        std::fs::create_dir_all(root.join("krs")).unwrap();
        kernel_files(&root.join("krs"));
        assert!(cg.missing("/krs").is_empty());
        cg.ensure("/krs/kubepods", &PodLimits::default())
            .await
            .unwrap();
        // The root's own controllers are delegated to it, and it delegates to kubepods.
        for dir in [root.clone(), root.join("krs")] {
            assert_eq!(
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap(),
                "+cpu +cpuset +memory +pids",
                "{}",
                dir.display()
            );
        }
        assert!(cg.exists("/krs/kubepods"));
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn reads_v2_usage_and_the_roots_from_meminfo() {
        let root = scratch("usage");
        let meminfo = root.join("meminfo");
        std::fs::write(
            &meminfo,
            "MemTotal: 1000 kB\nMemFree: 400 kB\nInactive(file): 100 kB\n",
        )
        .unwrap();
        let cg = CgroupV2::with_meminfo(&root, &meminfo);
        assert_eq!(cg.usage("/kubepods/podx"), None);
        let pod = root.join("kubepods/podx");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("cpu.stat"), "usage_usec 12\nuser_usec 10\n").unwrap();
        std::fs::write(pod.join("memory.current"), "1000\n").unwrap();
        std::fs::write(
            pod.join("memory.stat"),
            "anon 600\nfile 400\ninactive_file 300\npgfault 7\npgmajfault 2\n",
        )
        .unwrap();
        assert_eq!(
            cg.usage("/kubepods/podx"),
            Some(CgroupUsage {
                cpu_ns: 12_000,
                memory_usage: 1000,
                working_set: 700,
                rss: 600,
                page_faults: 7,
                major_page_faults: 2,
                processes: None,
            })
        );
        std::fs::write(root.join("cpu.stat"), "usage_usec 5\n").unwrap();
        let u = cg.usage("/").unwrap();
        assert_eq!(
            (u.cpu_ns, u.memory_usage, u.working_set),
            (5000, 600 * 1024, 500 * 1024)
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
