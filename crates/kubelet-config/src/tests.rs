use super::*;

const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

#[test]
fn go_durations_round_trip() {
    for (d, text) in [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_secs(10), "10s"),
        (Duration::from_secs(60), "1m0s"),
        (Duration::from_secs(5400), "1h30m0s"),
        (Duration::from_millis(1500), "1.5s"),
    ] {
        assert_eq!(format_go_duration(d), text);
        assert_eq!(parse_go_duration(text), Ok(d));
    }
}

#[test]
fn configz_round_trips() {
    let text = format!(
        "{HEAD}tlsMinVersion: VersionTLS13\ntlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\nsyncFrequency: 30s\n"
    );
    let c = parse("k.yaml", &text).unwrap().config;
    assert_eq!(c.tls_min_version, "VersionTLS13");
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["syncFrequency"], "30s");
    assert_eq!(
        v["tlsCipherSuites"][0],
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    );
    let nulls: Vec<_> = v
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, x)| x.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    let back: KubeletConfiguration =
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e} {nulls:?}"));
    assert_eq!(back, c);
}

#[test]
fn defaults_match_an_empty_file() {
    let empty = parse("k.yaml", HEAD).unwrap().config;
    assert_eq!(empty, KubeletConfiguration::default());
}

#[test]
fn defaults() {
    let c = KubeletConfiguration::default();
    assert_eq!(c.max_pods, 110);
    assert_eq!(c.port, 10250);
    assert_eq!(c.read_only_port, 0);
    assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
    assert_eq!(c.node_lease_duration_seconds, 40);
    assert_eq!((c.kube_api_qps, c.kube_api_burst), (5.0, 10));
    assert!(c.authentication.webhook.enabled && !c.authentication.anonymous.enabled);
    assert_eq!(c.authorization.mode, AuthorizationMode::Webhook);
    assert_eq!(c.eviction_hard()["memory.available"], "100Mi");
}

#[test]
fn reference_file() {
    let text = format!(
        "{HEAD}authentication:\n  anonymous: {{enabled: false}}\n  webhook: {{enabled: true}}\n  x509: {{clientCAFile: /pki/ca.crt}}\nauthorization: {{mode: Webhook}}\ncgroupDriver: cgroupfs\nfailSwapOn: false\nclusterDNS: [10.0.0.10]\nclusterDomain: cluster.local\ntlsCertFile: /a.crt\ntlsPrivateKeyFile: /a.key\nreadOnlyPort: 0\nport: 10250\naddress: 127.0.0.1\nnodeStatusUpdateFrequency: 1m0s\nkubeAPIQPS: 50\nkubeAPIBurst: 100\nfileCheckFrequency: 0s\nvolumeStatsAggPeriod: 1m\nstaticPodPath: /etc/kubernetes/manifests\nbogusField: 1\n"
    );
    let l = parse("k.yaml", &text).unwrap();
    assert_eq!(
        l.config.authentication.x509.client_ca_file.as_deref(),
        Some("/pki/ca.crt")
    );
    assert_eq!(l.config.cluster_dns, vec!["10.0.0.10"]);
    assert_eq!(
        l.config.node_status_update_frequency,
        Duration::from_secs(60)
    );
    assert_eq!(l.config.kube_api_qps, 50.0);
    assert!(!l.config.fail_swap_on);
    assert_eq!(l.unsupported, vec!["volumeStatsAggPeriod"]);
    assert_eq!(l.config.static_pod_path, "/etc/kubernetes/manifests");
    // kubeadm's "0s" means the default.
    assert_eq!(l.config.file_check_frequency, Duration::from_secs(20));
    assert_eq!(l.unknown, vec!["bogusField"]);
}

