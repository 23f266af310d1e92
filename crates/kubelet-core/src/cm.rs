//! Cgroup names, layouts and the values written to them, as upstream's `pkg/kubelet/cm`
//! decides them (`cgroup_manager_linux.go`, `helpers_linux.go`): pure, so both cgroup
//! versions and both drivers share one set of rules.

use crate::qos::{QosClass, pod_qos};
use crate::quantity::parse_milli;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// The kernel's `statfs` magic of a cgroup2 mount (`CGROUP2_SUPER_MAGIC`).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
pub const CFS_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: i64 = 1000;

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Which version `/sys/fs/cgroup`'s filesystem magic says the host runs: cgroup2 is v2,
/// anything else v1 (as runc's `IsCgroup2UnifiedMode`); the v1 hierarchies are then
/// checked for the controllers pods need.
pub fn cgroup_version(fs_magic: i64) -> CgroupVersion {
    if fs_magic == CGROUP2_SUPER_MAGIC {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// Bytes from a quantity's thousandths, rounded up as `Quantity.Value()` does.
pub fn milli_to_units(milli: i128) -> i64 {
    let v = milli.div_euclid(1000) + i128::from(milli.rem_euclid(1000) != 0);
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Who creates cgroups: the kubelet through the filesystem, or systemd through slices
/// (`cgroupDriver` in the KubeletConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl Driver {
    /// The name as the config file and `--cgroup-driver` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        }
    }
}

/// A cgroup as a list of components (upstream `CgroupName`), e.g. `[kubepods, burstable,
/// pod<uid>]`; each driver spells it its own way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CgroupName(pub Vec<String>);

impl CgroupName {
    pub fn root() -> Self {
        CgroupName(vec![])
    }

    pub fn child(&self, part: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(part.into());
        CgroupName(v)
    }

    /// `/kubepods/burstable/pod<uid>`.
    pub fn to_cgroupfs(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// The systemd unit: `kubepods-burstable-pod<uid_>.slice` (`-` is systemd's separator,
    /// so it becomes `_` inside a component); `-.slice` for the root.
    pub fn systemd_unit(&self) -> String {
        if self.0.is_empty() {
            return "-.slice".into();
        }
        let parts: Vec<String> = self.0.iter().map(|p| p.replace('-', "_")).collect();
        format!("{}.slice", parts.join("-"))
    }

    /// The path systemd gives the slice: `/kubepods.slice/kubepods-burstable.slice/...`.
    pub fn to_systemd(&self) -> String {
        if self.0.is_empty() {
            return "/".into();
        }
        (1..=self.0.len())
            .map(|n| format!("/{}", CgroupName(self.0[..n].to_vec()).systemd_unit()))
            .collect()
    }

    /// The path under the cgroup mount for `driver`.
    pub fn path(&self, driver: Driver) -> String {
        match driver {
            Driver::Cgroupfs => self.to_cgroupfs(),
            Driver::Systemd => self.to_systemd(),
        }
    }

    /// A cgroupfs-form path as its name: "/kubepods/burstable/podu" → [kubepods, burstable,
    /// podu]; empty components are skipped.
    pub fn from_cgroupfs(path: &str) -> Self {
        CgroupName(
            path.split('/')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    /// The parent, for a systemd slice's `Wants`; `None` at the root.
    pub fn parent(&self) -> Option<CgroupName> {
        let (_, rest) = self.0.split_last()?;
        Some(CgroupName(rest.to_vec()))
    }
}

/// Where the node's cgroups hang (`cgroupRoot`, with `cgroupsPerQOS`): the node allocatable
/// cgroup `<root>/kubepods`, the Burstable and BestEffort tiers under it, each pod under its
/// tier (Guaranteed pods directly under kubepods). Every pod and QoS cgroup name is built here.
/// The default root is the host's root cgroup ("" and "/" both mean it, as upstream defaults
/// "" to "/"), which gives today's `/kubepods/...` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CgroupLayout {
    root: CgroupName,
}

impl CgroupLayout {
    /// The layout under `cgroup_root` in cgroupfs form ("", "/" or "/a/b"); see
    /// [`parse_cgroup_root`] for what is accepted.
    pub fn new(cgroup_root: &str) -> Result<Self, String> {
        Ok(CgroupLayout {
            root: parse_cgroup_root(cgroup_root)?,
        })
    }

    /// The root cgroup everything hangs under (`CgroupName::root()` for "/").
    pub fn root(&self) -> &CgroupName {
        &self.root
    }

    /// The node allocatable cgroup: `<root>/kubepods`.
    pub fn kubepods(&self) -> CgroupName {
        self.root.child("kubepods")
    }

    /// The QoS class's cgroup: Guaranteed pods sit directly under kubepods.
    pub fn qos(&self, qos: QosClass) -> CgroupName {
        match qos {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => self.kubepods().child("burstable"),
            QosClass::BestEffort => self.kubepods().child("besteffort"),
        }
    }

    /// `<root>/kubepods/[tier/]pod<uid>`.
    pub fn pod(&self, qos: QosClass, uid: &str) -> CgroupName {
        self.qos(qos).child(format!("pod{uid}"))
    }
}

/// A `cgroupRoot` in cgroupfs form as a name: "" or "/" is the root, "/a/b" is `[a, b]` (a
/// trailing "/" is dropped). Refused: a relative path, empty components ("/a//b"), "." and
/// "..", which would name another cgroup than the one written.
pub fn parse_cgroup_root(s: &str) -> Result<CgroupName, String> {
    if s.is_empty() || s == "/" {
        return Ok(CgroupName::root());
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!(
            "{s:?} must be an absolute cgroupfs path (\"/\" or \"/a/b\")"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let parts: Vec<String> = rest.split('/').map(String::from).collect();
    if let Some(p) = parts
        .iter()
        .find(|p| p.is_empty() || *p == "." || *p == ".." || p.trim() != p.as_str())
    {
        return Err(format!(
            "{s:?} has an invalid component {p:?}: components must be non-empty names, not \".\" or \"..\""
        ));
    }
    Ok(CgroupName(parts))
}

/// `MilliCPUToShares`: 1024 shares a CPU, within the kernel's bounds.
pub fn milli_cpu_to_shares(milli: i128) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli * 1024 / 1000) as u64).clamp(MIN_SHARES, MAX_SHARES)
}

/// `MilliCPUToQuota` for a 100 ms period; `None` for no limit.
pub fn milli_cpu_to_quota(milli: i128) -> Option<i64> {
    (milli > 0).then(|| ((milli * CFS_PERIOD_US as i128 / 1000) as i64).max(MIN_QUOTA_US))
}

/// cgroup v2's `cpu.weight` for v1 shares (`CpuSharesToCpuWeight`): 2 → 1, 262144 → 10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((s - 2) * 9999) / 262_142
}

/// cgroup v2's `cpu.max`: "<quota|max> <period>".
pub fn cpu_max(quota: Option<i64>, period: u64) -> String {
    match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    }
}

