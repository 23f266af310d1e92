//! Pod admission on the node (upstream `lifecycle` admit handlers): pods the node must not
//! run are failed with a reason, not started.

use k8s_openapi::api::core::v1::Pod;

/// Sysctls upstream (1.20) considers safe: namespaced and unable to affect other pods.
pub const SAFE_SYSCTLS: [&str; 4] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

fn allowed(name: &str, allowlist: &[String]) -> bool {
    SAFE_SYSCTLS.contains(&name)
        || allowlist.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

/// `Err((reason, message))` when the pod asks for a sysctl that is neither safe nor allowed
/// by `allowedUnsafeSysctls`.
pub fn admit_sysctls(pod: &Pod, allowlist: &[String]) -> Result<(), (String, String)> {
    let sysctls = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default();
    for s in sysctls {
        if !allowed(&s.name, allowlist) {
            return Err((
                "SysctlForbidden".into(),
                format!("forbidden sysctl: \"{}\" not whitelisted", s.name),
            ));
        }
    }
    Ok(())
}

/// A `setHostnameAsFQDN` name longer than a hostname may be (upstream's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {} characters requested)",
    fqdn.len()
)]
pub struct FqdnTooLong {
    pub fqdn: String,
}

/// The FQDN hostname of `setHostnameAsFQDN`, or an error when it is longer than a hostname may be.
pub fn fqdn_hostname(
    pod: &Pod,
    hostname: &str,
    cluster_domain: &str,
) -> Result<Option<String>, FqdnTooLong> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.set_hostname_as_fqdn) != Some(true) {
        return Ok(None);
    }
    let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let fqdn = format!("{hostname}.{sub}.{ns}.svc.{cluster_domain}");
    if fqdn.len() > 64 {
        return Err(FqdnTooLong { fqdn });
    }
    Ok(Some(fqdn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": v}),
        )
        .unwrap()
    }

    #[test]
    fn sysctls() {
        let p = pod(
            serde_json::json!({"containers": [], "securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_syncookies", "value": "1"}, {"name": "net.core.somaxconn", "value": "1024"}]}}),
        );
        let (reason, msg) = admit_sysctls(&p, &[]).unwrap_err();
        assert_eq!(reason, "SysctlForbidden");
        assert_eq!(
            msg,
            "forbidden sysctl: \"net.core.somaxconn\" not whitelisted"
        );
        assert!(admit_sysctls(&p, &["net.core.*".into()]).is_ok());
        assert!(admit_sysctls(&p, &["net.core.somaxconn".into()]).is_ok());
        assert!(admit_sysctls(&pod(serde_json::json!({"containers": []})), &[]).is_ok());
    }

    #[test]
    fn fqdn() {
        let p = pod(
            serde_json::json!({"containers": [], "setHostnameAsFQDN": true, "subdomain": "sub"}),
        );
        assert_eq!(
            fqdn_hostname(&p, "web", "cluster.local")
                .unwrap()
                .as_deref(),
            Some("web.sub.ns.svc.cluster.local")
        );
        assert!(fqdn_hostname(&p, &"a".repeat(60), "cluster.local").is_err());
        let q = pod(serde_json::json!({"containers": [], "subdomain": "sub"}));
        assert_eq!(fqdn_hostname(&q, "web", "cluster.local").unwrap(), None);
    }
}
