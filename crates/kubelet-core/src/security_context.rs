//! Pod and container security contexts resolved to what the runtime is asked for, as
//! upstream's `pkg/securitycontext` and `kuberuntime/security_context.go` decide it. The
//! CRI messages are built from these in kuberuntime.

use crate::format::pod_desc;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SELinuxOptions, SeccompProfile, SecurityContext,
};

/// Paths the runtime masks unless `procMount: Unmasked`.
pub const DEFAULT_MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
/// Paths the runtime mounts read-only unless `procMount: Unmasked`.
pub const DEFAULT_READONLY_PATHS: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's settings, falling back to the pod's for the fields both have.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub se_linux: Option<SELinuxOptions>,
    pub seccomp: Option<SeccompProfile>,
}

fn pod_sc(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref().and_then(|s| s.security_context.as_ref())
}

pub fn effective(pod: &Pod, c: &Container) -> Effective {
    let p = pod_sc(pod);
    let s: Option<&SecurityContext> = c.security_context.as_ref();
    Effective {
        run_as_user: s
            .and_then(|s| s.run_as_user)
            .or(p.and_then(|p| p.run_as_user)),
        run_as_group: s
            .and_then(|s| s.run_as_group)
            .or(p.and_then(|p| p.run_as_group)),
        run_as_non_root: s
            .and_then(|s| s.run_as_non_root)
            .or(p.and_then(|p| p.run_as_non_root)),
        se_linux: s
            .and_then(|s| s.se_linux_options.clone())
            .or(p.and_then(|p| p.se_linux_options.clone())),
        seccomp: s
            .and_then(|s| s.seccomp_profile.clone())
            .or(p.and_then(|p| p.seccomp_profile.clone())),
    }
}

/// A container runAsNonRoot refuses; the text is the CreateContainerConfigError message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonRootError {
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
    )]
    ImageRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
    )]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
}

/// runAsNonRoot against the image's user: `uid` when numeric, else `username`; neither
/// means root.
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    uid: Option<i64>,
    username: &str,
) -> Result<(), NonRootError> {
    let e = effective(pod, c);
    if e.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(u) = e.run_as_user {
        if u == 0 {
            return Err(NonRootError::RunAsRoot {
                pod: pod_desc(pod),
                container: c.name.clone(),
            });
        }
        return Ok(());
    }
    match (uid, username) {
        (Some(0), _) | (None, "") => Err(NonRootError::ImageRoot {
            pod: pod_desc(pod),
            container: c.name.clone(),
        }),
        (None, name) => Err(NonRootError::NonNumericUser {
            user: name.into(),
            pod: pod_desc(pod),
            container: c.name.clone(),
        }),
        _ => Ok(()),
    }
}

/// A seccomp profile the runtime understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

/// `None` leaves the runtime's default (unconfined in 1.20); an unknown type is ignored as
/// API validation refuses it before it reaches the node.
fn seccomp(p: Option<&SeccompProfile>) -> Option<Seccomp> {
    let p = p?;
    match p.type_.as_str() {
        "RuntimeDefault" => Some(Seccomp::RuntimeDefault),
        "Unconfined" => Some(Seccomp::Unconfined),
        "Localhost" => Some(Seccomp::Localhost(
            p.localhost_profile.clone().unwrap_or_default(),
        )),
        _ => None,
    }
}

/// fsGroup, then the pod's supplementalGroups.
pub fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let p = pod_sc(pod);
    let mut g: Vec<i64> = p.and_then(|p| p.fs_group).into_iter().collect();
    g.extend(
        p.and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default(),
    );
    g
}

/// What a container runs with.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ContainerSecurity {
    /// `(add, drop)` when the container lists capabilities.
    pub capabilities: Option<(Vec<String>, Vec<String>)>,
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub readonly_rootfs: bool,
    pub supplemental_groups: Vec<i64>,
    pub no_new_privs: bool,
    pub seccomp: Option<Seccomp>,
    pub se_linux: Option<SELinuxOptions>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

pub fn container_security(pod: &Pod, c: &Container) -> ContainerSecurity {
    let e = effective(pod, c);
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let paths = |list: &[&str]| {
        if unmasked {
            vec![]
        } else {
            list.iter().map(|s| s.to_string()).collect()
        }
    };
    ContainerSecurity {
        capabilities: sc.and_then(|s| s.capabilities.as_ref()).map(|caps| {
            (
                caps.add.clone().unwrap_or_default(),
                caps.drop.clone().unwrap_or_default(),
            )
        }),
        privileged,
        run_as_user: e.run_as_user,
        run_as_group: e.run_as_group,
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        // Upstream sets no_new_privs only when privilege escalation is explicitly refused.
        no_new_privs: !privileged && sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: seccomp(e.seccomp.as_ref()),
        se_linux: e.se_linux,
        masked_paths: paths(&DEFAULT_MASKED_PATHS),
        readonly_paths: paths(&DEFAULT_READONLY_PATHS),
    }
}

/// What the pod sandbox runs with: the pod's settings only, privileged if any container is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SandboxSecurity {
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub seccomp: Option<Seccomp>,
    pub se_linux: Option<SELinuxOptions>,
}

