//! Node registration and status updates against the in-memory API server, on a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_trait::async_trait;
use common::Task;
use k8s_openapi::api::core::v1::{ContainerImage, Node};
use kubelet_api::NodeClient;
use kubelet_api::fake::FakeApi;
use kubelet_api::kubelet_node_status::{NodeFacts, NodeStatusManager};
use kubelet_core::clock::FakeClock;
use kubelet_core::machine::{FsStats, MachineInfo};
use kubelet_core::nodestatus::{NodeInputs, RuntimeCondition, RuntimeState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug)]
struct Facts {
    pressure: Mutex<Vec<String>>,
    runtime: watch::Receiver<RuntimeState>,
}

#[async_trait]
impl NodeFacts for Facts {
    async fn images(&self) -> Vec<ContainerImage> {
        vec![]
    }

    fn inputs(&self, images: &[ContainerImage]) -> NodeInputs {
        NodeInputs {
            machine: MachineInfo {
                num_cpus: 2,
                memory_bytes: 4 << 30,
                architecture: "amd64".into(),
                ..Default::default()
            },
            root_fs: FsStats {
                capacity_bytes: 100 << 30,
                available_bytes: 50 << 30,
                ..Default::default()
            },
            pressure: self.pressure.lock().unwrap().clone(),
            runtime: self.runtime.borrow().clone(),
            images: images.to_vec(),
            addresses: vec![],
            port: 10250,
            max_pods: 110,
            eviction_hard: BTreeMap::from([("memory.available".into(), "100Mi".into())]),
            reserved: Default::default(),
            health_errors: vec![],
        }
    }
}

fn ready_runtime() -> RuntimeState {
    let cond = |kind: &str| RuntimeCondition {
        kind: kind.into(),
        status: true,
        reason: String::new(),
        message: String::new(),
    };
    RuntimeState {
        synced: Some(true),
        version: "containerd://1.6.20".into(),
        conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
        error: None,
    }
}

struct Setup {
    api: FakeApi,
    facts: Arc<Facts>,
    runtime: watch::Sender<RuntimeState>,
    registered: watch::Receiver<bool>,
    task: Task,
}

fn start(api: FakeApi) -> Setup {
    start_with(api, Default::default())
}

fn start_with(api: FakeApi, registration: kubelet_core::nodestatus::Registration) -> Setup {
    let (tx, rx) = watch::channel(ready_runtime());
    let (registered_tx, registered) = watch::channel(false);
    let facts = Arc::new(Facts {
        pressure: Mutex::default(),
        runtime: rx.clone(),
    });
    let m = NodeStatusManager {
        api: Arc::new(api.clone()),
        node_name: "n1".into(),
        facts: facts.clone(),
        runtime_state: rx,
        clock: FakeClock::new(),
        labels: BTreeMap::from([("kubernetes.io/hostname".into(), "n1".into())]),
        update_frequency: Duration::from_secs(10),
        register: true,
        registration,
        registered: registered_tx,
        kick: Default::default(),
        recorder: kubelet_api::events::Recorder::disabled(),
    };
    Setup {
        api,
        facts,
        runtime: tx,
        registered,
        task: Task::spawn(|cancel| m.run(cancel)),
    }
}

impl Setup {
    async fn stop(self) {
        self.task.stop().await;
    }
}

fn condition(n: &Node, kind: &str) -> (String, Option<String>) {
    let c = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(start_paused = true)]
