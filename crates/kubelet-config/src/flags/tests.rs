use super::*;
use crate::{ConfigError, parse_with_overlay};

/// Upstream 1.20.2's `kubelet --help` flag names, one a line.
const UPSTREAM: &str = include_str!("../../tests/data/kubelet-1.20.2-flags.txt");

fn p(args: &[&str]) -> Result<Parsed, FlagsError> {
    parse(args.iter().copied())
}

fn ok(args: &[&str]) -> Parsed {
    p(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn overlay<'a>(parsed: &'a Parsed, flag: &str) -> &'a Value {
    &parsed
        .overlay
        .iter()
        .find(|o| o.flag == flag)
        .unwrap_or_else(|| panic!("no overlay for {flag}: {:?}", parsed.overlay))
        .value
}

/// A value each kind takes (at the flag's default where only the default is accepted).
fn dummy(s: &FlagSpec) -> String {
    if let Target::Refuse(_) = s.target {
        return match (s.kind, s.default) {
            (Kind::Bool, "") => "false".into(),
            (_, d) => d.into(),
        };
    }
    match s.kind {
        Kind::Bool | Kind::Version => "true".into(),
        Kind::Str => match s.name {
            "container-runtime" => "remote".into(),
            "container-runtime-endpoint" | "image-service-endpoint" => {
                "/run/containerd/containerd.sock".into()
            }
            "cgroup-driver" => "systemd".into(),
            "authorization-mode" => "Webhook".into(),
            _ if !s.default.is_empty() => s.default.into(),
            _ => "x".into(),
        },
        Kind::Int32 | Kind::Int64 | Kind::Uint64 => "1".into(),
        Kind::Float => "0.5".into(),
        Kind::Duration => "1m".into(),
        Kind::Ip => "10.0.0.1".into(),
        Kind::StrSlice => "10.0.0.10,10.0.0.11".into(),
        Kind::Map(MapKind::Eq) => "cpu=100m".into(),
        Kind::Map(MapKind::Langle) => "memory.available<100Mi".into(),
        Kind::Map(MapKind::Colon) => "a:b".into(),
        Kind::Map(MapKind::Bool) => "GracefulNodeShutdown=true".into(),
        Kind::Map(MapKind::Labels) => "a=b".into(),
        Kind::Taints => "example.com/t=x:NoSchedule".into(),
        Kind::Level => "2".into(),
        Kind::ModuleSpec => "pod*=3".into(),
        Kind::TraceLocation => "kubelet.go:100".into(),
        Kind::Severity => "ERROR".into(),
    }
}

#[test]
fn the_table_is_upstreams_flag_set() {
    let upstream: BTreeSet<&str> = UPSTREAM.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(upstream.len(), 183);
    let ours: BTreeSet<&str> = table()
        .iter()
        .map(|s| s.name)
        .filter(|n| *n != "experimental-dockershim-root-directory")
        .collect();
    assert_eq!(ours, upstream);
    assert_eq!(table().len(), 184, "no duplicates");
    // Every deprecated config flag has a config target and the reverse.
    for s in table() {
        assert_eq!(
            matches!(s.target, Target::Config(_)),
            s.deprecated == Some(CONFIG_FILE),
            "{}",
            s.name
        );
    }
    // The clap command builds (clap checks its own invariants here).
    command().debug_assert();
}

#[test]
fn every_upstream_flag_parses_in_every_form() {
    for name in UPSTREAM.lines().filter(|l| !l.is_empty()) {
        let s = spec(name).unwrap_or_else(|| panic!("{name} not in the table"));
        let v = dummy(s);
        let under = name.replace('-', "_");
        let mut forms = vec![
            vec![format!("--{name}={v}")],
            vec![format!("--{under}={v}")],
        ];
        if optional_value(s.kind) {
            if !matches!(s.target, Target::Refuse(_)) {
                forms.push(vec![format!("--{name}")]);
            }
        } else {
            forms.push(vec![format!("--{name}"), v.clone()]);
            forms.push(vec![format!("--{under}"), v.clone()]);
        }
        for args in forms {
            match parse(args.iter()) {
                Ok(_) => {}
                Err(e) if e.is_info() && matches!(s.target, Target::Help | Target::Version) => {}
                Err(e) => panic!("{args:?}: {e}"),
            }
        }
    }
}

