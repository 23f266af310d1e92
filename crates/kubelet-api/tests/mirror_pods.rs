//! Mirror pods against the in-memory API server, on a paused clock: made for static pods,
//! remade when deleted or stale, removed when their static pod goes; static pods' statuses
//! go to their mirrors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Task;
use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use kubelet_api::NodeClient;
use kubelet_api::fake::FakeApi;
use kubelet_api::mirror_client::{MirrorPodManager, MirrorPods};
use kubelet_api::status_manager::StatusManager;
use kubelet_core::config::{CONFIG_MIRROR, Source, stamp, static_pod};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn manifest(name: &str, image: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: kube-system}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n"
    );
    let mut p = static_pod(text.as_bytes(), Source::File, "n1").unwrap();
    stamp(&mut p, Source::File, "t");
    p
}

struct Running {
    api: FakeApi,
    mirrors: MirrorPods,
    statics: Arc<Mutex<Vec<Pod>>>,
    status: StatusManager,
    tasks: Vec<Task>,
}

async fn start(with_node: bool) -> Running {
    start_synced(with_node, true).await
}

async fn start_synced(with_node: bool, synced: bool) -> Running {
    let api = FakeApi::new();
    if with_node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        api.create_node(&n).await.unwrap();
    }
    let mirrors = MirrorPods::default();
    let status = StatusManager::new(Some(Arc::new(api.clone()))).with_mirrors(mirrors.clone());
    let statics: Arc<Mutex<Vec<Pod>>> = Arc::default();
    let m = MirrorPodManager {
        client: Arc::new(api.clone()),
        mirrors: mirrors.clone(),
        statics: {
            let s = statics.clone();
            Arc::new(move || s.lock().unwrap().clone())
        },
        status: status.clone(),
        node: "n1".into(),
        period: Duration::from_secs(10),
        synced: Arc::new(std::sync::atomic::AtomicBool::new(synced)),
    };
    let tasks = vec![
        Task::spawn(|c| m.run(c)),
        Task::spawn(|c| status.clone().run(c)),
    ];
    Running {
        api,
        mirrors,
        statics,
        status,
        tasks,
    }
}

impl Running {
    fn set_statics(&self, pods: Vec<Pod>) {
        *self.statics.lock().unwrap() = pods;
        self.mirrors.kick();
    }

    fn mirror(&self, name: &str) -> Option<Pod> {
        self.api
            .state()
            .pods
            .get(&("kube-system".to_string(), name.to_string()))
            .cloned()
    }

    async fn stop(self) {
        for t in self.tasks {
            t.stop().await;
        }
    }
}

fn hash(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_static_pod_gets_a_mirror_owned_by_the_node() {
    let r = start(true).await;
    let s = manifest("etcd", "i");
    r.set_statics(vec![s.clone()]);
    r.api.wait_for(|st| st.pods.len() == 1).await;
    let m = r.mirror("etcd-n1").unwrap();
    let ann = m.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_MIRROR], hash(&s));
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
    let node_uid = r.api.get_node("n1").await.unwrap().metadata.uid;
    assert_eq!(Some(owner.uid.clone()), node_uid);

    // The static pod's status goes to the mirror, by the mirror's UID.
    let status = PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    };
    r.status.set_pod_status(&s, status);
    r.api.wait_for(|st| st.status_patches.len() == 1).await;
    let (to, _) = r.api.state().status_patches[0].clone();
    assert_eq!(Some(to.uid), m.metadata.uid);
    // A static pod is never deleted through the API.
    r.status.terminate_and_delete(&s);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_mirror_is_made_again_and_gets_the_status() {
    let r = start(true).await;
    let s = manifest("etcd", "i");
    r.set_statics(vec![s.clone()]);
    r.api.wait_for(|st| st.pods.len() == 1).await;
    let status = PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    };
    r.status.set_pod_status(&s, status);
    r.api.wait_for(|st| st.status_patches.len() == 1).await;
    let first = r.mirror("etcd-n1").unwrap();

    // Deleted through the API: the watch tells the mirror index.
    r.api.remove_pod("kube-system", "etcd-n1");
    r.mirrors.remove(&first);
    r.api
        .wait_for(|st| {
            st.pods
                .values()
                .any(|p| p.metadata.uid.is_some() && p.metadata.uid != first.metadata.uid)
        })
        .await;
    let second = r.mirror("etcd-n1").unwrap();
    // The same status is written again, to the new mirror.
    r.api.wait_for(|st| st.status_patches.len() == 2).await;
    assert_eq!(
        Some(r.api.state().status_patches[1].0.uid.clone()),
        second.metadata.uid
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stale_and_orphaned_mirrors_are_deleted() {
    let r = start(true).await;
    let old = manifest("etcd", "old");
    r.set_statics(vec![old.clone(), manifest("sched", "i")]);
    r.api.wait_for(|st| st.pods.len() == 2).await;
    // A new manifest for etcd, and sched's manifest removed.
    let new = manifest("etcd", "new");
    r.set_statics(vec![new.clone()]);
    r.api
        .wait_for(|st| {
            st.pods.len() == 1
                && st
                    .pods
                    .values()
                    .all(|p| p.metadata.annotations.as_ref().unwrap()[CONFIG_MIRROR] == hash(&new))
        })
        .await;
    assert_eq!(r.api.count("delete_pod"), 2);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_node_no_mirror_until_it_is_registered() {
    let r = start(false).await;
    r.set_statics(vec![manifest("etcd", "i")]);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(r.mirror("etcd-n1").is_none());
    let mut n = Node::default();
    n.metadata.name = Some("n1".into());
    r.api.create_node(&n).await.unwrap();
    // Found on the next periodic pass.
    r.api.wait_for(|st| st.pods.len() == 1).await;
    r.stop().await;
}

/// Before every pod source has been read, a mirror with no static pod may only be one whose
/// static pod is not read yet: it is kept.
#[tokio::test(start_paused = true)]
async fn no_orphan_is_deleted_before_the_sources_are_read() {
    let r = start_synced(true, false).await;
    let s = manifest("etcd", "i");
    let mut m = kubelet_core::config::mirror_pod_for(&s, "n1", "node-uid");
    m.metadata.uid = Some("m-uid".into());
    r.api.put_pod(m.clone());
    r.mirrors.update(Arc::new(m));
    r.mirrors.kick();
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(r.api.count("delete_pod"), 0);
    assert!(r.mirror("etcd-n1").is_some());
    r.stop().await;
}
