//! The systemd cgroup driver: QoS and pod cgroups are slices systemd owns, made as transient
//! units over D-Bus with their limits as unit properties (runc's `systemd` manager, as
//! upstream's `cgroupManagerImpl` drives it). The runtime is then given the slice as
//! `cgroup_parent` and puts its scopes beneath. Names come in cgroupfs form
//! (`/kubepods/burstable/pod<uid>`) and are mapped with `kubelet_core::cm::CgroupName`.

use super::{CgroupUsage, CgroupV1, CgroupV2, Cgroups, PodLimits};
use kubelet_core::cm::{
    CFS_PERIOD_US, CgroupName, CgroupVersion, Driver, cpu_quota_per_sec_usec, shares_to_weight,
};
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, Value};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: &[(&str, Value<'_>)],
    ) -> zbus::Result<()>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// How long a slice's start or stop job may take; upstream waits 1 s, but a loaded node
/// (or an emulated VM) can be slower, and a slice that is late still appears.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("connecting to systemd over D-Bus: {0}")]
    Connect(zbus::Error),
    #[error("systemd {op} {unit}: {source}")]
    Call {
        op: &'static str,
        unit: String,
        source: zbus::Error,
    },
    #[error("systemd {op} {unit}: job ended {result:?}")]
    Job {
        op: &'static str,
        unit: String,
        result: String,
    },
    #[error("systemd {op} {unit}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        unit: String,
        timeout: Duration,
    },
}

impl From<SystemdError> for std::io::Error {
    fn from(e: SystemdError) -> Self {
        std::io::Error::other(e)
    }
}

/// Slices through systemd; reading (exists, usage) goes to the filesystem under the slice
/// path, through the manager of the host's cgroup version.
#[derive(Debug)]
pub struct SystemdCgroups {
    version: CgroupVersion,
    conn: zbus::Connection,
    files: Box<dyn Cgroups>,
}

/// A cgroupfs-form path as its name: "/kubepods/burstable/podu" → [kubepods, burstable, podu].
fn name_of(path: &str) -> CgroupName {
    CgroupName::from_cgroupfs(path)
}

/// The unit properties for a slice with `limits` (runc's `systemd` v1/v2 property sets).
pub fn slice_properties(
    version: CgroupVersion,
    name: &CgroupName,
    limits: &PodLimits,
) -> Vec<(&'static str, Value<'static>)> {
    let v2 = version == CgroupVersion::V2;
    let mut p: Vec<(&'static str, Value<'static>)> = vec![
        (
            "Description",
            Value::from(format!("libcontainer container {}", name.systemd_unit())),
        ),
        ("DefaultDependencies", Value::from(false)),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
        (
            if v2 {
                "IOAccounting"
            } else {
                "BlockIOAccounting"
            },
            Value::from(true),
        ),
    ];
    // A slice is placed by its name; `Wants` keeps its parent started, as runc does.
    if let Some(parent) = name.parent() {
        p.push(("Wants", Value::from(vec![parent.systemd_unit()])));
    }
    p.extend(limit_properties(version, limits));
    p
}

/// Just the limits, for a slice that exists already.
pub fn limit_properties(
    version: CgroupVersion,
    limits: &PodLimits,
) -> Vec<(&'static str, Value<'static>)> {
    let v2 = version == CgroupVersion::V2;
    let mut p: Vec<(&'static str, Value<'static>)> = vec![];
    if let Some(s) = limits.cpu_shares {
        if v2 {
            p.push(("CPUWeight", Value::U64(shares_to_weight(s))));
        } else {
            p.push(("CPUShares", Value::U64(s)));
        }
    }
    if limits.cpu_quota.is_some() {
        let period = limits.cpu_period.unwrap_or(CFS_PERIOD_US);
        p.push((
            "CPUQuotaPerSecUSec",
            Value::U64(cpu_quota_per_sec_usec(limits.cpu_quota, period)),
        ));
    }
    if let Some(m) = limits.memory_limit.filter(|m| *m != 0) {
        let bytes = u64::try_from(m).unwrap_or(u64::MAX);
        p.push((
            if v2 { "MemoryMax" } else { "MemoryLimit" },
            Value::U64(bytes),
        ));
    }
    if let Some(n) = limits.pids_max {
        p.push(("TasksMax", Value::U64(u64::try_from(n).unwrap_or(u64::MAX))));
    }
    p
}

