//! The node side of the container manager (upstream `pkg/kubelet/cm`): the host's cgroup
//! layout and driver, the kubepods and QoS cgroups, and the runtime agreeing with our driver.

use crate::settings::KubeletError;
use kubelet_config::KubeletConfiguration;
use kubelet_core::cm::{Driver, MIN_SHARES, kubepods, milli_cpu_to_shares, qos_cgroup};
use kubelet_core::machine::MachineInfo;
use kubelet_core::qos::QosClass;
use kubelet_cri::RuntimeService;
use kubelet_host::cgroups::{CGROUP_ROOT, Cgroups, PodLimits, SystemdCgroups, detect, manager};
use std::path::Path;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Where systemd says it is running as the init system (`sd_booted(3)`).
const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// Detects the layout, picks the driver's manager and makes kubepods and the QoS tiers.
/// Pods cannot get their limits without these, so any failure stops the start.
pub(crate) async fn setup_cgroups(
    cfg: &KubeletConfiguration,
    machine: &MachineInfo,
) -> Result<Arc<dyn Cgroups>, KubeletError> {
    let root = Path::new(CGROUP_ROOT);
    let version = detect(root)?;
    let driver = cfg.cgroup_driver;
    info!(?version, ?driver, "cgroups");
    let cgroups: Arc<dyn Cgroups> = match driver {
        Driver::Cgroupfs => manager(version, root),
        Driver::Systemd => {
            if !Path::new(SYSTEMD_RUN_DIR).is_dir() {
                return Err(KubeletError::CgroupDriver(format!(
                    "cgroupDriver is systemd but systemd is not the init system ({SYSTEMD_RUN_DIR} is missing); use cgroupDriver: cgroupfs"
                )));
            }
            let sd = SystemdCgroups::connect(version, root)
                .await
                .map_err(|e| KubeletError::CgroupDriver(e.to_string()))?;
            Arc::new(sd)
        }
    };
    for (name, limits) in qos_tiers(machine, &cfg.reserved()) {
        let path = name.to_cgroupfs();
        cgroups
            .ensure(&path, &limits)
            .await
            .map_err(|source| KubeletError::Io {
                what: "creating QoS cgroup",
                path,
                source,
            })?;
    }
    Ok(cgroups)
}

/// kubepods holds all pods to the node's capacity less `kubeReserved` and `systemReserved`
/// (`enforceNodeAllocatable: [pods]`, the only value accepted; no eviction thresholds, as
/// upstream); best-effort pods share the minimum weight.
fn qos_tiers(
    machine: &MachineInfo,
    reserved: &kubelet_core::nodestatus::Reserved,
) -> [(kubelet_core::cm::CgroupName, PodLimits); 3] {
    [
        (
            kubepods(),
            PodLimits {
                cpu_shares: Some(milli_cpu_to_shares(i128::from(reserved.cpu_left(machine)))),
                memory_limit: i64::try_from(reserved.memory_left(machine)).ok(),
                ..Default::default()
            },
        ),
        (qos_cgroup(QosClass::Burstable), PodLimits::default()),
        (
            qos_cgroup(QosClass::BestEffort),
            PodLimits {
                cpu_shares: Some(MIN_SHARES),
                ..Default::default()
            },
        ),
    ]
}

