//! Property tests over the config file and flag parsing: whatever the input, an answer (a
//! configuration or an error naming what is wrong), never a panic.

use kubelet_config::parse;
use proptest::prelude::*;

const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

/// Field names of every kind the parser knows, and a few it does not.
const FIELDS: &[&str] = &[
    "syncFrequency",
    "nodeStatusUpdateFrequency",
    "streamingConnectionIdleTimeout",
    "runtimeRequestTimeout",
    "kubeAPIQPS",
    "kubeAPIBurst",
    "eventRecordQPS",
    "maxPods",
    "podPidsLimit",
    "port",
    "address",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "evictionHard",
    "authentication",
    "authorization",
    "tlsCipherSuites",
    "staticPodPath",
    "featureGates",
    "imageMinimumGCAge",
    "enforceNodeAllocatable",
    "logging",
    "bogus",
];

/// Values of every YAML shape, with numbers and durations at their edges.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just(".nan".to_string()),
        Just("99999999999999999999h".to_string()),
        Just("2562048h".to_string()),
        Just("1.5s".to_string()),
        Just("0.0000001".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("null".to_string()),
        Just("{mode: Webhook, webhook: {cacheAuthorizedTTL: 1h}}".to_string()),
        Just("{memory.available: 101%}".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9.:/%_ -]{0,24}",
        "\\PC{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn config_files_never_panic(
        fields in proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..6)
    ) {
        let mut text = HEAD.to_string();
        for (f, v) in &fields {
            text.push_str(&format!("{f}: {v}\n"));
        }
        if let Ok(l) = parse("k.yaml", &text) {
            // Accepted: what the kubelet will act on is within its bounds.
            prop_assert!(l.config.kube_api_qps >= kubelet_config::MIN_QPS);
            prop_assert!(l.config.kube_api_burst >= 1);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse("k.yaml", &text);
        let _ = parse("k.yaml", &format!("{HEAD}{text}"));
    }

    #[test]
    fn flags_never_panic(args in proptest::collection::vec(
        prop_oneof![
            Just("--max-pods".to_string()),
            Just("--node-labels".to_string()),
            Just("--fail-swap-on".to_string()),
            Just("--register-node".to_string()),
            Just("--cgroup-driver".to_string()),
            Just("--node-ip".to_string()),
            Just("--v".to_string()),
            Just("--kube-reserved".to_string()),
            Just("--eviction-hard".to_string()),
            Just("--register-with-taints".to_string()),
            Just("--feature-gates".to_string()),
            Just("--log_dir".to_string()),
            "--[a-z-]{1,12}(=[^\\x00]{0,12})?",
            "[^\\x00]{0,16}",
        ],
        0..6,
    )) {
        if let Ok(flags) = kubelet::options::parse(args) {
            // Settings read no config file here (none given) or fail cleanly.
            let _ = kubelet::kubelet::settings(flags);
        }
    }
}
