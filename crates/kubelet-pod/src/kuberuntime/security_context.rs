//! The core's security decisions as CRI messages (upstream `kuberuntime/security_context.go`).

use k8s_openapi::api::core::v1::SELinuxOptions;
use kubelet_core::security_context::{ContainerSecurity, SandboxSecurity, Seccomp};
use kubelet_cri::api;

fn seccomp(s: Option<Seccomp>) -> Option<api::SecurityProfile> {
    use api::security_profile::ProfileType;
    let (t, localhost_ref) = match s? {
        Seccomp::RuntimeDefault => (ProfileType::RuntimeDefault, String::new()),
        Seccomp::Unconfined => (ProfileType::Unconfined, String::new()),
        Seccomp::Localhost(r) => (ProfileType::Localhost, r),
    };
    Some(api::SecurityProfile {
        profile_type: t as i32,
        localhost_ref,
    })
}

fn selinux(o: Option<SELinuxOptions>) -> Option<api::SeLinuxOption> {
    o.map(|o| api::SeLinuxOption {
        user: o.user.unwrap_or_default(),
        role: o.role.unwrap_or_default(),
        r#type: o.type_.unwrap_or_default(),
        level: o.level.unwrap_or_default(),
    })
}

fn id(v: Option<i64>) -> Option<api::Int64Value> {
    v.map(|value| api::Int64Value { value })
}

pub(super) fn container(
    s: ContainerSecurity,
    ns: api::NamespaceOption,
) -> api::LinuxContainerSecurityContext {
    api::LinuxContainerSecurityContext {
        capabilities: s.capabilities.map(|(add, drop)| api::Capability {
            add_capabilities: add,
            drop_capabilities: drop,
        }),
        privileged: s.privileged,
        namespace_options: Some(ns),
        selinux_options: selinux(s.se_linux),
        run_as_user: id(s.run_as_user),
        run_as_group: id(s.run_as_group),
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups,
        no_new_privs: s.no_new_privs,
        seccomp: seccomp(s.seccomp),
        masked_paths: s.masked_paths,
        readonly_paths: s.readonly_paths,
        ..Default::default()
    }
}

pub(super) fn sandbox(
    s: SandboxSecurity,
    ns: api::NamespaceOption,
) -> api::LinuxSandboxSecurityContext {
    api::LinuxSandboxSecurityContext {
        namespace_options: Some(ns),
        selinux_options: selinux(s.se_linux),
        run_as_user: id(s.run_as_user),
        run_as_group: id(s.run_as_group),
        supplemental_groups: s.supplemental_groups,
        privileged: s.privileged,
        seccomp: seccomp(s.seccomp),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decided_field_reaches_the_cri_message() {
        let c = container(
            ContainerSecurity {
                capabilities: Some((vec!["NET_ADMIN".into()], vec!["ALL".into()])),
                privileged: true,
                run_as_user: Some(1),
                run_as_group: Some(2),
                readonly_rootfs: true,
                supplemental_groups: vec![3],
                no_new_privs: true,
                seccomp: Some(Seccomp::Localhost("prof".into())),
                se_linux: Some(SELinuxOptions {
                    level: Some("s0".into()),
                    ..Default::default()
                }),
                masked_paths: vec!["/m".into()],
                readonly_paths: vec!["/r".into()],
            },
            api::NamespaceOption::default(),
        );
        assert!(c.privileged && c.readonly_rootfs && c.no_new_privs);
        assert_eq!(c.run_as_user.map(|v| v.value), Some(1));
        assert_eq!(c.run_as_group.map(|v| v.value), Some(2));
        assert_eq!(c.supplemental_groups, vec![3]);
        let caps = c.capabilities.unwrap_or_default();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        let sec = c.seccomp.unwrap_or_default();
        assert_eq!(
            (sec.profile_type, sec.localhost_ref.as_str()),
            (api::security_profile::ProfileType::Localhost as i32, "prof")
        );
        assert_eq!(c.selinux_options.map(|o| o.level).as_deref(), Some("s0"));
        assert_eq!(
            (c.masked_paths, c.readonly_paths),
            (vec!["/m".to_string()], vec!["/r".to_string()])
        );
        let s = sandbox(
            SandboxSecurity {
                privileged: true,
                seccomp: Some(Seccomp::RuntimeDefault),
                ..Default::default()
            },
            api::NamespaceOption::default(),
        );
        assert!(s.privileged && s.run_as_user.is_none() && s.namespace_options.is_some());
        assert_eq!(
            s.seccomp.map(|p| p.profile_type),
            Some(api::security_profile::ProfileType::RuntimeDefault as i32)
        );
    }
}