/// The runtime must put containers where we put their pods: containerd's runc with
/// `SystemdCgroup` under the systemd driver, without it under cgroupfs. A mismatch would
/// fail every sandbox ("invalid slice name") or leave pods outside their limits, so it
/// stops the start; a runtime that does not say is only warned about.
pub(crate) async fn check_runtime_driver(
    rt: &dyn RuntimeService,
    ours: Driver,
) -> Result<(), KubeletError> {
    let info = match rt.status_info().await {
        Ok(info) => info,
        Err(e) => {
            warn!(error = %e, "could not read the runtime's config to check its cgroup driver");
            return Ok(());
        }
    };
    let config = info.get("config");
    let theirs = config.and_then(|c| kubelet_core::cm::runtime_cgroup_driver(c));
    debug!(?config, ?theirs, "the runtime's config");
    match theirs {
        None => {
            warn!(
                "the runtime does not say which cgroup driver it uses; make sure it matches cgroupDriver"
            );
            Ok(())
        }
        Some(d) if d == ours => Ok(()),
        Some(d) => Err(KubeletError::CgroupDriver(format!(
            "the kubelet's cgroupDriver is {} but the runtime uses {} (containerd: SystemdCgroup = {} in the runc options); make them match",
            ours.as_str(),
            d.as_str(),
            d == Driver::Systemd
        ))),
    }
}

/// How often the QoS tiers are brought up to date without a pod change (upstream: 1 min).
const QOS_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps the Burstable tier's shares at its pods' summed CPU requests (upstream
/// `UpdateCgroups`): when a pod cgroup is made or removed (`kick`), and every minute.
pub(crate) async fn update_qos_tiers(
    cgroups: Arc<dyn Cgroups>,
    workers: kubelet_pod::pod_workers::PodWorkers,
    kick: Arc<tokio::sync::Notify>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let burstable = qos_cgroup(QosClass::Burstable).to_cgroupfs();
    let mut written = None;
    loop {
        let pods = workers.active_pods();
        let shares =
            kubelet_core::cm::burstable_shares(pods.iter().filter_map(|p| p.spec.as_ref()));
        if written != Some(shares) {
            let limits = PodLimits {
                cpu_shares: Some(shares),
                ..Default::default()
            };
            match cgroups.ensure(&burstable, &limits).await {
                Ok(()) => {
                    debug!(shares, "burstable QoS tier updated");
                    written = Some(shares);
                }
                Err(e) => warn!(error = %e, "updating the burstable QoS tier failed"),
            }
        }
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(QOS_PERIOD) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_cri::fake::FakeRuntime;

    #[tokio::test]
    async fn a_runtime_on_the_other_driver_stops_the_start() {
        let rt = FakeRuntime::default();
        let cfg = r#"{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2","options":{"SystemdCgroup":true}}}}}"#;
        rt.set_status_info([("config".to_string(), cfg.to_string())].into());
        assert!(check_runtime_driver(&rt, Driver::Systemd).await.is_ok());
        let e = check_runtime_driver(&rt, Driver::Cgroupfs)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cgroupDriver is cgroupfs but the runtime uses systemd"),
            "{e}"
        );
        // Nothing to go by: warned about, not refused.
        rt.set_status_info(Default::default());
        assert!(check_runtime_driver(&rt, Driver::Cgroupfs).await.is_ok());
    }

    #[test]
    fn kubepods_is_held_to_the_machine() {
        let m = MachineInfo {
            num_cpus: 2,
            memory_bytes: 4 << 30,
            ..Default::default()
        };
        let [(kp, l), (b, bl), (be, bel)] = qos_tiers(&m, &Default::default());
        assert_eq!(kp.to_cgroupfs(), "/kubepods");
        assert_eq!(l.cpu_shares, Some(2048));
        assert_eq!(l.memory_limit, Some(4 << 30));
        assert_eq!(b.to_cgroupfs(), "/kubepods/burstable");
        assert_eq!(bl, PodLimits::default());
        assert_eq!(be.to_cgroupfs(), "/kubepods/besteffort");
        assert_eq!(bel.cpu_shares, Some(2));
        // Reservations come off kubepods.
        let r = kubelet_core::nodestatus::Reserved {
            cpu_milli: 500,
            memory: 1 << 30,
            ephemeral_storage: 0,
        };
        let [(_, l), ..] = qos_tiers(&m, &r);
        assert_eq!(l.cpu_shares, Some(1536));
        assert_eq!(l.memory_limit, Some(3 << 30));
    }
}
