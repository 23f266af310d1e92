//! Pod and QoS cgroups (upstream `cm/pod_container_manager_linux.go`,
//! `cm/qos_container_manager_linux.go`): the kubelet makes the pod's cgroup, with the pod's
//! limits, before the runtime puts containers under it, and removes it once they are gone.
//! One trait over cgroup v1 and v2; the layout is detected at start and an unmanageable one
//! refused.

mod systemd;
mod v1;
mod v2;

pub use kubelet_core::cm::CgroupVersion;
pub use systemd::{SystemdCgroups, SystemdError, limit_properties, slice_properties};
pub use v1::CgroupV1;
pub use v2::CgroupV2;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the host mounts cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Limits written on the pod's cgroup; `None` leaves the kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_max: Option<i64>,
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
    /// Processes in the cgroup and below (`cgroup.procs`), as cadvisor counts them.
    pub processes: Option<u64>,
}

/// Cgroups named in cgroupfs form ("/kubepods/burstable/pod<uid>"); the systemd driver maps
/// the names to slices.
#[async_trait::async_trait]
pub trait Cgroups: Send + Sync + std::fmt::Debug + 'static {
    fn version(&self) -> CgroupVersion;
    /// Creates `path` and writes the limits (again, if it exists).
    async fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()>;
    /// Removes `path`; missing is fine.
    async fn remove(&self, path: &str) -> std::io::Result<()>;
    fn exists(&self, path: &str) -> bool;
    /// Where `path` is missing: the directories under the mount that should hold it (every
    /// managed controller's hierarchy under v1) and do not. Empty when it is all there.
    fn missing(&self, path: &str) -> Vec<PathBuf> {
        if self.exists(path) {
            vec![]
        } else {
            vec![PathBuf::from(path)]
        }
    }
    /// `path`'s CPU and memory accounting; `None` if the cgroup is not there.
    fn usage(&self, path: &str) -> Option<CgroupUsage>;
    /// A container's accounting under its pod's cgroup `pod`: runc names it by the
    /// container id under cgroupfs.
    fn container_usage(&self, pod: &str, id: &str) -> Option<CgroupUsage> {
        self.usage(&format!("{pod}/{id}"))
    }
}

/// Why the host's cgroups cannot be managed; the kubelet refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum CgroupSetupError {
    #[error("statfs {path}: {source}")]
    Statfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cgroup {version:?} at {path} lacks the {missing:?} controller(s) pod limits need; cannot manage pod cgroups"
    )]
    MissingControllers {
        version: CgroupVersion,
        path: PathBuf,
        missing: Vec<&'static str>,
    },
}

/// Controllers pod limits need, by version.
const NEEDED_V1: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];
const NEEDED_V2: [&str; 3] = ["cpu", "memory", "pids"];

/// Which cgroup version `root` is, and that it has the controllers pod limits need.
pub fn detect(root: &Path) -> Result<CgroupVersion, CgroupSetupError> {
    let st = rustix::fs::statfs(root).map_err(|e| CgroupSetupError::Statfs {
        path: root.into(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let version = kubelet_core::cm::cgroup_version(st.f_type as i64);
    check_controllers(root, version)?;
    Ok(version)
}

/// v1: a directory per controller; v2: the root's `cgroup.controllers`.
fn check_controllers(root: &Path, version: CgroupVersion) -> Result<(), CgroupSetupError> {
    let missing: Vec<&'static str> = match version {
        CgroupVersion::V1 => NEEDED_V1
            .into_iter()
            .filter(|c| !root.join(c).is_dir())
            .collect(),
        CgroupVersion::V2 => {
            let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let have: Vec<&str> = have.split_whitespace().collect();
            NEEDED_V2
                .into_iter()
                .filter(|c| !have.contains(c))
                .collect()
        }
    };
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CgroupSetupError::MissingControllers {
            version,
            path: root.into(),
            missing,
        })
    }
}

/// The manager for a detected version, over the cgroup mount at `root`.
pub fn manager(version: CgroupVersion, root: &Path) -> Arc<dyn Cgroups> {
    match version {
        CgroupVersion::V1 => Arc::new(CgroupV1 { root: root.into() }),
        CgroupVersion::V2 => Arc::new(CgroupV2::new(root)),
    }
}