/// systemd's `CPUQuotaPerSecUSec` for a CFS quota: per-second, rounded up to 10 ms as
/// runc does; `u64::MAX` means no limit.
pub fn cpu_quota_per_sec_usec(quota: Option<i64>, period: u64) -> u64 {
    match quota {
        Some(q) if q > 0 && period > 0 => {
            let per_sec = (q as u64) * 1_000_000 / period;
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => u64::MAX,
    }
}

/// The limits of a pod's cgroup (upstream `ResourceConfigForPod`): requests and limits
/// summed over the containers, or the largest init container's if more; CPU quota and memory
/// only when every app container has that limit; BestEffort pods get the minimum shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: u64,
    pub cpu_quota: Option<i64>,
    pub memory_limit: Option<i64>,
}

/// A container's value for `key`: its limit, or its request (defaulted from the limit). A
/// zero limit counts as none, as upstream's `IsZero` checks.
fn value(c: &Container, limit: bool, key: &str) -> Option<i128> {
    let r = c.resources.as_ref()?;
    let q = if limit {
        r.limits.as_ref()?.get(key)
    } else {
        r.requests
            .as_ref()
            .and_then(|m| m.get(key))
            .or_else(|| r.limits.as_ref()?.get(key))
    }?;
    parse_milli(&q.0).ok().filter(|v| !limit || *v > 0)
}

