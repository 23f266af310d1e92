//! Command-line flags, named as upstream's (`cmd/kubelet/app/options`). Explicit flags win
//! over the config file, which wins over defaults.

use clap::Parser;
use std::collections::BTreeMap;

/// A flag value Go's `strconv.ParseBool` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid boolean {0:?}")]
pub struct InvalidBool(String);

fn parse_bool(s: &str) -> Result<bool, InvalidBool> {
    match s {
        "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        _ => Err(InvalidBool(s.into())),
    }
}

/// `--node-labels` in the kubernetes.io namespace that the kubelet may not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set ({})",
    .0.join(" "),
    ALLOWED_LABELS.join(", ")
)]
pub struct ForbiddenLabels(pub Vec<String>);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubelet",
    version,
    about = "kubelet-rs: the Kubernetes node agent, in Rust"
)]
pub struct Flags {
    /// Path to a kubeconfig file for the API server. Without it, the kubelet runs standalone.
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// A kubeconfig to request the node's client certificate with (TLS bootstrap). Used by
    /// upstream only while --kubeconfig does not exist yet; here bootstrapping is not built,
    /// so the kubelet refuses to start when it would be needed.
    #[arg(long = "bootstrap-kubeconfig")]
    pub bootstrap_kubeconfig: Option<String>,
    /// Path to a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file.
    #[arg(long)]
    pub config: Option<String>,
    /// Use this name instead of the hostname as the node's name.
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The CRI endpoint, e.g. unix:///run/containerd/containerd.sock.
    #[arg(
        long = "container-runtime-endpoint",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub container_runtime_endpoint: String,
    /// Accepted for compatibility; only "remote" (CRI) is supported.
    #[arg(long = "container-runtime", default_value = "remote")]
    pub container_runtime: String,
    /// Directory for the kubelet's files (pod directories, volumes, plugins).
    #[arg(long = "root-dir", default_value = "/var/lib/kubelet")]
    pub root_dir: String,
    /// Where the self-signed serving certificate goes when tlsCertFile is unset (upstream
    /// default: <root-dir>/pki).
    #[arg(long = "cert-dir")]
    pub cert_dir: Option<String>,
    /// IP address (or comma-separated dual-stack pair) of the node.
    #[arg(long = "node-ip")]
    pub node_ip: Option<String>,
    /// Labels to add when registering the node: key=value pairs separated by commas; repeatable.
    #[arg(long = "node-labels", action = clap::ArgAction::Append)]
    pub node_labels: Vec<String>,
    /// Register the node with the API server.
    #[arg(long = "register-node", default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub register_node: bool,
    /// Log verbosity, as klog's -v.
    #[arg(long = "v", short = 'v', default_value_t = 0)]
    pub verbosity: i32,
    /// Overrides the config file's cgroupDriver.
    #[arg(long = "cgroup-driver")]
    pub cgroup_driver: Option<String>,
    /// Overrides the config file's maxPods.
    #[arg(long = "max-pods")]
    pub max_pods: Option<u32>,
    /// Overrides the config file's failSwapOn.
    #[arg(long = "fail-swap-on", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub fail_swap_on: Option<bool>,
    /// Accepted for compatibility; the runtime's own sandbox image is used.
    #[arg(long = "pod-infra-container-image")]
    pub pod_infra_container_image: Option<String>,
}

/// The kubelet may only set these kubernetes.io labels on its own node (NodeRestriction).
const ALLOWED_LABELS: [&str; 11] = [
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

fn is_kubernetes_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    prefix == "kubernetes.io"
        || prefix == "k8s.io"
        || prefix.ends_with(".kubernetes.io")
        || prefix.ends_with(".k8s.io")
}

fn allowed_prefix(key: &str) -> bool {
    let prefix = key.split_once('/').map(|(p, _)| p).unwrap_or("");
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|a| prefix == *a || prefix.ends_with(&format!(".{a}")))
}

/// Parses and validates `--node-labels` as upstream does.
pub fn node_labels(values: &[String]) -> Result<BTreeMap<String, String>, ForbiddenLabels> {
    let mut out = BTreeMap::new();
    for v in values {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, val) = item.split_once('=').unwrap_or((item, ""));
            out.insert(k.trim().to_string(), val.trim().to_string());
        }
    }
    let mut bad: Vec<&str> = out
        .keys()
        .map(String::as_str)
        .filter(|k| is_kubernetes_label(k) && !ALLOWED_LABELS.contains(k) && !allowed_prefix(k))
        .collect();
    if !bad.is_empty() {
        bad.sort();
        return Err(ForbiddenLabels(
            bad.into_iter().map(str::to_string).collect(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_style_flags_parse() {
        let f = Flags::try_parse_from([
            "kubelet",
            "--kubeconfig=/k",
            "--config=/c.yaml",
            "--hostname-override=n1",
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/x.sock",
            "--root-dir=/var/lib/k",
            "--node-ip=192.0.2.2",
            "--node-labels=a=b,node.kubernetes.io/pool=x",
            "--node-labels=c=",
            "--register-node=false",
            "--v=4",
        ])
        .unwrap();
        assert_eq!(f.kubeconfig.as_deref(), Some("/k"));
        assert!(!f.register_node);
        assert_eq!(f.verbosity, 4);
        let l = node_labels(&f.node_labels).unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["c"], "");
        assert_eq!(l["node.kubernetes.io/pool"], "x");
        assert!(
            Flags::try_parse_from(["kubelet", "--register-node"])
                .unwrap()
                .register_node
        );
        assert!(Flags::try_parse_from(["kubelet", "--register-node=maybe"]).is_err());
        assert!(Flags::try_parse_from(["kubelet", "--no-such-flag"]).is_err());
    }

    #[test]
    fn restricted_labels_are_refused() {
        let e = node_labels(&["kubernetes.io/role=master,foo.k8s.io/x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [foo.k8s.io/x kubernetes.io/role]"), "{e}");
        assert!(node_labels(&["example.com/x=1,kubelet.kubernetes.io/y=2".into()]).is_ok());
    }
}
