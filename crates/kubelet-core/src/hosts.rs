//! The pod's /etc/hosts (upstream `managedHostsFileContent`).

use k8s_openapi::api::core::v1::Pod;

const HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";
const DEFAULTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

fn aliases(pod: &Pod) -> String {
    let list = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in list {
        let names = a.hostnames.as_deref().unwrap_or_default();
        out.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
    }
    out
}

/// The content; `node_hosts` is the node's own /etc/hosts, used for host-network pods.
pub fn hosts_file(
    pod: &Pod,
    hostname: &str,
    pod_ips: &[String],
    cluster_domain: &str,
    node_hosts: &str,
) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        let mut out = format!("{HEADER_HOST_NETWORK}{node_hosts}");
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&aliases(pod));
        return out;
    }
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            format!(
                "{sub}.{}.svc.{cluster_domain}",
                pod.metadata.namespace.as_deref().unwrap_or_default()
            )
        });
    let mut out = format!("{HEADER}{DEFAULTS}");
    for ip in pod_ips {
        match &domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&aliases(pod));
    out
}

/// Whether the kubelet mounts its /etc/hosts into this container (not if it mounts its own).
pub fn mounts_hosts_file(c: &k8s_openapi::api::core::v1::Container) -> bool {
    !c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path == "/etc/hosts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"subdomain": "sub", "containers": [],
                     "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a.example", "b.example"]}]}
        }))
        .unwrap();
        let h = hosts_file(&pod, "web", &["10.88.0.7".into()], "cluster.local", "");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.88.0.7\tweb.sub.ns.svc.cluster.local\tweb\n"));
        assert!(h.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\ta.example\tb.example\n"));
        let mut plain = pod.clone();
        plain.spec.as_mut().unwrap().subdomain = None;
        plain.spec.as_mut().unwrap().host_aliases = None;
        assert!(
            hosts_file(&plain, "web", &["10.88.0.7".into()], "cluster.local", "")
                .ends_with("fe00::2\tip6-allrouters\n10.88.0.7\tweb\n")
        );
        let mut hn = plain;
        hn.spec.as_mut().unwrap().host_network = Some(true);
        assert_eq!(
            hosts_file(&hn, "web", &[], "cluster.local", "127.0.0.1 localhost"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
