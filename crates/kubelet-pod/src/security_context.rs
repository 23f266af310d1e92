//! Pod and container security contexts mapped to CRI, as upstream's
//! `kuberuntime/security_context.go` and `pkg/securitycontext` do.

use crate::lifecycle::pod_desc;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};
use kubelet_cri::api;

const DEFAULT_MASKED_PATHS: [&str; 9] = [
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
const DEFAULT_READONLY_PATHS: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's settings, falling back to the pod's for the fields both have.
#[derive(Debug, Default, Clone)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub se_linux: Option<k8s_openapi::api::core::v1::SELinuxOptions>,
    pub seccomp: Option<SeccompProfile>,
}

pub fn effective(pod: &Pod, c: &Container) -> Effective {
    let p: Option<&PodSecurityContext> =
        pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
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

/// The seccomp profile for CRI; `None` leaves the runtime's default (unconfined in 1.20).
fn seccomp(p: Option<&SeccompProfile>) -> Option<api::SecurityProfile> {
    use api::security_profile::ProfileType;
    let p = p?;
    let (t, r) = match p.type_.as_str() {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => (
            ProfileType::Localhost,
            p.localhost_profile.clone().unwrap_or_default(),
        ),
        _ => return None,
    };
    Some(api::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r,
    })
}

fn selinux(o: Option<&k8s_openapi::api::core::v1::SELinuxOptions>) -> Option<api::SeLinuxOption> {
    o.map(|o| api::SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    })
}

/// fsGroup, then the pod's supplementalGroups.
fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let p = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut g: Vec<i64> = p.and_then(|p| p.fs_group).into_iter().collect();
    g.extend(
        p.and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default(),
    );
    g
}

pub fn container_security_context(
    pod: &Pod,
    c: &Container,
    ns: api::NamespaceOption,
) -> api::LinuxContainerSecurityContext {
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
    api::LinuxContainerSecurityContext {
        capabilities: sc
            .and_then(|s| s.capabilities.as_ref())
            .map(|caps| api::Capability {
                add_capabilities: caps.add.clone().unwrap_or_default(),
                drop_capabilities: caps.drop.clone().unwrap_or_default(),
            }),
        privileged,
        namespace_options: Some(ns),
        selinux_options: selinux(e.se_linux.as_ref()),
        run_as_user: e.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: e.run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        // Upstream sets no_new_privs only when privilege escalation is explicitly refused.
        no_new_privs: !privileged && sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: seccomp(e.seccomp.as_ref()),
        masked_paths: paths(&DEFAULT_MASKED_PATHS),
        readonly_paths: paths(&DEFAULT_READONLY_PATHS),
        ..Default::default()
    }
}

pub fn sandbox_security_context(
    pod: &Pod,
    ns: api::NamespaceOption,
    privileged: bool,
) -> api::LinuxSandboxSecurityContext {
    let p = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    api::LinuxSandboxSecurityContext {
        namespace_options: Some(ns),
        selinux_options: selinux(p.and_then(|p| p.se_linux_options.as_ref())),
        run_as_user: p
            .and_then(|p| p.run_as_user)
            .map(|value| api::Int64Value { value }),
        run_as_group: p
            .and_then(|p| p.run_as_group)
            .map(|value| api::Int64Value { value }),
        supplemental_groups: supplemental_groups(pod),
        privileged,
        seccomp: seccomp(p.and_then(|p| p.seccomp_profile.as_ref())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let sc = container_security_context(&p, &c, api::NamespaceOption::default());
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(1001));
        assert_eq!(sc.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(sc.supplemental_groups, vec![2000, 4000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, vec!["ALL"]);
        assert_eq!(
            sc.seccomp.map(|s| s.profile_type),
            Some(api::security_profile::ProfileType::RuntimeDefault as i32)
        );
        assert_eq!(sc.masked_paths.len(), 9);
        let (p, c) = pod(
            serde_json::json!({}),
            serde_json::json!({"procMount": "Unmasked", "privileged": true, "allowPrivilegeEscalation": false}),
        );
        let sc = container_security_context(&p, &c, api::NamespaceOption::default());
        assert!(sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
        assert!(!sc.no_new_privs, "privileged wins");
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
}