impl SystemdCgroups {
    /// Connects to the system bus; fails when systemd is not there to ask.
    pub async fn connect(version: CgroupVersion, root: &Path) -> Result<Self, SystemdError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(SystemdError::Connect)?;
        // systemd sends JobRemoved to the client that queued the job; subscribing as well
        // costs nothing and covers older versions.
        if let Ok(m) = ManagerProxy::new(&conn).await {
            let _ = m.subscribe().await;
        }
        let files: Box<dyn Cgroups> = match version {
            CgroupVersion::V1 => Box::new(CgroupV1 { root: root.into() }),
            CgroupVersion::V2 => Box::new(CgroupV2::new(root)),
        };
        Ok(SystemdCgroups {
            version,
            conn,
            files,
        })
    }

    async fn manager(
        &self,
        op: &'static str,
        unit: &str,
    ) -> Result<ManagerProxy<'_>, SystemdError> {
        ManagerProxy::new(&self.conn)
            .await
            .map_err(|source| SystemdError::Call {
                op,
                unit: unit.into(),
                source,
            })
    }

    /// Runs a job-returning call and waits for its JobRemoved; the stream is opened first so
    /// the signal cannot be missed. `Ok(false)`: the unit already existed.
    async fn job<'a, F, Fut>(
        &'a self,
        op: &'static str,
        unit: &str,
        call: F,
    ) -> Result<bool, SystemdError>
    where
        F: FnOnce(ManagerProxy<'a>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    {
        use futures::StreamExt;
        let m = self.manager(op, unit).await?;
        let err = |source| SystemdError::Call {
            op,
            unit: unit.into(),
            source,
        };
        let mut removed = m.receive_job_removed().await.map_err(err)?;
        let job = match call(m.clone()).await {
            Ok(job) => job,
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.UnitExists" =>
            {
                return Ok(false);
            }
            Err(e) => return Err(err(e)),
        };
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return Some(args.result.to_string());
                }
            }
            None
        };
        match tokio::time::timeout(JOB_TIMEOUT, wait).await {
            Ok(Some(result)) if result == "done" => Ok(true),
            Ok(Some(result)) => {
                let _ = m.reset_failed_unit(unit).await;
                Err(SystemdError::Job {
                    op,
                    unit: unit.into(),
                    result,
                })
            }
            Ok(None) | Err(_) => Err(SystemdError::Timeout {
                op,
                unit: unit.into(),
                timeout: JOB_TIMEOUT,
            }),
        }
    }

    /// Makes the slice for `path` with `limits`, or updates the limits of an existing one
    /// (a kubelet restart, a QoS tier's new share); runtime-only, as upstream.
    pub async fn ensure_slice(&self, path: &str, limits: &PodLimits) -> Result<(), SystemdError> {
        let name = name_of(path);
        let unit = name.systemd_unit();
        let props = slice_properties(self.version, &name, limits);
        let started = self
            .job("StartTransientUnit", &unit, |m| {
                let (unit, props) = (&unit, &props);
                async move { m.start_transient_unit(unit, "replace", props, &[]).await }
            })
            .await?;
        let update = limit_properties(self.version, limits);
        if started || update.is_empty() {
            return Ok(());
        }
        let m = self.manager("SetUnitProperties", &unit).await?;
        m.set_unit_properties(&unit, true, &update)
            .await
            .map_err(|source| SystemdError::Call {
                op: "SetUnitProperties",
                unit: unit.clone(),
                source,
            })
    }

    /// Stops the slice for `path` (and so everything left in it); a slice systemd does not
    /// know is fine.
    pub async fn remove_slice(&self, path: &str) -> Result<(), SystemdError> {
        let unit = name_of(path).systemd_unit();
        let r = self
            .job("StopUnit", &unit, |m| {
                let unit = &unit;
                async move { m.stop_unit(unit, "replace").await }
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(SystemdError::Call {
                source: zbus::Error::MethodError(name, _, _),
                ..
            }) if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The slice's path under the cgroup mount, for reading.
    fn slice_path(path: &str) -> String {
        name_of(path).path(Driver::Systemd)
    }
}

#[async_trait::async_trait]
impl Cgroups for SystemdCgroups {
    fn version(&self) -> CgroupVersion {
        self.version
    }

    async fn ensure(&self, path: &str, limits: &PodLimits) -> std::io::Result<()> {
        Ok(self.ensure_slice(path, limits).await?)
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        Ok(self.remove_slice(path).await?)
    }

    fn exists(&self, path: &str) -> bool {
        self.files.exists(&Self::slice_path(path))
    }

    fn usage(&self, path: &str) -> Option<CgroupUsage> {
        self.files.usage(&Self::slice_path(path))
    }

    /// Under systemd, containerd's runc puts each container in a scope in the pod's slice.
    fn container_usage(&self, pod: &str, id: &str) -> Option<CgroupUsage> {
        self.files.usage(&format!(
            "{}/{CONTAINER_SCOPE_PREFIX}-{id}.scope",
            Self::slice_path(pod)
        ))
    }
}

/// containerd's prefix for a container's systemd scope (`cri-containerd-<id>.scope`).
const CONTAINER_SCOPE_PREFIX: &str = "cri-containerd";

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a [(&str, Value<'static>)], k: &str) -> Option<&'a Value<'static>> {
        p.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn slice_properties_follow_the_version() {
        let limits = PodLimits {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_max: Some(-1),
        };
        let name = name_of("/kubepods/burstable/poda-b");
        assert_eq!(name.systemd_unit(), "kubepods-burstable-poda_b.slice");
        let v2 = slice_properties(CgroupVersion::V2, &name, &limits);
        assert_eq!(get(&v2, "CPUWeight"), Some(&Value::U64(39)));
        assert_eq!(get(&v2, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
        assert_eq!(get(&v2, "MemoryMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(
            get(&v2, "TasksMax"),
            Some(&Value::U64(u64::MAX)),
            "-1: no limit"
        );
        assert_eq!(
            get(&v2, "Wants"),
            Some(&Value::from(vec!["kubepods-burstable.slice".to_string()]))
        );
        assert!(get(&v2, "CPUShares").is_none() && get(&v2, "MemoryLimit").is_none());
        let v1 = slice_properties(CgroupVersion::V1, &name, &limits);
        assert_eq!(get(&v1, "CPUShares"), Some(&Value::U64(1024)));
        assert_eq!(get(&v1, "MemoryLimit"), Some(&Value::U64(64 << 20)));
        assert!(get(&v1, "BlockIOAccounting").is_some());
        // No limits asked, none sent; kubepods' parent is the root slice.
        let top = slice_properties(
            CgroupVersion::V2,
            &name_of("/kubepods"),
            &PodLimits::default(),
        );
        assert!(get(&top, "CPUWeight").is_none() && get(&top, "MemoryMax").is_none());
        assert_eq!(
            get(&top, "Wants"),
            Some(&Value::from(vec!["-.slice".to_string()]))
        );
        assert_eq!(
            SystemdCgroups::slice_path("/kubepods/besteffort"),
            "/kubepods.slice/kubepods-besteffort.slice"
        );
    }
}