async fn registers_then_reports_every_update_period() {
    let mut s = start(FakeApi::new());
    assert!(!*s.registered.borrow(), "not before the Node exists");
    s.api.wait_for(|st| st.nodes.contains_key("n1")).await;
    s.registered.wait_for(|r| *r).await.unwrap();
    let n = s.api.get_node("n1").await.unwrap();
    assert_eq!(condition(&n, "Ready").0, "True");
    assert_eq!(n.metadata.labels.unwrap()["kubernetes.io/hostname"], "n1");
    assert_eq!(
        n.status.unwrap().capacity.unwrap()["cpu"].0,
        "2",
        "capacity from the host's facts"
    );
    // Unchanged: one patch per period.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let patches = s.api.state().node_status_patches;
    assert!((3..=4).contains(&patches), "{patches} patches in 35 s");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_runtime_change_is_reported_at_once() {
    let s = start(FakeApi::new());
    s.api.wait_for(|st| st.nodes.contains_key("n1")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rs = ready_runtime();
    rs.conditions[0].status = false;
    rs.conditions[0].reason = "Broken".into();
    s.runtime.send(rs).unwrap();
    s.api
        .wait_for(|st| {
            st.nodes["n1"]
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "False"))
        })
        .await;
    let n = s.api.get_node("n1").await.unwrap();
    assert_eq!(
        condition(&n, "Ready"),
        ("False".to_string(), Some("KubeletNotReady".to_string()))
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn memory_pressure_shows_within_a_period() {
    let s = start(FakeApi::new());
    s.api.wait_for(|st| st.nodes.contains_key("n1")).await;
    // The eviction manager's verdict, as the node status reads it.
    *s.facts.pressure.lock().unwrap() = vec!["MemoryPressure".into(), "PIDPressure".into()];
    tokio::time::sleep(Duration::from_secs(11)).await;
    let n = s.api.get_node("n1").await.unwrap();
    assert_eq!(condition(&n, "MemoryPressure").0, "True");
    assert_eq!(
        condition(&n, "PIDPressure"),
        ("True".into(), Some("KubeletHasInsufficientPID".into()))
    );
    assert_eq!(condition(&n, "DiskPressure").0, "False");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_existing_node_is_reconciled_not_replaced() {
    let api = FakeApi::new();
    let mut old = Node::default();
    old.metadata.name = Some("n1".into());
    old.metadata.labels = Some(BTreeMap::from([("keep".into(), "me".into())]));
    api.create_node(&old).await.unwrap();
    let s = start(api);
    s.api
        .wait_for(|st| st.calls.iter().any(|c| c == "patch_node"))
        .await;
    let n = s.api.get_node("n1").await.unwrap();
    let labels = n.metadata.labels.unwrap();
    assert_eq!(labels["keep"], "me");
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(
        n.metadata.annotations.unwrap()["volumes.kubernetes.io/controller-managed-attach-detach"],
        "true"
    );
    s.stop().await;
}

/// Taints, schedulability and the provider ID go on the Node when it is created, and are
/// left alone on an existing one (NodeRestriction forbids a node to change its taints).
#[tokio::test(start_paused = true)]
async fn registration_sets_taints_unschedulable_and_provider_id() {
    let taint = |key: &str, value: Option<&str>, effect: &str| k8s_openapi::api::core::v1::Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    };
    let reg = kubelet_core::nodestatus::Registration {
        taints: vec![taint("example.com/t", Some("x"), "NoSchedule")],
        unschedulable: true,
        provider_id: "kadm://n1".into(),
    };
    let s = start_with(FakeApi::new(), reg.clone());
    s.api.wait_for(|st| st.nodes.contains_key("n1")).await;
    let spec = s.api.get_node("n1").await.unwrap().spec.unwrap();
    assert_eq!(spec.provider_id.as_deref(), Some("kadm://n1"));
    assert_eq!(spec.unschedulable, Some(true));
    assert_eq!(
        spec.taints.unwrap(),
        vec![
            taint("example.com/t", Some("x"), "NoSchedule"),
            taint("node.kubernetes.io/unschedulable", None, "NoSchedule"),
        ]
    );
    s.stop().await;

    let api = FakeApi::new();
    let mut old = Node::default();
    old.metadata.name = Some("n1".into());
    api.create_node(&old).await.unwrap();
    let s = start_with(api, reg);
    s.api
        .wait_for(|st| st.calls.iter().any(|c| c == "patch_node"))
        .await;
    let spec = s.api.get_node("n1").await.unwrap().spec.unwrap_or_default();
    assert!(spec.taints.is_none() && spec.provider_id.is_none());
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_updates_are_retried_each_second() {
    let api = FakeApi::new();
    api.fail("patch_node_status", 3, 500);
    let s = start(api);
    s.api.wait_for(|st| st.node_status_patches >= 1).await;
    assert_eq!(s.api.count("patch_node_status"), 4);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn registration_is_retried_until_it_succeeds() {
    let api = FakeApi::new();
    api.fail("create_node", 4, 503);
    let s = start(api);
    s.api.wait_for(|st| st.nodes.contains_key("n1")).await;
    assert_eq!(s.api.count("create_node"), 5);
    s.stop().await;
}
