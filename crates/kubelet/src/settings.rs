//! Everything settled before the kubelet starts: flags and the config file resolved and
//! validated, with errors that name what is wrong; the host checks upstream makes first.

use crate::options::{self, KubeletFlags, Parsed};
use kubelet_config::{self as config, ConfigError, KubeletConfiguration};
use kubelet_cri::CriError;
use kubelet_host::{Host, HostError, RealHost};
use std::net::IpAddr;
use thiserror::Error;
use tracing::info;

#[derive(Debug, Error)]
pub enum KubeletError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid flag --{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskExit),
    #[error("container runtime: {0}")]
    Runtime(#[from] CriError),
    #[error("host: {0}")]
    Host(#[from] HostError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("kubelet API server: {0}")]
    Server(String),
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("serving certificate: {0}")]
    Cert(#[from] crate::certificate::CertError),
    #[error("kernel settings: {0}")]
    Kernel(String),
    #[error("graceful node shutdown: {0}")]
    NodeShutdown(String),
    #[error("cgroup driver: {0}")]
    CgroupDriver(String),
    #[error("cgroups: {0}")]
    Cgroups(#[from] kubelet_host::cgroups::CgroupSetupError),
    /// The `cgroupRoot` is not there (in every managed hierarchy under cgroup v1).
    #[error("invalid configuration: cgroup-root {root:?} doesn't exist (missing: {})", .missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    CgroupRoot {
        root: String,
        missing: Vec<std::path::PathBuf>,
    },
    /// A setting this kubelet cannot honour yet: refused rather than silently weakened.
    #[error("{setting} is not supported: {reason}")]
    Unsupported {
        setting: &'static str,
        reason: &'static str,
    },
}

/// A kernel tunable that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TunableError {
    #[error(transparent)]
    Read(HostError),
    #[error("{0}: {1}")]
    Parse(&'static str, std::num::ParseIntError),
}

/// Upstream's `setupKernelTunables`: with `protect`, a kernel setting that differs from what
/// the kubelet expects is an error; without, the kubelet sets it.
pub fn setup_kernel_tunables(host: &dyn Host, protect: bool) -> Result<(), KubeletError> {
    use kubelet_core::kernel::{KERNEL_TUNABLES, plan};
    let path = |f: &str| std::path::Path::new("/proc/sys").join(f);
    let current: Vec<(&'static str, Result<i64, TunableError>)> = KERNEL_TUNABLES
        .iter()
        .map(|(f, _)| {
            let v = host
                .read_to_string(&path(f))
                .map_err(TunableError::Read)
                .and_then(|t| {
                    t.trim()
                        .parse::<i64>()
                        .map_err(|e| TunableError::Parse(f, e))
                });
            (*f, v)
        })
        .collect();
    let (set, mut errors) = plan(&current, protect);
    for (flag, value) in set {
        info!(flag, value, "updating kernel flag");
        if let Err(e) = host.write_string(&path(flag), &value.to_string()) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(KubeletError::Kernel(errors.join(", ")))
    }
}

/// Everything resolved from flags and the config file before anything starts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub flags: KubeletFlags,
    pub config: KubeletConfiguration,
    pub node_name: String,
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// What the Node is created with: taints, schedulability, provider ID.
    pub registration: kubelet_core::nodestatus::Registration,
    /// To log once logging is set up (its format is in the config): the command line's
    /// deprecations and no-ops, then the config's ignored and unknown fields.
    pub warnings: Vec<String>,
}

/// Reads and validates flags and the config file; every error names what is wrong.
/// KubeletConfiguration flags are written over the file (or the defaults, without
/// `--config`) before it is read, so they win and are honoured, ignored or refused as the
/// file's fields are. The warnings are the caller's to log.
pub fn settings(parsed: Parsed) -> Result<Settings, KubeletError> {
    let Parsed {
        flags,
        overlay,
        mut warnings,
    } = parsed;
    let loaded =
        config::load_with_overlay(flags.config.as_deref().map(std::path::Path::new), &overlay)?;
    for f in &loaded.unsupported {
        let by: Vec<String> = overlay
            .iter()
            .filter(|o| o.path.first() == Some(&f.as_str()))
            .map(|o| format!("--{}", o.flag))
            .collect();
        if by.is_empty() {
            warnings.push(format!(
                "KubeletConfiguration field {f} is not yet supported; ignored"
            ));
        } else {
            warnings.push(format!(
                "KubeletConfiguration field {f} (set by {}) is not yet supported; ignored",
                by.join(" ")
            ));
        }
    }
    for f in &loaded.unknown {
        warnings.push(format!("unknown KubeletConfiguration field {f}; ignored"));
    }
    let cfg = loaded.config;
    if flags.bootstrap_kubeconfig.is_some() && flags.kubeconfig.is_none() {
        return Err(KubeletError::Flag {
            flag: "bootstrap-kubeconfig",
            message: "needs --kubeconfig, where the bootstrapped client configuration is written"
                .into(),
        });
    }
    if flags.container_runtime != "remote" {
        return Err(KubeletError::Flag {
            flag: "container-runtime",
            message: format!(
                "{:?} is not supported; use remote (CRI)",
                flags.container_runtime
            ),
        });
    }
    let runtime_socket = kubelet_cri::remote::socket_path(&flags.container_runtime_endpoint)
        .map_err(|e| KubeletError::Flag {
            flag: "container-runtime-endpoint",
            message: e.to_string(),
        })?;
    if let Some(image) = &flags.image_service_endpoint {
        let socket = kubelet_cri::remote::socket_path(image).map_err(|e| KubeletError::Flag {
            flag: "image-service-endpoint",
            message: e.to_string(),
        })?;
        if socket != runtime_socket {
            return Err(KubeletError::Flag {
                flag: "image-service-endpoint",
                message: format!(
                    "a separate image service is not supported yet: it must be the runtime's endpoint ({})",
                    flags.container_runtime_endpoint
                ),
            });
        }
    }
    if flags.exit_on_lock_contention && flags.lock_file.is_none() {
        return Err(KubeletError::Flag {
            flag: "exit-on-lock-contention",
            message: "cannot exit on lock file contention: no lock file specified".into(),
        });
    }
    if let Some(f) = &flags.lock_file {
        return Err(KubeletError::Flag {
            flag: "lock-file",
            message: format!("{f}: not supported yet (the kubelet's file lock is not built)"),
        });
    }
    // Refuse a bad taint before anything starts.
    let taints = flags.taints().map_err(|message| KubeletError::Flag {
        flag: "register-with-taints",
        message,
    })?;
    let registration = kubelet_core::nodestatus::Registration {
        taints: taints.iter().map(|t| t.to_k8s()).collect(),
        unschedulable: !flags.register_schedulable,
        provider_id: cfg.provider_id.clone(),
    };
    if let Some(ip) = &flags.node_ip {
        for part in ip.split(',') {
            part.trim()
                .parse::<IpAddr>()
                .map_err(|_| KubeletError::Flag {
                    flag: "node-ip",
                    message: format!("{part:?} is not an IP address"),
                })?;
        }
    }
    let node_labels = options::node_labels(&flags.node_labels).map_err(|e| KubeletError::Flag {
        flag: "node-labels",
        message: e.to_string(),
    })?;
    let node_name = match &flags.hostname_override {
        Some(h) if !h.trim().is_empty() => h.trim().to_lowercase(),
        Some(_) => {
            return Err(KubeletError::Flag {
                flag: "hostname-override",
                message: "must not be empty".into(),
            });
        }
        None => RealHost.machine_info()?.hostname,
    };
    Ok(Settings {
        flags,
        config: cfg,
        node_name,
        node_labels,
        registration,
        warnings,
    })
}

pub(crate) fn swap_in_use(host: &dyn Host) -> bool {
    host.read_to_string(std::path::Path::new("/proc/swaps"))
        .is_ok_and(|s| s.lines().count() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_host::FakeHost;

    fn host_with(overcommit: &str) -> FakeHost {
        let h = FakeHost::default();
        for (f, v) in kubelet_core::kernel::KERNEL_TUNABLES {
            let v = if *f == "vm/overcommit_memory" {
                overcommit.to_string()
            } else {
                format!("{v}\n")
            };
            let _ = h.write_string(&std::path::Path::new("/proc/sys").join(f), &v);
        }
        h
    }

    #[test]
    fn kernel_tunables_are_set_or_protected() {
        let h = host_with("0\n");
        let e = setup_kernel_tunables(&h, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "kernel settings: invalid kernel flag: vm/overcommit_memory, expected value: 1, actual value: 0"
        );
        // Not protected: set, after which protection passes.
        setup_kernel_tunables(&h, false).unwrap();
        let path = std::path::Path::new("/proc/sys/vm/overcommit_memory");
        assert_eq!(h.read_to_string(path).unwrap(), "1");
        setup_kernel_tunables(&h, true).unwrap();
        // Unreadable: an error either way.
        assert!(setup_kernel_tunables(&FakeHost::default(), false).is_err());
    }

    fn flags(extra: &[&str]) -> Parsed {
        let mut argv = vec!["--hostname-override", "Node-A"];
        argv.extend_from_slice(extra);
        options::parse(argv).unwrap()
    }

    #[test]
    fn the_node_name_is_the_override_in_lower_case() {
        let s = settings(flags(&[])).unwrap();
        assert_eq!(s.node_name, "node-a");
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let err = |extra: &[&str]| settings(flags(extra)).unwrap_err().to_string();
        assert_eq!(
            err(&["--container-runtime", "docker"]),
            "invalid flag --container-runtime: \"docker\" is not supported; use remote (CRI)"
        );
        assert_eq!(
            err(&["--node-ip", "10.0.0.1,nope"]),
            "invalid flag --node-ip: \"nope\" is not an IP address"
        );
        assert!(
            err(&["--cgroup-driver", "upstart"]).starts_with(
                "invalid flag --cgroup-driver: cgroupDriver: unknown variant `upstart`"
            ),
        );
        assert_eq!(
            err(&["--image-service-endpoint", "/run/other.sock"]),
            "invalid flag --image-service-endpoint: a separate image service is not supported yet: it must be the runtime's endpoint (unix:///run/containerd/containerd.sock)"
        );
        assert!(
            settings(flags(&[
                "--image-service-endpoint",
                "/run/containerd/containerd.sock"
            ]))
            .is_ok()
        );
        assert_eq!(
            err(&["--lock-file", "/run/kubelet.lock"]),
            "invalid flag --lock-file: /run/kubelet.lock: not supported yet (the kubelet's file lock is not built)"
        );
        assert_eq!(
            err(&["--exit-on-lock-contention"]),
            "invalid flag --exit-on-lock-contention: cannot exit on lock file contention: no lock file specified"
        );
        assert_eq!(
            err(&["--image-gc-high-threshold=70"]),
            "invalid flag --image-gc-high-threshold: imageGCLowThresholdPercent: invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 80 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 70"
        );
        // A cgroup root is honoured under cgroupfs (the default driver), refused under systemd.
        assert!(settings(flags(&["--cgroup-root=/kadm-n1"])).is_ok());
        assert!(err(&["--cgroup-root=kadm-n1"]).starts_with(
            "invalid flag --cgroup-root: cgroupRoot: \"kadm-n1\" must be an absolute"
        ));
        assert!(
            err(&["--cgroup-driver=systemd", "--cgroup-root=/kadm-n1"])
                .contains("is not supported by kubelet-rs with cgroupDriver systemd yet")
        );
        // Taints, providerID... are the registration's: accepted (providerID refused only as
        // the config field it is, until it is built).
        let bad = KubeletFlags {
            register_with_taints: vec!["a=b".into()],
            hostname_override: Some("n".into()),
            ..Default::default()
        };
        assert!(
            settings(Parsed::from_flags(bad))
                .unwrap_err()
                .to_string()
                .starts_with("invalid flag --register-with-taints: invalid taint spec \"a=b\": missing effect")
        );
        assert!(
            err(&["--node-labels", "kubernetes.io/role=x"])
                .starts_with("invalid flag --node-labels: unknown 'kubernetes.io'")
        );
        assert_eq!(
            err(&[
                "--bootstrap-kubeconfig",
                "/etc/kubernetes/bootstrap-kubelet.conf"
            ]),
            "invalid flag --bootstrap-kubeconfig: needs --kubeconfig, where the bootstrapped client configuration is written"
        );
        // With the kubeconfig in place, upstream does not bootstrap either.
        let kc = std::env::temp_dir().join(format!("krs-bootstrap-{}", std::process::id()));
        std::fs::write(&kc, "").unwrap();
        let kc_s = kc.display().to_string();
        assert!(
            settings(flags(&[
                "--bootstrap-kubeconfig",
                "/nonexistent",
                "--kubeconfig",
                &kc_s
            ]))
            .is_ok()
        );
        let _ = std::fs::remove_file(&kc);
        // The systemd driver is taken (whether systemd is there is checked at start).
        assert_eq!(
            settings(flags(&["--cgroup-driver", "systemd"]))
                .unwrap()
                .config
                .cgroup_driver,
            kubelet_config::CgroupDriver::Systemd
        );
    }

    #[test]
    fn an_empty_hostname_override_is_refused() {
        let f = options::parse(["--hostname-override", " "]).unwrap();
        assert_eq!(
            settings(f).unwrap_err().to_string(),
            "invalid flag --hostname-override: must not be empty"
        );
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let s = settings(flags(&["--max-pods", "7", "--fail-swap-on=false"])).unwrap();
        assert_eq!(s.config.max_pods, 7);
        assert!(!s.config.fail_swap_on);
        let dir = std::env::temp_dir().join(format!("krs-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 20\nport: 10260\n",
        )
        .unwrap();
        let config = format!("--config={}", file.display());
        let s = settings(flags(&[&config, "--max-pods=30"])).unwrap();
        assert_eq!((s.config.max_pods, s.config.port), (30, 10260));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
