//! The pod's resolver configuration (upstream `pkg/kubelet/network/dns`).

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Upstream's limits on what it passes to the runtime.
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 6;

/// Parses resolv.conf text (the node's `--resolv-conf`).
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => c.servers.extend(f.next().map(str::to_string)),
            Some("search") | Some("domain") => c.searches = f.map(str::to_string).collect(),
            Some("options") => c.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    c
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Options merge by name; later ones (the pod's) win.
fn merge_options(base: Vec<String>, extra: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in base.into_iter().chain(extra) {
        let name = o.split(':').next().unwrap_or("").to_string();
        if let Some(pos) = out
            .iter()
            .position(|e| e.split(':').next() == Some(name.as_str()))
        {
            out[pos] = o;
        } else {
            out.push(o);
        }
    }
    out
}

/// Computes the sandbox DNS config for `pod`, cut to the resolver's limits.
/// `cluster_dns`/`cluster_domain` come from the KubeletConfiguration; `host` from resolv.conf.
pub fn pod_dns_config(
    pod: &Pod,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &DnsConfig,
) -> DnsConfig {
    pod_dns_config_checked(pod, cluster_dns, cluster_domain, host).0
}

/// [`pod_dns_config`] and the `DNSConfigForming` warnings for what did not fit.
pub fn pod_dns_config_checked(
    pod: &Pod,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &DnsConfig,
) -> (DnsConfig, Vec<String>) {
    fit_limits(pod_dns_config_uncut(pod, cluster_dns, cluster_domain, host))
}

fn pod_dns_config_uncut(
    pod: &Pod,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &DnsConfig,
) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut c = match policy {
        "None" => DnsConfig::default(),
        _ if cluster && !cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut searches = if cluster_domain.is_empty() {
                vec![]
            } else {
                vec![
                    format!("{ns}.svc.{cluster_domain}"),
                    format!("svc.{cluster_domain}"),
                    cluster_domain.to_string(),
                ]
            };
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: cluster_dns.to_vec(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        // Default, or ClusterFirst without a cluster DNS: the node's resolver.
        _ => host.clone(),
    };
    if let Some(pc) = spec.and_then(|s| s.dns_config.as_ref()) {
        c.servers.extend(pc.nameservers.iter().flatten().cloned());
        c.searches.extend(pc.searches.iter().flatten().cloned());
        let opts = pc
            .options
            .iter()
            .flatten()
            .filter_map(|o| {
                let name = o.name.as_deref()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name.to_string(),
                })
            })
            .collect();
        c.options = merge_options(c.options, opts);
    }
    c.servers = dedup(c.servers);
    c.searches = dedup(c.searches);
    c
}

/// Upstream's limit on the length of the search line.
pub const MAX_SEARCH_CHARS: usize = 256;

/// Cuts the config to the resolver's limits (upstream `formDNSConfigFitsLimits`), with the
/// `DNSConfigForming` event messages for what was cut.
pub fn fit_limits(mut c: DnsConfig) -> (DnsConfig, Vec<String>) {
    let mut warnings = vec![];
    if c.servers.len() > MAX_NAMESERVERS {
        c.servers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            c.servers.join(" ")
        ));
    }
    let mut exceeded = false;
    if c.searches.len() > MAX_SEARCHES {
        c.searches.truncate(MAX_SEARCHES);
        exceeded = true;
    }
    // Drop whole domains from the end until the line fits.
    while c.searches.join(" ").len() > MAX_SEARCH_CHARS {
        c.searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            c.searches.join(" ")
        ));
    }
    (c, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_give_upstream_warnings() {
        let c = DnsConfig {
            servers: vec![
                "1.1.1.1".into(),
                "2.2.2.2".into(),
                "3.3.3.3".into(),
                "4.4.4.4".into(),
            ],
            searches: (0..8).map(|i| format!("s{i}.example")).collect(),
            options: vec![],
        };
        let (cut, w) = fit_limits(c);
        assert_eq!(cut.servers.len(), 3);
        assert_eq!(cut.searches.len(), 6);
        assert_eq!(
            w,
            vec![
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 1.1.1.1 2.2.2.2 3.3.3.3".to_string(),
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: s0.example s1.example s2.example s3.example s4.example s5.example".to_string(),
            ]
        );
        // The 256-character line limit drops whole domains from the end.
        let long = DnsConfig {
            searches: vec!["a".repeat(200), "b".repeat(60), "c".into()],
            ..Default::default()
        };
        let (cut, w) = fit_limits(long);
        assert_eq!(cut.searches, vec!["a".repeat(200)]);
        assert_eq!(w.len(), 1);
        let (_, w) = fit_limits(DnsConfig::default());
        assert!(w.is_empty());
    }
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(policy: &str, host_net: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("team".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: Some(policy.into()),
                host_network: Some(host_net),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_first() {
        let host = parse_resolv_conf("nameserver 1.1.1.1\nsearch example.com\noptions edns0\n");
        let c = pod_dns_config(
            &pod("ClusterFirst", false),
            &["10.0.0.10".into()],
            "cluster.local",
            &host,
        );
        assert_eq!(c.servers, vec!["10.0.0.10"]);
        assert_eq!(
            c.searches,
            vec![
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.com"
            ]
        );
        assert_eq!(c.options, vec!["ndots:5"]);
        // host network falls back to the node's resolver, unless ClusterFirstWithHostNet
        let d = pod_dns_config(
            &pod("ClusterFirst", true),
            &["10.0.0.10".into()],
            "cluster.local",
            &host,
        );
        assert_eq!(d, host);
        let e = pod_dns_config(
            &pod("ClusterFirstWithHostNet", true),
            &["10.0.0.10".into()],
            "cluster.local",
            &host,
        );
        assert_eq!(e.servers, vec!["10.0.0.10"]);
    }

    #[test]
    fn none_with_config_and_option_merge() {
        let mut p = pod("None", false);
        p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["8.8.8.8".into(), "8.8.8.8".into()]),
            searches: Some(vec!["a.b".into()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            }]),
        });
        let c = pod_dns_config(&p, &[], "cluster.local", &DnsConfig::default());
        assert_eq!(c.servers, vec!["8.8.8.8"]);
        assert_eq!(c.searches, vec!["a.b"]);
        assert_eq!(c.options, vec!["ndots:2"]);
        let mut q = pod("ClusterFirst", false);
        q.spec.as_mut().unwrap().dns_config = p.spec.unwrap().dns_config;
        let c = pod_dns_config(
            &q,
            &["10.0.0.10".into()],
            "cluster.local",
            &DnsConfig::default(),
        );
        assert_eq!(c.options, vec!["ndots:2"]);
    }
}