/// (sum, whether every app container has it) of a resource over the pod; init containers
/// count by their maximum.
fn pod_total(spec: &PodSpec, limit: bool, key: &str) -> (i128, bool) {
    let mut all = !spec.containers.is_empty();
    let mut sum = 0i128;
    for c in &spec.containers {
        match value(c, limit, key) {
            Some(v) => sum += v,
            None => all = false,
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(v) = value(c, limit, key) {
            sum = sum.max(v);
        }
    }
    (sum, all)
}

pub fn pod_resources(spec: &PodSpec) -> PodResources {
    let total = |limit: bool, key: &str| pod_total(spec, limit, key);
    let (cpu_req, _) = total(false, "cpu");
    let (cpu_lim, all_cpu) = total(true, "cpu");
    let (mem_lim, all_mem) = total(true, "memory");
    if pod_qos(spec) == QosClass::BestEffort {
        return PodResources {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_limit: None,
        };
    }
    PodResources {
        cpu_shares: milli_cpu_to_shares(cpu_req),
        cpu_quota: if all_cpu {
            milli_cpu_to_quota(cpu_lim)
        } else {
            None
        },
        memory_limit: all_mem.then(|| milli_to_units(mem_lim)),
    }
}

/// The Burstable tier's CPU shares (upstream `setCPUCgroupConfig`): the summed CPU requests
/// of the Burstable pods, so the tier weighs against Guaranteed pods as its pods would.
pub fn burstable_shares<'a>(specs: impl IntoIterator<Item = &'a PodSpec>) -> u64 {
    let milli: i128 = specs
        .into_iter()
        .filter(|s| pod_qos(s) == QosClass::Burstable)
        .map(|s| pod_total(s, false, "cpu").0)
        .sum();
    milli_cpu_to_shares(milli)
}