pub fn sandbox_security(pod: &Pod) -> SandboxSecurity {
    let p = pod_sc(pod);
    let privileged = pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| {
                c.security_context
                    .as_ref()
                    .and_then(|sc| sc.privileged)
                    .unwrap_or(false)
            })
    });
    SandboxSecurity {
        privileged,
        run_as_user: p.and_then(|p| p.run_as_user),
        run_as_group: p.and_then(|p| p.run_as_group),
        supplemental_groups: supplemental_groups(pod),
        seccomp: seccomp(p.and_then(|p| p.seccomp_profile.as_ref())),
        se_linux: p.and_then(|p| p.se_linux_options.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pod(pod_sc: serde_json::Value, c_sc: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"securityContext": pod_sc, "containers": [{"name": "c", "securityContext": c_sc}]}
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn mapping() {
        let (p, c) = pod(
            serde_json::json!({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000],
                               "seccompProfile": {"type": "RuntimeDefault"}}),
            serde_json::json!({"runAsUser": 1001, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                               "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
        );
        let sc = container_security(&p, &c);
        assert_eq!(sc.run_as_user, Some(1001));
        assert_eq!(sc.run_as_group, Some(3000));
        assert_eq!(sc.supplemental_groups, vec![2000, 4000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(
            sc.capabilities,
            Some((vec!["NET_ADMIN".into()], vec!["ALL".into()]))
        );
        assert_eq!(sc.seccomp, Some(Seccomp::RuntimeDefault));
        assert_eq!(sc.masked_paths.len(), 9);
        let (p, c) = pod(
            serde_json::json!({}),
            serde_json::json!({"procMount": "Unmasked", "privileged": true, "allowPrivilegeEscalation": false}),
        );
        let sc = container_security(&p, &c);
        assert!(sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
        assert!(!sc.no_new_privs, "privileged wins");
    }

    #[test]
    fn sandbox_takes_the_pods_settings_and_any_privileged_container() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "securityContext": {"runAsUser": 7, "seLinuxOptions": {"level": "s0:c1"},
                                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
                "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
                "containers": [{"name": "c", "securityContext": {"runAsUser": 9}}]
            }
        }))
        .unwrap();
        let s = sandbox_security(&p);
        assert!(s.privileged, "an init container's privilege counts");
        assert_eq!(s.run_as_user, Some(7), "containers' users do not");
        assert_eq!(s.seccomp, Some(Seccomp::Localhost("p.json".into())));
        assert_eq!(s.se_linux.and_then(|o| o.level).as_deref(), Some("s0:c1"));
        let (p, _) = pod(serde_json::json!({}), serde_json::json!({}));
        assert_eq!(sandbox_security(&p), SandboxSecurity::default());
    }

    #[test]
    fn run_as_non_root() {
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({}),
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, None, "")
                .unwrap_err()
                .to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        assert!(verify_run_as_non_root(&p, &c, Some(0), "").is_err());
        assert!(verify_run_as_non_root(&p, &c, Some(1000), "").is_ok());
        assert!(
            verify_run_as_non_root(&p, &c, None, "nobody")
                .unwrap_err()
                .to_string()
                .contains("non-numeric user (nobody)")
        );
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({"runAsUser": 0}),
        );
        assert!(
            verify_run_as_non_root(&p, &c, Some(1000), "")
                .unwrap_err()
                .to_string()
                .starts_with("container's runAsUser breaks non-root policy")
        );
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true, "runAsUser": 5}),
            serde_json::json!({}),
        );
        assert!(verify_run_as_non_root(&p, &c, Some(0), "").is_ok());
        let (p, c) = pod(serde_json::json!({}), serde_json::json!({}));
        assert!(verify_run_as_non_root(&p, &c, Some(0), "").is_ok());
    }

    fn opt<T: std::fmt::Debug + Clone + 'static>(
        s: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<Option<T>> {
        prop::option::of(s).boxed()
    }

    proptest! {
        /// The container's value wins over the pod's, field by field.
        #[test]
        fn container_overrides_pod(
            pu in opt(0i64..70000), cu in opt(0i64..70000),
            pg in opt(0i64..70000), cg in opt(0i64..70000),
            pn in opt(any::<bool>()), cn in opt(any::<bool>()),
        ) {
            let (p, c) = pod(
                serde_json::json!({"runAsUser": pu, "runAsGroup": pg, "runAsNonRoot": pn}),
                serde_json::json!({"runAsUser": cu, "runAsGroup": cg, "runAsNonRoot": cn}),
            );
            let e = effective(&p, &c);
            prop_assert_eq!(e.run_as_user, cu.or(pu));
            prop_assert_eq!(e.run_as_group, cg.or(pg));
            prop_assert_eq!(e.run_as_non_root, cn.or(pn));
            prop_assert_eq!(container_security(&p, &c).run_as_user, cu.or(pu));
        }

        /// no_new_privs only when escalation is refused and the container is not privileged.
        #[test]
        fn no_new_privs_rule(privileged in opt(any::<bool>()), escalate in opt(any::<bool>())) {
            let (p, c) = pod(
                serde_json::json!({}),
                serde_json::json!({"privileged": privileged, "allowPrivilegeEscalation": escalate}),
            );
            let sc = container_security(&p, &c);
            prop_assert_eq!(sc.privileged, privileged == Some(true));
            prop_assert_eq!(sc.no_new_privs, privileged != Some(true) && escalate == Some(false));
        }

        /// runAsNonRoot never admits a container known to run as uid 0.
        #[test]
        fn non_root_never_admits_root(
            pu in opt(0i64..3), cu in opt(0i64..3), image_uid in opt(0i64..3),
            username in prop::sample::select(vec!["", "root", "nobody"]),
        ) {
            let (p, c) = pod(
                serde_json::json!({"runAsNonRoot": true, "runAsUser": pu}),
                serde_json::json!({"runAsUser": cu}),
            );
            let runs_as = cu.or(pu).or(image_uid);
            let ok = verify_run_as_non_root(&p, &c, image_uid, username).is_ok();
            prop_assert_eq!(ok, runs_as.is_some_and(|u| u != 0));
        }
    }
}