#[test]
fn every_config_flag_acts_as_its_field() {
    for s in table() {
        let Target::Config(path) = s.target else {
            continue;
        };
        let parsed = ok(&[&format!("--{}={}", s.name, dummy(s))]);
        assert_eq!(parsed.overlay.len(), 1, "{}", s.name);
        assert_eq!(parsed.overlay[0].path, path);
        // Honoured, ignored (reported) or refused naming the flag; nothing else.
        match parse_with_overlay(None, None, &parsed.overlay) {
            Ok(_) => {}
            Err(ConfigError::Flag { flag, message }) => {
                assert_eq!(flag, s.name);
                assert!(message.contains(path[0]), "{message}");
            }
            Err(e) => panic!("--{}: {e}", s.name),
        }
    }
}

#[test]
fn no_flags_give_the_defaults() {
    let parsed = ok(&[]);
    assert_eq!(parsed.flags, KubeletFlags::default());
    assert!(parsed.overlay.is_empty() && parsed.warnings.is_empty());
    let f = parsed.flags;
    assert_eq!(f.container_runtime_endpoint, DEFAULT_RUNTIME_ENDPOINT);
    assert_eq!(f.container_runtime, "remote");
    assert_eq!(f.root_dir, "/var/lib/kubelet");
    assert!(f.register_node && f.register_schedulable);
}

#[test]
fn kubeadms_command_line_parses() {
    let parsed = ok(&[
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
        "--container-runtime=remote",
        "--container-runtime-endpoint=/run/containerd/containerd.sock",
        "--pod-infra-container-image=k8s.gcr.io/pause:3.2",
        "--network-plugin=cni",
        "--cgroup-driver=systemd",
        "--hostname-override=Node-1",
        "--register-with-taints=node-role.kubernetes.io/master:NoSchedule",
        "--node-labels=node.kubernetes.io/pool=a",
        "--cgroup-root=/kadm-n1",
        "--provider-id=kadm://n1",
        "--pod-manifest-path=/etc/kubernetes/manifests",
        "--rotate-certificates",
    ]);
    let f = &parsed.flags;
    assert_eq!(
        f.bootstrap_kubeconfig.as_deref(),
        Some("/etc/kubernetes/bootstrap-kubelet.conf")
    );
    assert_eq!(
        f.kubeconfig.as_deref(),
        Some("/etc/kubernetes/kubelet.conf")
    );
    assert_eq!(f.config.as_deref(), Some("/var/lib/kubelet/config.yaml"));
    assert_eq!(
        f.container_runtime_endpoint,
        "/run/containerd/containerd.sock"
    );
    assert_eq!(f.hostname_override.as_deref(), Some("Node-1"));
    assert_eq!(
        f.register_with_taints,
        ["node-role.kubernetes.io/master:NoSchedule"]
    );
    assert_eq!(f.node_labels, ["node.kubernetes.io/pool=a"]);
    assert_eq!(overlay(&parsed, "cgroup-driver"), "systemd");
    assert_eq!(overlay(&parsed, "cgroup-root"), "/kadm-n1");
    assert_eq!(overlay(&parsed, "provider-id"), "kadm://n1");
    assert_eq!(
        overlay(&parsed, "pod-manifest-path"),
        "/etc/kubernetes/manifests"
    );
    assert_eq!(overlay(&parsed, "rotate-certificates"), true);
    // kubeadm's pause image is upstream's default: nothing to say.
    assert!(
        !parsed
            .warnings
            .iter()
            .any(|w| w.contains("--pod-infra-container-image"))
    );
    assert!(
        ok(&["--pod-infra-container-image=k8s.gcr.io/pause:3.4.1"]).warnings[0]
            .starts_with("flag --pod-infra-container-image has no effect in kubelet-rs")
    );
    assert!(
        parsed
            .warnings
            .iter()
            .any(|w| w.starts_with("flag --network-plugin has no effect"))
    );
}