/// The cgroup driver the runtime uses, from containerd's verbose CRI status (`info["config"]`,
/// its CRI plugin config as JSON): the default runtime's runc `SystemdCgroup` option, which
/// is cgroupfs when unset. `None` when the runtime does not say (not containerd, or a
/// default runtime that is not runc v2).
pub fn runtime_cgroup_driver(config_json: &str) -> Option<Driver> {
    let v: serde_json::Value = serde_json::from_str(config_json).ok()?;
    let ctrd = v.get("containerd")?;
    let name = ctrd.get("defaultRuntimeName")?.as_str()?;
    let rt = ctrd.get("runtimes")?.get(name)?;
    if rt.get("runtimeType")?.as_str()? != "io.containerd.runc.v2" {
        return None;
    }
    let systemd = rt
        .get("options")
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Some(if systemd {
        Driver::Systemd
    } else {
        Driver::Cgroupfs
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_for_both_drivers() {
        let n = CgroupLayout::default().pod(QosClass::Burstable, "a-b");
        assert_eq!(n.to_cgroupfs(), "/kubepods/burstable/poda-b");
        assert_eq!(n.systemd_unit(), "kubepods-burstable-poda_b.slice");
        assert_eq!(
            n.to_systemd(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda_b.slice"
        );
        assert_eq!(
            CgroupLayout::default()
                .pod(QosClass::Guaranteed, "u")
                .path(Driver::Systemd),
            "/kubepods.slice/kubepods-podu.slice"
        );
        assert_eq!(
            CgroupLayout::default()
                .pod(QosClass::BestEffort, "u")
                .path(Driver::Cgroupfs),
            "/kubepods/besteffort/podu"
        );
        assert_eq!(
            n.parent().map(|p| p.systemd_unit()).as_deref(),
            Some("kubepods-burstable.slice")
        );
        assert_eq!(
            CgroupLayout::default()
                .kubepods()
                .parent()
                .map(|p| p.systemd_unit())
                .as_deref(),
            Some("-.slice")
        );
        assert_eq!(CgroupName::root().to_systemd(), "/");
    }

    #[test]
    fn names_under_a_cgroup_root() {
        // "" and "/" are the host's root: the names every existing node has.
        for root in ["", "/"] {
            let l = CgroupLayout::new(root).unwrap();
            assert_eq!(l, CgroupLayout::default());
            assert_eq!(l.root(), &CgroupName::root());
            assert_eq!(l.kubepods().to_cgroupfs(), "/kubepods");
            assert_eq!(
                l.qos(QosClass::Burstable).to_cgroupfs(),
                "/kubepods/burstable"
            );
            assert_eq!(
                l.pod(QosClass::BestEffort, "u").to_cgroupfs(),
                "/kubepods/besteffort/podu"
            );
        }
        let l = CgroupLayout::new("/kadm-n1").unwrap();
        assert_eq!(l.root().to_cgroupfs(), "/kadm-n1");
        assert_eq!(l.kubepods().to_cgroupfs(), "/kadm-n1/kubepods");
        assert_eq!(
            l.qos(QosClass::Guaranteed).to_cgroupfs(),
            "/kadm-n1/kubepods"
        );
        assert_eq!(
            l.qos(QosClass::BestEffort).to_cgroupfs(),
            "/kadm-n1/kubepods/besteffort"
        );
        assert_eq!(
            l.pod(QosClass::Burstable, "a-b").to_cgroupfs(),
            "/kadm-n1/kubepods/burstable/poda-b"
        );
        assert_eq!(
            l.pod(QosClass::Guaranteed, "u").to_cgroupfs(),
            "/kadm-n1/kubepods/podu"
        );
        // Deeper roots, and a trailing slash dropped.
        let l = CgroupLayout::new("/a/b/").unwrap();
        assert_eq!(l.kubepods().to_cgroupfs(), "/a/b/kubepods");
        assert_eq!(
            CgroupName::from_cgroupfs("/a/b/kubepods"),
            l.kubepods(),
            "the cgroupfs form reads back"
        );
        for bad in ["kadm", "a/b", "/a//b", "/a/../b", "/.", "//", "/ a"] {
            let e = CgroupLayout::new(bad).unwrap_err();
            assert!(e.starts_with(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn versions_from_the_mount() {
        assert_eq!(cgroup_version(0x6367_7270), CgroupVersion::V2);
        assert_eq!(
            cgroup_version(0x0102_1994),
            CgroupVersion::V1,
            "tmpfs of hierarchies"
        );
        assert_eq!(milli_to_units(1000), 1);
        assert_eq!(milli_to_units(1001), 2, "rounded up");
        assert_eq!(milli_to_units(0), 0);
    }

    #[test]
    fn conversions_match_upstream() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0), None);
        assert_eq!(milli_cpu_to_quota(5), Some(1000), "at least 1 ms");
        assert_eq!(milli_cpu_to_quota(1500), Some(150_000));
        for (shares, weight) in [(2, 1), (102, 4), (512, 20), (1024, 39), (262_144, 10_000)] {
            assert_eq!(shares_to_weight(shares), weight, "{shares}");
        }
        assert_eq!(cpu_max(Some(50_000), 100_000), "50000 100000");
        assert_eq!(cpu_max(None, 100_000), "max 100000");
        assert_eq!(cpu_quota_per_sec_usec(Some(50_000), 100_000), 500_000);
        assert_eq!(
            cpu_quota_per_sec_usec(Some(1_001), 100_000),
            20_000,
            "rounded up"
        );
        assert_eq!(cpu_quota_per_sec_usec(None, 100_000), u64::MAX);
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_limits() {
        let s = spec(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "32Mi"}}}
        ]}));
        let r = pod_resources(&s);
        // b's request defaults to its limit.
        assert_eq!(r.cpu_shares, 1250 * 1024 / 1000);
        assert_eq!(r.cpu_quota, Some(150_000));
        assert_eq!(r.memory_limit, Some(96 << 20));
        let best = spec(serde_json::json!({"containers": [{"name": "a"}]}));
        assert_eq!(
            pod_resources(&best),
            PodResources {
                cpu_shares: 2,
                cpu_quota: None,
                memory_limit: None
            }
        );
        // An init container without limits does not lift the pod's; a bigger one raises it.
        let s = spec(serde_json::json!({
            "initContainers": [{"name": "i"}, {"name": "j", "resources": {"limits": {"memory": "1Gi"}}}],
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}]
        }));
        let r = pod_resources(&s);
        assert_eq!(r.memory_limit, Some(1 << 30));
        assert_eq!(r.cpu_quota, Some(100_000));
        // A zero limit is no limit: the pod gets no memory cap rather than a cap of 0.
        let s = spec(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "0"}}}]}));
        assert_eq!(pod_resources(&s).memory_limit, None);
        // Shares are capped at the kernel's maximum.
        let big = spec(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500"}}}]}));
        assert_eq!(pod_resources(&big).cpu_shares, MAX_SHARES);
    }

    proptest! {
        /// The weight is monotonic in the shares and stays within cgroup v2's 1..=10000.
        #[test]
        fn weight_is_monotonic_and_bounded(a in 0u64..400_000, b in 0u64..400_000) {
            let (wa, wb) = (shares_to_weight(a), shares_to_weight(b));
            prop_assert!((1..=10_000).contains(&wa));
            if a <= b {
                prop_assert!(wa <= wb);
            }
        }

        /// Both drivers name the same hierarchy: same depth, same leaf identity.
        #[test]
        fn drivers_agree_on_depth(uid in "[a-f0-9]{8}-[a-f0-9]{4}", q in 0usize..3) {
            let qos = [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort][q];
            let n = CgroupLayout::default().pod(qos, &uid);
            let fs = n.to_cgroupfs();
            let sd = n.to_systemd();
            prop_assert_eq!(fs.matches('/').count(), sd.matches('/').count());
            let (sd_leaf, fs_leaf) = (format!("pod{}.slice", uid.replace('-', "_")), format!("pod{uid}"));
            prop_assert!(sd.ends_with(&sd_leaf), "{}", sd);
            prop_assert!(fs.ends_with(&fs_leaf), "{}", fs);
        }
    }

    #[test]
    fn the_runtime_driver_comes_from_containerds_config() {
        let cfg = |opts: &str, ty: &str| {
            format!(
                r#"{{"containerd":{{"snapshotter":"overlayfs","defaultRuntimeName":"runc","runtimes":{{"runc":{{"runtimeType":"{ty}","options":{opts}}}}}}},"cni":{{}}}}"#
            )
        };
        let rc = "io.containerd.runc.v2";
        assert_eq!(
            runtime_cgroup_driver(&cfg(r#"{"SystemdCgroup":true}"#, rc)),
            Some(Driver::Systemd)
        );
        assert_eq!(
            runtime_cgroup_driver(&cfg(r#"{"SystemdCgroup":false}"#, rc)),
            Some(Driver::Cgroupfs)
        );
        // runc's default is cgroupfs.
        assert_eq!(
            runtime_cgroup_driver(&cfg("{}", rc)),
            Some(Driver::Cgroupfs)
        );
        assert_eq!(
            runtime_cgroup_driver(&cfg("null", rc)),
            Some(Driver::Cgroupfs)
        );
        // Another runtime, or no config to read: unknown.
        assert_eq!(
            runtime_cgroup_driver(&cfg("{}", "io.containerd.kata.v2")),
            None
        );
        assert_eq!(runtime_cgroup_driver("not json"), None);
        assert_eq!(runtime_cgroup_driver("{}"), None);
    }

    #[test]
    fn the_burstable_tier_weighs_its_pods_requests() {
        let spec = |res: serde_json::Value| -> PodSpec {
            serde_json::from_value(serde_json::json!({"containers": [
                {"name": "c", "image": "i", "resources": res}]}))
            .unwrap_or_default()
        };
        let b1 = spec(serde_json::json!({"requests": {"cpu": "250m"}}));
        let b2 = spec(serde_json::json!({"requests": {"cpu": "1", "memory": "1Mi"}}));
        let g = spec(serde_json::json!({"limits": {"cpu": "2", "memory": "1Mi"}}));
        let be = spec(serde_json::json!({}));
        // 1250m of Burstable requests; Guaranteed and BestEffort pods do not count.
        assert_eq!(burstable_shares([&b1, &b2, &g, &be]), 1280);
        // No Burstable pods: the least weight.
        assert_eq!(burstable_shares([&g, &be]), MIN_SHARES);
        assert_eq!(burstable_shares([]), MIN_SHARES);
    }
}
