//! Command-line flags, named as upstream's (`cmd/kubelet/app/options`): the table, the parser
//! and [`KubeletFlags`] live in [`kubelet_config::flags`]; flags that are KubeletConfiguration
//! fields win over the config file, which wins over defaults. What is left here is the
//! validation of `--node-labels`.

pub use kubelet_config::flags::{FlagsError, KubeletFlags, Parsed, parse};
use std::collections::BTreeMap;

/// `--node-labels` in the kubernetes.io namespace that the kubelet may not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set ({})",
    .0.join(" "),
    ALLOWED_LABELS.join(", ")
)]
pub struct ForbiddenLabels(pub Vec<String>);

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

/// Why `--node-labels` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    #[error(transparent)]
    Forbidden(#[from] ForbiddenLabels),
    /// `=value`: the API server would refuse the node.
    #[error("empty label key in {0:?}")]
    EmptyKey(String),
}

/// Parses and validates `--node-labels` as upstream does: its ConfigurationMap takes `key`
/// alone as `key=` (an empty value is a valid label); an empty key is refused here, where
/// upstream would only fail at registration.
pub fn node_labels(values: &[String]) -> Result<BTreeMap<String, String>, LabelsError> {
    let mut out = BTreeMap::new();
    for v in values {
        for item in v.split(',').filter(|s| !s.is_empty()) {
            let (k, val) = item.split_once('=').unwrap_or((item, ""));
            if k.trim().is_empty() {
                return Err(LabelsError::EmptyKey(item.to_string()));
            }
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
        return Err(ForbiddenLabels(bad.into_iter().map(str::to_string).collect()).into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_style_flags_parse() {
        let f = parse([
            "--kubeconfig=/k",
            "--config=/c.yaml",
            "--hostname-override=n1",
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/x.sock",
            "--root-dir=/var/lib/k",
            "--node-ip=192.0.2.2",
            "--node-labels=a=b,node.kubernetes.io/pool=x",
            "--node-labels=c=",
            "--node-labels=d",
            "--register-node=false",
            "--v=4",
        ])
        .unwrap()
        .flags;
        assert_eq!(f.kubeconfig.as_deref(), Some("/k"));
        assert!(!f.register_node);
        assert_eq!(f.verbosity, 4);
        let l = node_labels(&f.node_labels).unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["c"], "");
        assert_eq!(l["d"], "");
        assert_eq!(l["node.kubernetes.io/pool"], "x");
        assert!(parse(["--register-node"]).unwrap().flags.register_node);
        assert!(parse(["--register-node=maybe"]).is_err());
        assert!(parse(["--no-such-flag"]).is_err());
        assert_eq!(
            node_labels(&["a=b,=c".into()]).unwrap_err().to_string(),
            "empty label key in \"=c\""
        );
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
