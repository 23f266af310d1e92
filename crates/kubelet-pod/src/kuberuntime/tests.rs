use super::container::*;
use super::*;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::clock::SystemClock;
use kubelet_cri::fake::FakeRuntime;

pub(crate) fn manager(rt: Arc<FakeRuntime>, logs: &std::path::Path) -> RuntimeManager {
    RuntimeManager {
        rt,
        runtime_name: "fake".into(),
        cfg: RuntimeConfig {
            cluster_dns: vec!["10.0.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host_dns: DnsConfig::default(),
            pod_logs_root: logs.join("pods"),
            container_logs_root: logs.join("containers"),
            pod_pids_limit: -1,
            root_dir: logs.join("root"),
            host_ip: None,
            gc_policy: Default::default(),
            allocatable: Default::default(),
            cgroup_driver: kubelet_core::cm::Driver::Cgroupfs,
            cgroup_layout: Default::default(),
            memory_capacity: 4 << 30,
        },
        recorder: Recorder::disabled(),
        clock: Arc::new(SystemClock),
        secrets: None,
        cgroups: Some(Arc::new(kubelet_host::cgroups::FakeCgroups::default())),
        qos_changed: Default::default(),
        exited: Default::default(),
        volumes: Arc::new(crate::volume_manager::VolumeManager::new(
            logs.join("root"),
            Arc::new(kubelet_host::mount::FakeMounter::default()),
            None,
            Recorder::disabled(),
            Arc::new(SystemClock),
        )),
    }
}

pub(crate) fn pod(image: &str, policy: &str, restart: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                image_pull_policy: Some(policy.into()),
                ..Default::default()
            }],
            restart_policy: Some(restart.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "krs-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A scratch directory, removed when the test ends (also on failure).
pub(crate) struct Scratch(pub(crate) PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A manager over a fake runtime that has `images`.
fn fixture(images: &[&str]) -> (Arc<FakeRuntime>, Scratch, RuntimeManager) {
    let rt = Arc::new(FakeRuntime::with_images(images));
    let dir = Scratch(tmp());
    let m = manager(rt.clone(), &dir);
    (rt, dir, m)
}

#[tokio::test]
async fn starts_then_keeps_a_pod() {
    let (rt, dir, m) = fixture(&["busybox"]);
    let p = pod("busybox", "Never", "Always");
    let mut ws = WorkerState::default();
    let st = m.pod_status("u1").await.unwrap();
    let res = m.sync_pod(&p, &st, &mut ws).await;
    assert!(
        res.changed && res.failures.is_empty() && res.error.is_none(),
        "{res:?}"
    );
    assert_eq!(rt.running_containers(), vec!["c"]);
    let st = m.pod_status("u1").await.unwrap();
    assert_eq!(st.containers[0].state, ContainerState::Running);
    assert_eq!(st.sandboxes[0].ip, "10.88.0.3");
    rt.clear_calls();
    let res = m.sync_pod(&p, &st, &mut ws).await;
    assert!(!res.changed);
    assert!(
        rt.calls().is_empty(),
        "a synced pod costs no runtime calls: {:?}",
        rt.calls()
    );
    assert!(dir.join("pods/ns_p_u1/c").is_dir());
    m.remove_pod(&PodRef::of(&p), &st).await.unwrap();
    assert_eq!(rt.sandbox_count(), 0);
    assert!(!dir.join("pods/ns_p_u1").exists());
}

#[tokio::test]
async fn dead_sandbox_is_recreated_then_removed() {
    let (rt, _dir, m) = fixture(&["busybox"]);
    let p = pod("busybox", "Never", "Always");
    let mut ws = WorkerState::default();
    m.sync_pod(&p, &PodStatus::default(), &mut ws).await;
    let st = m.pod_status("u1").await.unwrap();
    let old = st.sandboxes[0].id.clone();
    rt.kill_sandbox(&old);
    let st = m.pod_status("u1").await.unwrap();
    let res = m.sync_pod(&p, &st, &mut ws).await;
    assert!(res.changed && res.error.is_none(), "{res:?}");
    let st = m.pod_status("u1").await.unwrap();
    assert_eq!(st.sandboxes.len(), 2);
    assert_eq!(st.sandboxes[0].attempt, 1);
    assert_eq!(
        st.find("c").unwrap().restart_count,
        1,
        "the restart count carries over"
    );
    // The next sync removes the dead sandbox: its container has a newer run.
    m.sync_pod(&p, &st, &mut ws).await;
    let st = m.pod_status("u1").await.unwrap();
    assert_eq!(st.sandboxes.len(), 1);
    assert_ne!(st.sandboxes[0].id, old);
    assert_eq!(st.find("c").unwrap().restart_count, 1);
}

#[derive(Debug)]
struct Secrets(k8s_openapi::api::core::v1::Secret);

#[async_trait::async_trait]
impl crate::credentialprovider::SecretSource for Secrets {
    async fn get(
        &self,
        _ns: &str,
        name: &str,
    ) -> Result<k8s_openapi::api::core::v1::Secret, crate::credentialprovider::SourceError> {
        if name == "regcred" {
            Ok(self.0.clone())
        } else {
            Err(crate::credentialprovider::SourceError::secret_not_found(
                name,
            ))
        }
    }
}

#[tokio::test]
async fn pulls_with_image_pull_secrets() {
    let (rt, _dir, mut m) = fixture(&[]);
    rt.serve_image("reg.example/team/app:1", Some("bob"));
    let json = r#"{"auths": {"reg.example": {"username": "bob", "password": "pw"}}}"#;
    m.secrets = Some(Arc::new(Secrets(k8s_openapi::api::core::v1::Secret {
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                k8s_openapi::ByteString(json.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    })));
    let mut p = pod("reg.example/team/app:1", "IfNotPresent", "Always");
    // Without the secret the registry refuses.
    let res = m
        .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
        .await;
    assert_eq!(res.failures["c"].reason, "ErrImagePull");
    assert!(res.failures["c"].message.contains("401"));
    p.spec.as_mut().unwrap().image_pull_secrets = Some(vec![
        k8s_openapi::api::core::v1::LocalObjectReference {
            name: "missing".into(),
        },
        k8s_openapi::api::core::v1::LocalObjectReference {
            name: "regcred".into(),
        },
    ]);
    let st = m.pod_status("u1").await.unwrap();
    let res = m.sync_pod(&p, &st, &mut WorkerState::default()).await;
    assert!(res.failures.is_empty(), "{res:?}");
    assert!(
        rt.calls()
            .contains(&"PullImage reg.example/team/app:1 user=bob".to_string()),
        "{:?}",
        rt.calls()
    );
    assert_eq!(rt.running_containers(), vec!["c"]);
}

#[tokio::test]
async fn never_pull_missing_image_is_reported() {
    let (_rt, _dir, m) = fixture(&[]);
    let p = pod("nothere:1", "Never", "Always");
    let res = m
        .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
        .await;
    let f = &res.failures["c"];
    assert_eq!(f.reason, "ErrImageNeverPull");
    assert_eq!(
        f.message,
        "Container image \"nothere:1\" is not present with pull policy of Never"
    );
    let p = pod("Bad Image", "IfNotPresent", "Always");
    let res = m
        .sync_pod(&p, &PodStatus::default(), &mut WorkerState::default())
        .await;
    assert_eq!(res.failures["c"].reason, "InvalidImageName");
}

#[tokio::test(start_paused = true)]
async fn pull_failure_backs_off() {
    let (_rt, _dir, m) = fixture(&[]);
    let p = pod("example.invalid/x:1", "IfNotPresent", "Always");
    let mut ws = WorkerState::default();
    let res = m.sync_pod(&p, &PodStatus::default(), &mut ws).await;
    assert_eq!(res.failures["c"].reason, "ErrImagePull");
    assert_eq!(res.retry_after, Some(Duration::from_secs(10)));
    let st = m.pod_status("u1").await.unwrap();
    let res = m.sync_pod(&p, &st, &mut ws).await;
    assert_eq!(res.failures["c"].reason, "ImagePullBackOff");
    assert_eq!(
        res.failures["c"].message,
        "Back-off pulling image \"example.invalid/x:1\""
    );
}

#[tokio::test]
async fn runtime_failure_is_an_error_not_a_panic() {
    let (rt, _dir, m) = fixture(&["busybox"]);
    let (p, none) = (pod("busybox", "Never", "Always"), PodStatus::default());
    rt.fail("RunPodSandbox", "network plugin exploded");
    let res = m.sync_pod(&p, &none, &mut WorkerState::default()).await;
    assert_eq!(
        res.error.as_deref(),
        Some("Failed to create pod sandbox: network plugin exploded")
    );
    rt.heal("RunPodSandbox");
    rt.fail(
        "StartContainer",
        "exec: \"nope\": executable file not found in $PATH",
    );
    let res = m.sync_pod(&p, &none, &mut WorkerState::default()).await;
    assert_eq!(res.failures["c"].reason, "RunContainerError");
}

#[test]
fn hostnames_and_resources() {
    let mut p = pod("busybox", "Never", "Always");
    p.metadata.name = Some(format!("{}-.x", "a".repeat(61)));
    assert_eq!(pod_hostname(&p), "a".repeat(61));
    let c = Container {
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(
                [(
                    "cpu".to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("250m".into()),
                )]
                .into(),
            ),
            limits: Some(
                [
                    (
                        "cpu".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
                    ),
                    (
                        "memory".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Mi".into()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = Pod {
        spec: Some(PodSpec {
            containers: vec![c.clone()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = linux_resources(&p, &c, 4 << 30);
    assert_eq!(
        (
            r.cpu_shares,
            r.cpu_quota,
            r.cpu_period,
            r.memory_limit_in_bytes
        ),
        (256, 50_000, 100_000, 64 << 20)
    );
    assert_eq!(
        r.oom_score_adj,
        1000 - 1000 * 64 / 4096,
        "Burstable: by its memory share"
    );
    let best = linux_resources(&Pod::default(), &Container::default(), 4 << 30);
    assert_eq!((best.cpu_shares, best.oom_score_adj), (2, 1000));
}

/// The pod's cgroup is made, handed to the runtime as `cgroup_parent` and removed under the
/// node's `cgroupRoot`; the default root keeps the names of existing nodes.
#[tokio::test]
async fn pod_cgroups_hang_under_the_cgroup_root() {
    for (root, want) in [
        ("", "/kubepods/besteffort/podu1"),
        ("/", "/kubepods/besteffort/podu1"),
        ("/kadm-n1", "/kadm-n1/kubepods/besteffort/podu1"),
        ("/a/b", "/a/b/kubepods/besteffort/podu1"),
    ] {
        let (rt, _dir, mut m) = fixture(&["busybox"]);
        let cgroups = Arc::new(kubelet_host::cgroups::FakeCgroups::default());
        m.cgroups = Some(cgroups.clone());
        m.cfg.cgroup_layout = kubelet_core::cm::CgroupLayout::new(root).unwrap();
        let p = pod("busybox", "Never", "Always");
        let parent = m
            .sandbox_config(&p, 0)
            .linux
            .map(|l| l.cgroup_parent)
            .unwrap_or_default();
        assert_eq!(parent, want, "root {root:?}");
        let mut ws = WorkerState::default();
        let st = m.pod_status("u1").await.unwrap();
        let res = m.sync_pod(&p, &st, &mut ws).await;
        assert!(res.error.is_none(), "{res:?}");
        assert_eq!(rt.running_containers(), vec!["c"]);
        let made: Vec<String> = cgroups.state.lock().unwrap().keys().cloned().collect();
        assert_eq!(made, [want], "root {root:?}");
        let st = m.pod_status("u1").await.unwrap();
        m.remove_pod(&PodRef::of(&p), &st).await.unwrap();
        assert!(cgroups.state.lock().unwrap().is_empty(), "root {root:?}");
    }
    // A Guaranteed pod sits directly under the root's kubepods.
    let (_rt, _dir, mut m) = fixture(&["busybox"]);
    m.cfg.cgroup_layout = kubelet_core::cm::CgroupLayout::new("/kadm-n2").unwrap();
    let mut p = pod("busybox", "Never", "Always");
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let limits = std::collections::BTreeMap::from([
        ("cpu".to_string(), Quantity("1".into())),
        ("memory".to_string(), Quantity("64Mi".into())),
    ]);
    if let Some(s) = p.spec.as_mut() {
        s.containers[0].resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(limits),
            ..Default::default()
        });
    }
    assert_eq!(m.pod_cgroup(&p), "/kadm-n2/kubepods/podu1");
}
