//! The node side of the container manager (upstream `pkg/kubelet/cm`): the host's cgroup
//! layout and driver, the kubepods and QoS cgroups, and the runtime agreeing with our driver.

use crate::settings::KubeletError;
use kubelet_config::KubeletConfiguration;
use kubelet_core::cm::{CgroupLayout, Driver, MIN_SHARES, milli_cpu_to_shares};
use kubelet_core::machine::MachineInfo;
use kubelet_core::qos::QosClass;
use kubelet_cri::RuntimeService;
use kubelet_host::cgroups::{CGROUP_ROOT, Cgroups, PodLimits, SystemdCgroups, detect, manager};
use std::path::Path;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Where systemd says it is running as the init system (`sd_booted(3)`).
const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// Detects the layout, picks the driver's manager and makes kubepods and the QoS tiers under
/// the `cgroupRoot`. Pods cannot get their limits without these, so any failure stops the
/// start.
pub(crate) async fn setup_cgroups(
    cfg: &KubeletConfiguration,
    machine: &MachineInfo,
) -> Result<Arc<dyn Cgroups>, KubeletError> {
    let driver = cfg.cgroup_driver;
    let layout = cfg.cgroup_layout();
    // Validated at load; a slice-form root under systemd is not built.
    if driver == Driver::Systemd && layout != CgroupLayout::default() {
        return Err(KubeletError::CgroupDriver(format!(
            "cgroupRoot {:?} is not supported with cgroupDriver systemd yet; use cgroupDriver: cgroupfs",
            cfg.cgroup_root
        )));
    }
    let root = Path::new(CGROUP_ROOT);
    let version = detect(root)?;
    info!(?version, ?driver, cgroup_root = %layout.root().to_cgroupfs(), "cgroups");
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
    make_qos_tiers(cgroups.as_ref(), &layout, machine, &cfg.reserved()).await?;
    Ok(cgroups)
}