/// Writes `value` to `dir/file` if the kernel offers that file (a controller may be absent).
fn write(dir: &Path, file: &str, value: impl ToString) -> std::io::Result<()> {
    let p = dir.join(file);
    if p.exists() {
        std::fs::write(p, value.to_string())?;
    }
    Ok(())
}

/// Writes a limit the caller asked for: the file missing means its controller is not
/// enabled there, and the pod would silently run without the limit.
fn write_required(dir: &Path, file: &str, value: impl ToString) -> std::io::Result<()> {
    let p = dir.join(file);
    if !p.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is missing: its controller is not enabled", p.display()),
        ));
    }
    std::fs::write(p, value.to_string())
}

/// "max" for a negative pids limit, as the kernel spells no limit.
fn pids_value(n: i64) -> String {
    if n < 0 { "max".into() } else { n.to_string() }
}

/// The value of `key` in a memory.stat or cpu.stat text.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The processes listed in `cgroup.procs` of `dir` and every cgroup below it; `None` when
/// `dir` is not a cgroup. A cgroup that goes while walking is skipped.
fn count_processes(dir: &Path) -> Option<u64> {
    let own = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let mut n = own.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            n += count_processes(&e.path()).unwrap_or(0);
        }
    }
    Some(n)
}

/// `rmdir`, where a missing directory is fine; a cgroup that still has processes (EBUSY) is
/// retried by the caller.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Records calls and keeps a set of paths, for unit tests.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    pub state: std::sync::Mutex<std::collections::BTreeMap<String, PodLimits>>,
    /// What `usage` answers, by path; a path not here has none.
    pub usages: std::sync::Mutex<std::collections::BTreeMap<String, CgroupUsage>>,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeCgroups {
    fn state(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, PodLimits>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait::async_trait]
impl Cgroups for FakeCgroups {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }
    async fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
        self.state().insert(path.into(), limits.clone());
        Ok(())
    }
    async fn remove(&self, path: &str) -> std::io::Result<()> {
        self.state().remove(path);
        Ok(())
    }
    fn exists(&self, path: &str) -> bool {
        self.state().contains_key(path)
    }
    fn usage(&self, path: &str) -> Option<CgroupUsage> {
        self.usages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_layout_is_detected() {
        // Whatever this machine runs, detection names it or says why not; never panics.
        match detect(Path::new(CGROUP_ROOT)) {
            Ok(v) => assert!(matches!(v, CgroupVersion::V1 | CgroupVersion::V2)),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        let e = detect(Path::new("/nonexistent-krs")).unwrap_err();
        assert!(e.to_string().starts_with("statfs /nonexistent-krs"), "{e}");
        // A plain directory is no cgroup mount: it has none of the controllers.
        let e = detect(&std::env::temp_dir()).unwrap_err();
        assert!(
            matches!(e, CgroupSetupError::MissingControllers { .. }),
            "{e}"
        );
    }

    #[test]
    fn processes_are_counted_down_the_tree() {
        let root = std::env::temp_dir().join(format!("krs-cg-procs-{}", std::process::id()));
        let child = root.join("cri-containerd-a.scope");
        std::fs::create_dir_all(&child).unwrap();
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        std::fs::write(child.join("cgroup.procs"), "10\n11\n").unwrap();
        // A directory that is no cgroup counts nothing.
        std::fs::create_dir_all(root.join("other")).unwrap();
        assert_eq!(count_processes(&root), Some(2));
        assert_eq!(count_processes(&root.join("missing")), None);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn missing_controllers_are_named() {
        let root = std::env::temp_dir().join(format!("krs-cg-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory\n").unwrap();
        let e = check_controllers(&root, CgroupVersion::V2).unwrap_err();
        assert!(
            matches!(&e, CgroupSetupError::MissingControllers { missing, .. } if missing == &["pids"]),
            "{e}"
        );
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert!(check_controllers(&root, CgroupVersion::V2).is_ok());
        std::fs::create_dir_all(root.join("cpu")).unwrap();
        let e = check_controllers(&root, CgroupVersion::V1).unwrap_err();
        assert!(
            e.to_string().contains(r#"["cpuacct", "memory", "pids"]"#),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