#[test]
fn errors_name_the_field() {
    let e = parse("k.yaml", &format!("{HEAD}maxPods: lots\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("maxPods"), "{e}");
    let e = parse(
        "k.yaml",
        &format!("{HEAD}authentication:\n  webhook:\n    cacheTTL: soon\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("authentication.webhook.cacheTTL"), "{e}");
    let e = parse("k.yaml", &format!("{HEAD}authorization: {{mode: Maybe}}\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("authorization.mode"), "{e}");
    let e = parse("k.yaml", "kind: KubeletConfiguration\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("apiVersion"), "{e}");
    assert!(parse("k.yaml", "{{{").is_err());
    let e = parse("k.yaml", &format!("{HEAD}kubeAPIQPS: 0\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("kubeAPIQPS"), "{e}");
    for bad in [
        "containerLogMaxFiles: 1",
        "containerLogMaxSize: 0",
        "containerLogMaxSize: big",
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad.split(':').next().unwrap_or_default()), "{e}");
    }
    let ok = parse("k.yaml", &format!("{HEAD}containerLogMaxSize: 1Mi\n")).unwrap();
    assert_eq!(ok.config.container_log_max_bytes(), Some(1 << 20));
    assert!(ok.unsupported.is_empty(), "{:?}", ok.unsupported);
}

/// Reservations come off allocatable; unknown resources and bad quantities are refused.
#[test]
fn reservations_are_summed_and_checked() {
    let l = parse(
        "k.yaml",
        &format!("{HEAD}kubeReserved: {{cpu: 100m, memory: 100Mi}}\nsystemReserved: {{cpu: 1, memory: 1Gi, ephemeral-storage: 1Gi}}\n"),
    )
    .unwrap();
    let r = l.config.reserved();
    assert_eq!(r.cpu_milli, 1100);
    assert_eq!(r.memory, (100 << 20) + (1 << 30));
    assert_eq!(r.ephemeral_storage, 1 << 30);
    for (bad, want) in [
        ("kubeReserved: {gpu: 1}", r#"cannot reserve "gpu" resource"#),
        (
            "systemReserved: {memory: -1Gi}",
            r#"resource quantity for "memory" cannot be negative"#,
        ),
        (
            "systemReserved: {cpu: lots}",
            "invalid value for systemReserved: cpu: \"lots\"",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// Graceful node shutdown, as 1.20 validates it: behind its gate, the critical pods' share
/// within the whole.
#[test]
fn image_gc_thresholds_are_checked_as_upstream() {
    let c = parse("k.yaml", &format!("{HEAD}imageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: 50\nimageMinimumGCAge: 5m\n"))
        .unwrap()
        .config;
    assert_eq!(
        (
            c.image_gc_high_threshold_percent,
            c.image_gc_low_threshold_percent
        ),
        (90, 50)
    );
    assert_eq!(c.image_minimum_gc_age, Duration::from_secs(300));
    for (bad, want) in [
        (
            "imageGCHighThresholdPercent: 101",
            "imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive",
        ),
        (
            "imageGCLowThresholdPercent: 90",
            "imageGCLowThresholdPercent (--image-gc-low-threshold) 90 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 85",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn pods_per_core_caps_the_pod_capacity() {
    let c = parse("k.yaml", &format!("{HEAD}podsPerCore: 10\n"))
        .unwrap()
        .config;
    assert_eq!(c.pod_capacity(4), 40);
    assert_eq!(c.pod_capacity(64), 110, "never above maxPods");
    assert_eq!(parse("k.yaml", HEAD).unwrap().config.pod_capacity(4), 110);
}

#[test]
fn eviction_thresholds_are_parsed_as_upstream() {
    let l = parse(
        "k.yaml",
        &format!(
            "{HEAD}evictionHard: {{memory.available: 200Mi}}\nevictionSoft: {{nodefs.available: 15%}}\nevictionSoftGracePeriod: {{nodefs.available: 1m30s}}\nevictionMinimumReclaim: {{memory.available: 50Mi}}\nevictionMaxPodGracePeriod: 30\nevictionPressureTransitionPeriod: 30s\n"
        ),
    )
    .unwrap()
    .config;
    let t = l.eviction_thresholds().unwrap();
    assert_eq!(
        t.len(),
        3,
        "hard, soft, and the pods' allocatable twin: {t:?}"
    );
    assert_eq!(t[1].grace_period, Duration::from_secs(90));
    assert_eq!(l.eviction_max_pod_grace_period, 30);
    assert_eq!(
        l.eviction_pressure_transition_period,
        Duration::from_secs(30)
    );
    assert_eq!(
        parse("k.yaml", HEAD)
            .unwrap()
            .config
            .eviction_pressure_transition_period,
        Duration::from_secs(300)
    );
    for (bad, want) in [
        (
            "evictionSoft: {memory.available: 1Gi}",
            "grace period must be specified for the soft eviction threshold memory.available",
        ),
        (
            "evictionHard: {memory.free: 1Gi}",
            "unsupported eviction signal memory.free",
        ),
        (
            "evictionMinimumReclaim: {memory.available: -1Mi}",
            "negative eviction minimum reclaim specified for memory.available",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn shutdown_grace_periods_need_their_gate_and_fit() {
    let gate = "featureGates: {GracefulNodeShutdown: true}\n";
    let l = parse(
        "k.yaml",
        &format!("{HEAD}{gate}shutdownGracePeriod: 30s\nshutdownGracePeriodCriticalPods: 10s\n"),
    )
    .unwrap();
    assert_eq!(l.config.shutdown_grace_period, Duration::from_secs(30));
    assert_eq!(
        l.config.shutdown_grace_period_critical_pods,
        Duration::from_secs(10)
    );
    assert!(l.config.graceful_node_shutdown());
    for (bad, want) in [
        (
            "shutdownGracePeriod: 30s\n".to_string(),
            "shutdownGracePeriod: requires feature gate GracefulNodeShutdown",
        ),
        (
            format!("{gate}shutdownGracePeriod: 10s\nshutdownGracePeriodCriticalPods: 20s\n"),
            "shutdownGracePeriodCriticalPods: 20s must be <= shutdownGracePeriod (10s)",
        ),
        (
            "featureGates: {GracefulNodeShutdown: true, CSIMigration: false}\n".to_string(),
            "CSIMigration is not supported by kubelet-rs yet",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// `cgroupRoot`: an absolute cgroupfs path under the cgroupfs driver; only the host's root
/// under systemd (a slice name there is not built yet).
#[test]
fn cgroup_root_is_honoured_under_cgroupfs() {
    let d = KubeletConfiguration::default();
    assert_eq!(d.cgroup_root, "");
    assert_eq!(d.cgroup_layout().kubepods().to_cgroupfs(), "/kubepods");
    let l = parse(
        "k.yaml",
        &format!(
            "{HEAD}cgroupRoot: /kadm-n1
"
        ),
    )
    .unwrap();
    assert_eq!(l.config.cgroup_root, "/kadm-n1");
    assert_eq!(
        l.config.cgroup_layout().kubepods().to_cgroupfs(),
        "/kadm-n1/kubepods"
    );
    for ok in [
        "cgroupRoot: \"\"",
        "cgroupRoot: /",
        "cgroupRoot: /a/b",
        "cgroupDriver: cgroupfs\ncgroupRoot: /a",
        "cgroupDriver: systemd\ncgroupRoot: /",
        "cgroupDriver: systemd\ncgroupRoot: \"\"",
    ] {
        assert!(parse("k.yaml", &format!("{HEAD}{ok}\n")).is_ok(), "{ok}");
    }
    for (bad, want) in [
        (
            "cgroupRoot: kadm",
            "cgroupRoot: \"kadm\" must be an absolute",
        ),
        (
            "cgroupRoot: /a/../b",
            "cgroupRoot: \"/a/../b\" has an invalid",
        ),
        (
            "cgroupDriver: systemd\ncgroupRoot: /kadm",
            "cgroupRoot: \"/kadm\" is not supported by kubelet-rs with cgroupDriver systemd yet",
        ),
        (
            "cgroupDriver: systemd\ncgroupRoot: kadm.slice",
            "cgroupRoot: \"kadm.slice\" must be an absolute",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

/// Settings this kubelet cannot honour are refused unless they ask for what it does.
#[test]
fn unhonoured_settings_are_refused_unless_default() {
    for bad in [
        "registryPullQPS: 6",
        "featureGates: {RotateKubeletServerCertificate: true}",
        "kubeReserved: {pid: 100}",
        "cgroupsPerQOS: false",
        "enforceNodeAllocatable: [pods, kube-reserved]",
    ] {
        let field = bad.split(':').next().unwrap_or_default();
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains("not supported"), "{e}");
    }
    // What kubeadm writes: zero values that mean "the default", and the defaults.
    for ok in [
        "staticPodPath: \"\"",
        "rotateCertificates: false",
        "imageMinimumGCAge: 0s",
        "imageMinimumGCAge: 2m",
        "cpuCFSQuotaPeriod: 100ms",
        "evictionMaxPodGracePeriod: 0",
        "cgroupsPerQOS: true",
        "enforceNodeAllocatable: [pods]",
        "shutdownGracePeriod: 0s",
        "registryPullQPS: 5",
        "oomScoreAdj: -999",
    ] {
        assert!(parse("k.yaml", &format!("{HEAD}{ok}\n")).is_ok(), "{ok}");
    }
    let l = parse(
        "k.yaml",
        &format!(
            "{HEAD}enableServer: false\nenableDebuggingHandlers: false\nstreamingConnectionIdleTimeout: 5m\n"
        ),
    )
    .unwrap();
    assert!(!l.config.enable_server && !l.config.enable_debugging_handlers);
    assert_eq!(
        l.config.streaming_connection_idle_timeout,
        Duration::from_secs(300)
    );
    let d = KubeletConfiguration::default();
    assert!(d.enable_server && d.enable_debugging_handlers);
    assert_eq!(
        d.streaming_connection_idle_timeout,
        Duration::from_secs(4 * 3600)
    );
}

/// What kubeadm 1.20 writes: upstream's field names, zero durations meaning defaults.
#[test]
fn kubeadm_style_file_loads_with_defaults() {
    let text = format!(
        "{HEAD}authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 0s\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 0s\n    cacheUnauthorizedTTL: 0s\ncgroupDriver: cgroupfs\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\ncpuManagerReconcilePeriod: 0s\nevictionPressureTransitionPeriod: 0s\nfileCheckFrequency: 0s\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nhttpCheckFrequency: 0s\nimageMinimumGCAge: 0s\nlogging: {{}}\nnodeStatusReportFrequency: 0s\nnodeStatusUpdateFrequency: 0s\nrotateCertificates: false\nruntimeRequestTimeout: 0s\nshutdownGracePeriod: 0s\nshutdownGracePeriodCriticalPods: 0s\nstaticPodPath: \"\"\nstreamingConnectionIdleTimeout: 0s\nsyncFrequency: 0s\nvolumeStatsAggPeriod: 0s\n"
    );
    let l = parse("config.yaml", &text).unwrap();
    let c = l.config;
    assert_eq!(c.image_minimum_gc_age, Duration::from_secs(120));
    assert_eq!(
        c.eviction_pressure_transition_period,
        Duration::from_secs(300)
    );
    assert_eq!(c.authentication.webhook.cache_ttl, Duration::from_secs(120));
    assert_eq!(
        c.authorization.webhook.cache_authorized_ttl,
        Duration::from_secs(300)
    );
    assert_eq!(
        c.authorization.webhook.cache_unauthorized_ttl,
        Duration::from_secs(30)
    );
    assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
    assert_eq!(c.sync_frequency, Duration::from_secs(60));
    assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
    assert_eq!(
        c.streaming_connection_idle_timeout,
        Duration::from_secs(4 * 3600)
    );
    assert_eq!(c.node_status_report_frequency, None);
    // /configz shows upstream's names.
    let z = serde_json::to_value(&c).unwrap();
    assert_eq!(z["authentication"]["webhook"]["cacheTTL"], "2m0s");
    assert_eq!(z["authorization"]["webhook"]["cacheAuthorizedTTL"], "5m0s");
}

/// The documented production file loads, with nothing ignored or unknown.
#[test]
fn production_example_loads() {
    let text = include_str!("../../../examples/kubelet-config-production.yaml");
    let l = parse("examples/kubelet-config-production.yaml", text).unwrap();
    assert!(l.unsupported.is_empty() && l.unknown.is_empty(), "{l:?}");
    let c = l.config;
    assert!(!c.authentication.anonymous.enabled);
    assert!(c.protect_kernel_defaults);
    assert_eq!(c.read_only_port, 0);
    assert_eq!(
        c.streaming_connection_idle_timeout,
        Duration::from_secs(4 * 3600)
    );
    assert_eq!(c.tls_cipher_suites.len(), 6);
}

/// Values that would overflow or stall are field errors, never a panic.
#[test]
fn absurd_values_are_field_errors() {
    for (bad, field) in [
        ("syncFrequency: 99999999999999999999h", "syncFrequency"),
        (
            "nodeStatusUpdateFrequency: 1e400s",
            "nodeStatusUpdateFrequency",
        ),
        ("kubeAPIQPS: 0.0000000000001", "kubeAPIQPS"),
        // No NaN in JSON: upstream's YAML-to-JSON step fails first, as ours.
        ("kubeAPIQPS: .nan", "unsupported value"),
        ("eventRecordQPS: 1e-300", "eventRecordQPS"),
        (
            "streamingConnectionIdleTimeout: 3000000h",
            "streamingConnectionIdleTimeout",
        ),
    ] {
        let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{bad}: {e}");
    }
    assert!(parse_go_duration("2562047h").is_ok(), "Go's maximum");
    assert!(parse_go_duration("2562048h").is_err());
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    assert!(parse_go_duration("10").is_err());
    assert!(parse_go_duration("5x").is_err());
    assert!(parse_go_duration("-1s").is_err());
}

/// The file is YAML 1.1, as upstream reads it: `no` is false, `0x10` is 16.
#[test]
fn the_file_reads_as_yaml_1_1() {
    let l = parse(
        "k.yaml",
        &format!("{HEAD}failSwapOn: no\nrotateCertificates: On\nmaxPods: 0x10\n"),
    )
    .unwrap();
    assert!(!l.config.fail_swap_on);
    assert!(l.config.rotate_certificates);
    assert_eq!(l.config.max_pods, 16);
}