#[test]
fn underscores_are_dashes_in_names_only() {
    let parsed = ok(&[
        "--max_pods=50",
        "--hostname_override",
        "my_host",
        "--log_dir=/var/log/k_8s",
        "--node_labels",
        "a_b=c_d",
    ]);
    assert_eq!(overlay(&parsed, "max-pods"), 50);
    assert_eq!(parsed.flags.hostname_override.as_deref(), Some("my_host"));
    assert_eq!(parsed.flags.node_labels, ["a_b=c_d"]);
    assert!(
        parsed
            .warnings
            .iter()
            .any(|w| w.starts_with("flag --log-dir has no effect"))
    );
    // A value that looks like a flag is still the value.
    let parsed = ok(&["--hostname-override", "--not_a_flag"]);
    assert_eq!(
        parsed.flags.hostname_override.as_deref(),
        Some("--not_a_flag")
    );
    let parsed = ok(&["--oom-score-adj", "-999"]);
    assert_eq!(overlay(&parsed, "oom-score-adj"), -999);
}

#[test]
fn bool_forms() {
    assert_eq!(overlay(&ok(&["--fail-swap-on"]), "fail-swap-on"), true);
    for f in ["false", "False", "FALSE", "0", "f", "F"] {
        let parsed = ok(&[&format!("--fail-swap-on={f}")]);
        assert_eq!(overlay(&parsed, "fail-swap-on"), false, "{f}");
    }
    for t in ["true", "True", "TRUE", "1", "t", "T"] {
        assert!(
            ok(&["--register-node=false", &format!("--register-node={t}")])
                .flags
                .register_node
        );
    }
    assert!(!ok(&["--register-node=false"]).flags.register_node);
    assert!(
        ok(&["--register-node=false", "--register-node"])
            .flags
            .register_node
    );
    assert!(
        !ok(&["--register-node", "--register-node=false"])
            .flags
            .register_node
    );
    assert!(
        !ok(&["--register-schedulable=false"])
            .flags
            .register_schedulable
    );
    assert!(
        ok(&["--exit-on-lock-contention"])
            .flags
            .exit_on_lock_contention
    );
    // pflag does not take a separate word for a bool: `false` is then a positional argument.
    assert!(matches!(
        p(&["--fail-swap-on", "false"]),
        Err(FlagsError::Syntax(_))
    ));
    assert_eq!(
        p(&["--register-node=maybe"]).unwrap_err().to_string(),
        "invalid argument \"maybe\" for \"--register-node\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
    );
}

#[test]
fn verbosity_forms() {
    for args in [
        &["-v", "3"][..],
        &["-v=3"],
        &["-v3"],
        &["--v=3"],
        &["--v", "3"],
    ] {
        assert_eq!(ok(args).flags.verbosity, 3, "{args:?}");
    }
    assert!(matches!(
        p(&["-v=x"]),
        Err(FlagsError::Value { flag: "v", .. })
    ));
}