/// Checks the root is there (upstream refuses to start otherwise: the kubelet does not make
/// the root, whoever set it does) and makes kubepods and the QoS tiers under it.
async fn make_qos_tiers(
    cgroups: &dyn Cgroups,
    layout: &CgroupLayout,
    machine: &MachineInfo,
    reserved: &kubelet_core::nodestatus::Reserved,
) -> Result<(), KubeletError> {
    let root = layout.root().to_cgroupfs();
    let missing = cgroups.missing(&root);
    if !missing.is_empty() {
        return Err(KubeletError::CgroupRoot { root, missing });
    }
    for (name, limits) in qos_tiers(layout, machine, reserved) {
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
    Ok(())
}

/// kubepods holds all pods to the node's capacity less `kubeReserved` and `systemReserved`
/// (`enforceNodeAllocatable: [pods]`, the only value accepted; no eviction thresholds, as
/// upstream); best-effort pods share the minimum weight.
fn qos_tiers(
    layout: &CgroupLayout,
    machine: &MachineInfo,
    reserved: &kubelet_core::nodestatus::Reserved,
) -> [(kubelet_core::cm::CgroupName, PodLimits); 3] {
    [
        (
            layout.kubepods(),
            PodLimits {
                cpu_shares: Some(milli_cpu_to_shares(i128::from(reserved.cpu_left(machine)))),
                memory_limit: i64::try_from(reserved.memory_left(machine)).ok(),
                ..Default::default()
            },
        ),
        (layout.qos(QosClass::Burstable), PodLimits::default()),
        (
            layout.qos(QosClass::BestEffort),
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
/// `active_pods` are the pod workers' (`PodWorkers::active_pods`).
pub(crate) async fn update_qos_tiers(
    cgroups: Arc<dyn Cgroups>,
    layout: CgroupLayout,
    active_pods: impl Fn() -> Vec<k8s_openapi::api::core::v1::Pod> + Send + 'static,
    kick: Arc<tokio::sync::Notify>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let burstable = layout.qos(QosClass::Burstable).to_cgroupfs();
    let mut written = None;
    loop {
        let pods = active_pods();
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
    use kubelet_host::cgroups::FakeCgroups;

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

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cpus: 2,
            memory_bytes: 4 << 30,
            ..Default::default()
        }
    }

    fn made(cg: &FakeCgroups) -> Vec<(String, PodLimits)> {
        cg.state
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[tokio::test]
    async fn qos_tiers_are_made_under_the_cgroup_root() {
        let layout = CgroupLayout::new("/kadm-n1").unwrap();
        let cg = FakeCgroups::default();
        // The root is the operator's to make: missing, the start stops, naming it.
        let e = make_qos_tiers(&cg, &layout, &machine(), &Default::default())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"invalid configuration: cgroup-root "/kadm-n1" doesn't exist (missing: /kadm-n1)"#
        );
        assert!(made(&cg).is_empty(), "nothing made without the root");
        cg.ensure("/kadm-n1", &PodLimits::default()).await.unwrap();
        make_qos_tiers(&cg, &layout, &machine(), &Default::default())
            .await
            .unwrap();
        let names: Vec<String> = made(&cg).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "/kadm-n1",
                "/kadm-n1/kubepods",
                "/kadm-n1/kubepods/besteffort",
                "/kadm-n1/kubepods/burstable"
            ]
        );
        let kp = cg.state.lock().unwrap()["/kadm-n1/kubepods"].clone();
        assert_eq!(kp.cpu_shares, Some(2048));
        assert_eq!(kp.memory_limit, Some(4 << 30));
    }

    #[tokio::test]
    async fn a_cgroup_root_is_refused_under_systemd() {
        // Before anything is read from the host.
        let cfg = KubeletConfiguration {
            cgroup_driver: Driver::Systemd,
            cgroup_root: "/kadm-n1".into(),
            ..Default::default()
        };
        let e = setup_cgroups(&cfg, &machine())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"cgroupRoot "/kadm-n1" is not supported with cgroupDriver systemd"#),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_default_root_keeps_todays_names() {
        for root in ["", "/"] {
            let layout = CgroupLayout::new(root).unwrap();
            let cg = FakeCgroups::default();
            // The host's root cgroup is always there (the fake knows no paths: it answers
            // by what it holds, so hold "/").
            cg.ensure("/", &PodLimits::default()).await.unwrap();
            make_qos_tiers(&cg, &layout, &machine(), &Default::default())
                .await
                .unwrap();
            let names: Vec<String> = made(&cg).into_iter().map(|(k, _)| k).collect();
            assert_eq!(
                names,
                [
                    "/",
                    "/kubepods",
                    "/kubepods/besteffort",
                    "/kubepods/burstable"
                ]
            );
        }
    }

    #[tokio::test]
    async fn the_burstable_tier_under_the_root_follows_its_pods() {
        let cg = Arc::new(FakeCgroups::default());
        let pods: Arc<std::sync::Mutex<Vec<k8s_openapi::api::core::v1::Pod>>> = Default::default();
        let kick = Arc::new(tokio::sync::Notify::new());
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(update_qos_tiers(
            cg.clone(),
            CgroupLayout::new("/kadm-n2").unwrap(),
            {
                let pods = pods.clone();
                move || pods.lock().unwrap().clone()
            },
            kick.clone(),
            cancel.clone(),
        ));
        let shares = |cg: &FakeCgroups| {
            cg.state
                .lock()
                .unwrap()
                .get("/kadm-n2/kubepods/burstable")
                .and_then(|l| l.cpu_shares)
        };
        let wait = |want: u64| {
            let cg = cg.clone();
            async move {
                for _ in 0..200 {
                    if shares(&cg) == Some(want) {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                panic!("burstable shares never became {want}: {:?}", shares(&cg));
            }
        };
        wait(MIN_SHARES).await;
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "u"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}
        }))
        .unwrap();
        pods.lock().unwrap().push(pod);
        kick.notify_one();
        wait(512).await;
        assert!(
            !cg.state.lock().unwrap().contains_key("/kubepods/burstable"),
            "nothing outside the root"
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn kubepods_is_held_to_the_machine() {
        let m = MachineInfo {
            num_cpus: 2,
            memory_bytes: 4 << 30,
            ..Default::default()
        };
        let [(kp, l), (b, bl), (be, bel)] =
            qos_tiers(&CgroupLayout::default(), &m, &Default::default());
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
        let [(_, l), ..] = qos_tiers(&CgroupLayout::default(), &m, &r);
        assert_eq!(l.cpu_shares, Some(1536));
        assert_eq!(l.memory_limit, Some(3 << 30));
    }
}