#[test]
fn integers_as_go_parses_them() {
    assert_eq!(overlay(&ok(&["--max-pods=0x10"]), "max-pods"), 16);
    assert_eq!(overlay(&ok(&["--max-pods=010"]), "max-pods"), 8);
    assert_eq!(overlay(&ok(&["--max-pods=+7"]), "max-pods"), 7);
    for bad in ["abc", "1.5", "2147483648", "", "1_000"] {
        assert!(
            matches!(
                p(&[&format!("--max-pods={bad}")]),
                Err(FlagsError::Value {
                    flag: "max-pods",
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert_eq!(overlay(&ok(&["--pod-max-pids=4096"]), "pod-max-pids"), 4096);
    assert!(p(&["--log-file-max-size=-1"]).is_err());
    assert_eq!(overlay(&ok(&["--kube-api-qps=20"]), "kube-api-qps"), 20);
}

#[test]
fn durations_are_go_duration_strings() {
    let parsed = ok(&[
        "--sync-frequency=90s",
        "--node-status-update-frequency",
        "1m",
    ]);
    assert_eq!(overlay(&parsed, "sync-frequency"), "1m30s");
    assert_eq!(overlay(&parsed, "node-status-update-frequency"), "1m0s");
    assert!(matches!(
        p(&["--sync-frequency=10"]),
        Err(FlagsError::Value {
            flag: "sync-frequency",
            ..
        })
    ));
}

#[test]
fn slices_replace_then_append() {
    let parsed = ok(&[
        "--cluster-dns=10.0.0.10",
        "--cluster-dns",
        "10.0.0.11,10.0.0.12",
    ]);
    assert_eq!(
        overlay(&parsed, "cluster-dns"),
        &serde_json::json!(["10.0.0.10", "10.0.0.11", "10.0.0.12"])
    );
    assert_eq!(
        overlay(
            &ok(&["--allowed-unsafe-sysctls="]),
            "allowed-unsafe-sysctls"
        ),
        &serde_json::json!([])
    );
    assert_eq!(
        overlay(
            &ok(&[r#"--tls-cipher-suites="A,B",C"#]),
            "tls-cipher-suites"
        ),
        &serde_json::json!(["A,B", "C"])
    );
}

#[test]
fn maps_in_each_syntax() {
    let parsed = ok(&[
        "--kube-reserved=cpu=100m, memory = 1Gi",
        "--kube-reserved=cpu=200m,ephemeral-storage=1Gi",
        "--eviction-hard=memory.available<100Mi,nodefs.available<10%",
        "--manifest-url-header=a:x,b:y",
        "--manifest-url-header",
        "a:z",
        "--feature-gates=GracefulNodeShutdown=true",
    ]);
    assert_eq!(
        overlay(&parsed, "kube-reserved"),
        &serde_json::json!({"cpu": "200m", "memory": "1Gi", "ephemeral-storage": "1Gi"})
    );
    assert_eq!(
        overlay(&parsed, "eviction-hard"),
        &serde_json::json!({"memory.available": "100Mi", "nodefs.available": "10%"})
    );
    assert_eq!(
        overlay(&parsed, "manifest-url-header"),
        &serde_json::json!({"a": ["x", "z"], "b": ["y"]})
    );
    assert_eq!(
        overlay(&parsed, "feature-gates"),
        &serde_json::json!({"GracefulNodeShutdown": true})
    );
    for (args, message) in [
        (
            "--kube-reserved=cpu",
            "malformed pair, expect string=string",
        ),
        (
            "--eviction-hard=memory.available=1Gi",
            "malformed pair, expect string<string",
        ),
        (
            "--manifest-url-header=a",
            "malformed pair, expect string:string",
        ),
        (
            "--feature-gates=GracefulNodeShutdown=yes",
            "invalid value of GracefulNodeShutdown: yes, err: strconv.ParseBool: parsing \"yes\": invalid syntax",
        ),
    ] {
        match p(&[args]) {
            Err(FlagsError::Value { message: m, .. }) => assert_eq!(m, message, "{args}"),
            other => panic!("{args}: {other:?}"),
        }
    }
    // --node-labels is upstream's ConfigurationMap: a key alone is `key=`.
    assert_eq!(
        ok(&["--node-labels=a", "--node-labels=b=c"])
            .flags
            .node_labels,
        ["a", "b=c"]
    );
}

#[test]
fn taints_are_validated_and_the_last_use_wins() {
    let parsed = ok(&[
        "--register-with-taints=a=b:NoSchedule",
        "--register-with-taints=example.com/c:NoExecute,d=e:PreferNoSchedule",
    ]);
    let taints = parsed.flags.taints().unwrap();
    assert_eq!(
        taints,
        [
            Taint {
                key: "example.com/c".into(),
                value: String::new(),
                effect: TaintEffect::NoExecute
            },
            Taint {
                key: "d".into(),
                value: "e".into(),
                effect: TaintEffect::PreferNoSchedule
            },
        ]
    );
    let k = taints[1].to_k8s();
    assert_eq!(
        (k.key.as_str(), k.value.as_deref(), k.effect.as_str()),
        ("d", Some("e"), "PreferNoSchedule")
    );
    assert_eq!(taints[0].to_k8s().value, None);
    assert!(
        ok(&[
            "--register-with-taints=a:NoSchedule",
            "--register-with-taints="
        ])
        .flags
        .register_with_taints
        .is_empty()
    );
    for (bad, why) in [
        ("a=b:Sometimes", "unsupported taint effect \"Sometimes\""),
        ("a=b", "missing effect"),
        ("a=b=c:NoSchedule", "more than one '='"),
        ("a:b:NoSchedule", "expected <key>=<value>:<effect>"),
        ("-a:NoSchedule", "key:"),
        ("Bad_Prefix/a:NoSchedule", "prefix"),
        ("a=-b:NoSchedule", "value:"),
    ] {
        let e = p(&[&format!("--register-with-taints={bad}")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "invalid argument {:?} for \"--register-with-taints\" flag: invalid taint spec",
                bad
            )) && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn deprecated_flags_warn_once_as_upstream() {
    let parsed = ok(&[
        "--max-pods=50",
        "--max-pods=60",
        "--experimental-bootstrap-kubeconfig=/b.conf",
        "--register-schedulable=false",
    ]);
    assert_eq!(
        parsed.warnings,
        [
            "Flag --max-pods has been deprecated, This parameter should be set via the config file specified by the Kubelet's --config flag. See https://kubernetes.io/docs/tasks/administer-cluster/kubelet-config-file/ for more information.",
            "Flag --experimental-bootstrap-kubeconfig has been deprecated, Use --bootstrap-kubeconfig",
            "Flag --register-schedulable has been deprecated, will be removed in a future version",
        ]
    );
    assert_eq!(overlay(&parsed, "max-pods"), 60);
    assert_eq!(
        parsed.flags.bootstrap_kubeconfig.as_deref(),
        Some("/b.conf")
    );
}

#[test]
fn ignored_flags_warn_unless_at_their_default() {
    assert!(
        ok(&["--logtostderr=true", "--stderrthreshold=2"])
            .warnings
            .is_empty()
    );
    let parsed = ok(&[
        "--containerd=/srv/containerd.sock",
        "--docker-root=/srv/docker",
    ]);
    assert_eq!(
        parsed.warnings,
        [
            "Flag --containerd has been deprecated, This is a cadvisor flag that was mistakenly registered with the Kubelet. Due to legacy concerns, it will follow the standard CLI deprecation timeline before being removed.",
            "flag --containerd has no effect in kubelet-rs: there is no cAdvisor in kubelet-rs",
            "flag --docker-root has no effect in kubelet-rs: there is no cAdvisor in kubelet-rs",
        ]
    );
    assert!(p(&["--stderrthreshold=LOUD"]).is_err());
    assert!(p(&["--vmodule=a=b"]).is_err());
    assert!(p(&["--log-backtrace-at=nofile"]).is_err());
}

#[test]
fn refused_flags_name_the_flag_and_the_reason() {
    let mut n = 0;
    for s in table() {
        let Target::Refuse(reason) = s.target else {
            continue;
        };
        n += 1;
        let arg = if s.kind == Kind::Bool {
            format!("--{}", s.name)
        } else {
            format!("--{}=/x", s.name)
        };
        let e = p(&[&arg]).unwrap_err();
        assert!(
            matches!(e, FlagsError::Refused { flag, reason: r, .. } if flag == s.name && r == reason),
            "{arg}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("flag --{}=", s.name)) && text.ends_with(reason),
            "{text}"
        );
        // At the default (or set back to it) it is accepted.
        ok(&[&format!("--{}={}", s.name, dummy(s))]);
        ok(&[&arg, &format!("--{}={}", s.name, dummy(s))]);
    }
    assert_eq!(n, 9);
    assert_eq!(
        p(&["--cloud-provider=external"]).unwrap_err().to_string(),
        "flag --cloud-provider=\"external\" is not supported by kubelet-rs: in-tree cloud providers are not built"
    );
}

/// kubeadm's preflight (`cmd/kubeadm/app/preflight/checks.go`, KubeletVersionCheck).
const KUBEADM_VERSION_RE: &str =
    r"^\s*Kubernetes v((0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-0-9a-zA-Z_\.+]*)?)\s*$";

#[test]
fn version_satisfies_kubeadm() {
    let re = regex::Regex::new(KUBEADM_VERSION_RE).unwrap();
    let FlagsError::Version(text) = p(&["--version"]).unwrap_err() else {
        panic!("not a version")
    };
    assert_eq!(
        text,
        format!(
            "Kubernetes v1.20.2-kubelet-rs.{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let printed = format!("{text}\n");
    let caps = re.captures(&printed).unwrap();
    assert_eq!((&caps[2], &caps[3], &caps[4]), ("1", "20", "2"));
    assert_eq!(
        p(&["--version=true"]).unwrap_err(),
        FlagsError::Version(text)
    );
    let FlagsError::Version(raw) = p(&["--version=raw"]).unwrap_err() else {
        panic!("not a version")
    };
    assert!(
        raw.starts_with("version.Info{Major:\"1\", Minor:\"20\", GitVersion:\"v1.20.2-kubelet-rs."),
        "{raw}"
    );
    assert!(ok(&["--version=false"]).warnings.is_empty());
    assert!(matches!(
        p(&["--version=maybe"]),
        Err(FlagsError::Value { .. })
    ));
    // Version is answered before refusals, as upstream (which refuses later, at start).
    assert!(
        p(&["--cloud-provider=aws", "--version"])
            .unwrap_err()
            .is_info()
    );
}

#[test]
fn help() {
    for h in ["-h", "--help", "--help=true"] {
        let FlagsError::Help(text) = p(&[h]).unwrap_err() else {
            panic!("{h}: not help")
        };
        assert!(text.contains("--max-pods <int32>"), "{text}");
        assert!(text.contains("-v, --v <Level>"), "{text}");
    }
    assert!(ok(&["--help=false"]).warnings.is_empty());
}

#[test]
fn unknown_flags_and_positional_arguments_are_errors() {
    for args in [
        &["--no-such-flag"][..],
        &["--no-such-flag=1"],
        &["run"],
        &["--max-pods=5", "--", "x"],
        &["-x"],
        &["--max-pods"],
    ] {
        assert!(matches!(p(args), Err(FlagsError::Syntax(_))), "{args:?}");
    }
    let e = p(&["--no-such-flag"]).unwrap_err().to_string();
    assert!(e.contains("--no-such-flag"), "{e}");
}

#[test]
fn the_last_of_two_flags_for_one_field_wins() {
    let parsed = ok(&[
        "--kernel-memcg-notification=false",
        "--experimental-kernel-memcg-notification=true",
    ]);
    let flags: Vec<_> = parsed.overlay.iter().map(|o| o.flag).collect();
    assert_eq!(
        flags,
        [
            "kernel-memcg-notification",
            "experimental-kernel-memcg-notification"
        ]
    );
}

const FILE: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

fn load(file: Option<&str>, args: &[&str]) -> Result<crate::Loaded, ConfigError> {
    let parsed = ok(args);
    parse_with_overlay(file.map(|_| "k.yaml"), file, &parsed.overlay)
}

#[test]
fn flags_beat_the_file() {
    let file = format!(
        "{FILE}maxPods: 20\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 1m\nkubeReserved:\n  cpu: 1\n  memory: 1Gi\nfeatureGates:\n  GracefulNodeShutdown: true\nshutdownGracePeriod: 30s\n"
    );
    let c = load(
        Some(&file),
        &[
            "--max-pods=50",
            "--anonymous-auth",
            "--kube-reserved=cpu=2",
            "--feature-gates=",
            "--cgroup-driver=systemd",
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.max_pods, 50);
    assert!(c.authentication.anonymous.enabled);
    // Siblings of the flag's field stay as the file has them.
    assert_eq!(c.authentication.webhook.cache_ttl, Duration::from_secs(60));
    // A map flag replaces the file's map...
    assert_eq!(
        c.kube_reserved,
        BTreeMap::from([("cpu".to_string(), "2".to_string())])
    );
    // ...but feature gates merge, gate by gate.
    assert!(c.graceful_node_shutdown());
    assert_eq!(c.cgroup_driver, crate::CgroupDriver::Systemd);
    let e = load(Some(&file), &["--feature-gates=GracefulNodeShutdown=false"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid value for shutdownGracePeriod: requires feature gate GracefulNodeShutdown"
    );
}

use std::time::Duration;

#[test]
fn without_a_file_flags_apply_over_the_secure_defaults() {
    let c = load(None, &["--max-pods=50", "--read-only-port=0"])
        .unwrap()
        .config;
    let want = crate::KubeletConfiguration {
        max_pods: 50,
        ..Default::default()
    };
    assert_eq!(c, want);
    // Not upstream's legacy defaults.
    assert!(!c.authentication.anonymous.enabled);
    assert!(c.authentication.webhook.enabled);
    assert_eq!(c.authorization.mode, crate::AuthorizationMode::Webhook);
    assert_eq!(c.read_only_port, 0);
}

#[test]
fn a_config_flag_is_honoured_ignored_or_refused_as_its_field() {
    let l = load(
        None,
        &["--volume-stats-agg-period=2m", "--logging-format=json"],
    )
    .unwrap();
    assert_eq!(l.unsupported, ["volumeStatsAggPeriod"]);
    assert_eq!(l.config.logging.format, "json");
    assert!(
        load(None, &["--logging-format=xml"])
            .unwrap_err()
            .to_string()
            .contains("Unsupported log format")
    );
    assert!(load(None, &["--experimental-logging-sanitization"]).is_err());
    assert!(
        load(Some(FILE), &["--rotate-certificates"])
            .unwrap()
            .config
            .rotate_certificates
    );
    assert_eq!(
        load(Some(FILE), &["--image-gc-high-threshold=90"])
            .unwrap()
            .config
            .image_gc_high_threshold_percent,
        90
    );
    assert!(
        load(Some(FILE), &["--kernel-memcg-notification"])
            .unwrap()
            .config
            .kernel_memcg_notification
    );
    let e = load(Some(FILE), &["--registry-qps=6"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid flag --registry-qps: registryPullQPS: is not supported by kubelet-rs yet: only its default (5) is accepted, got 6"
    );
    let e = load(Some(FILE), &["--healthz-port=70000"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid flag --healthz-port: healthzPort: "),
        "{e}"
    );
    let e = load(None, &["--feature-gates=DynamicKubeletConfig=true"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "invalid flag --feature-gates: featureGates: DynamicKubeletConfig is not supported"
        ),
        "{e}"
    );
    let e = load(None, &["--cgroup-driver=upstart"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid flag --cgroup-driver: cgroupDriver: "),
        "{e}"
    );
    // The file's own error stays the file's.
    let e = load(Some(&format!("{FILE}maxPods: many\n")), &["--port=10251"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config file k.yaml: field maxPods: "), "{e}");
    // Upstream's defaults for the default-only fields are accepted as flags.
    load(
        Some(FILE),
        &[
            "--cgroups-per-qos=true",
            "--enforce-node-allocatable=pods",
            "--image-gc-high-threshold=85",
            "--minimum-image-ttl-duration=2m",
            "--cgroup-root=",
        ],
    )
    .unwrap();
}

#[test]
fn cgroup_root_flag_sets_its_field() {
    // kubeadm's end-to-end environment: two kubelets on one host, each under its own root.
    let c = load(None, &["--cgroup-root=/kadm-n1"]).unwrap().config;
    assert_eq!(c.cgroup_root, "/kadm-n1");
    let c = load(Some(FILE), &["--cgroup-root=/kadm-n2"])
        .unwrap()
        .config;
    assert_eq!(
        c.cgroup_layout().kubepods().to_cgroupfs(),
        "/kadm-n2/kubepods"
    );
    let e = load(None, &["--cgroup-root=kadm"]).unwrap_err().to_string();
    assert!(
        e.starts_with("invalid flag --cgroup-root: cgroupRoot: \"kadm\" must be an absolute"),
        "{e}"
    );
    // Refused under systemd, whichever of the two comes from the file.
    let e = load(
        Some(&format!("{FILE}cgroupDriver: systemd\n")),
        &["--cgroup-root=/kadm-n1"],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("with cgroupDriver systemd"), "{e}");
    let e = load(None, &["--cgroup-driver=systemd", "--cgroup-root=/kadm-n1"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("with cgroupDriver systemd"), "{e}");
}

#[test]
fn static_pod_flags_set_their_fields() {
    let c = load(
        Some(FILE),
        &[
            "--pod-manifest-path=/etc/kubernetes/manifests",
            "--file-check-frequency=5s",
            "--manifest-url=http://127.0.0.1/pods",
            "--manifest-url-header=a:x,a:y",
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.static_pod_path, "/etc/kubernetes/manifests");
    assert_eq!(c.file_check_frequency, Duration::from_secs(5));
    assert_eq!(c.static_pod_url, "http://127.0.0.1/pods");
    assert_eq!(
        c.static_pod_url_header,
        BTreeMap::from([("a".to_string(), vec!["x".to_string(), "y".to_string()])])
    );
}
