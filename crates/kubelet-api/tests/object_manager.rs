//! The watch-based ConfigMap and Secret cache against the in-memory API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_api::fake::FakeApi;
use kubelet_api::object_manager::ObjectManager;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn pod(uid: &str, cm: &str, secret: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": uid, "uid": uid},
        "spec": {
            "volumes": [
                {"name": "a", "configMap": {"name": cm}},
                {"name": "b", "secret": {"secretName": secret}},
            ],
            "containers": [],
        },
    }))
    .unwrap()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("ns".into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: Some(BTreeMap::from([("k".to_string(), v.to_string())])),
        ..Default::default()
    }
}

fn secret(name: &str) -> Secret {
    Secret {
        metadata: meta(name),
        ..Default::default()
    }
}

/// An object manager on `api`, with the receiving end of the pods it wakes.
fn start(
    api: &FakeApi,
) -> (
    ObjectManager,
    mpsc::UnboundedReceiver<String>,
    CancellationToken,
) {
    let (tx, changed) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let om = ObjectManager::new(Arc::new(api.clone()), tx, cancel.clone());
    (om, changed, cancel)
}

async fn stop(om: ObjectManager, cancel: CancellationToken) {
    cancel.cancel();
    om.shutdown().await;
}

async fn until(cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn reads_come_from_the_watch_and_changes_wake_the_pods() {
    let api = FakeApi::new();
    api.put_config_map(cm("cfg", "one"));
    let (om, mut changed, cancel) = start(&api);
    om.register_pod(&pod("p1", "cfg", "sec"));
    om.register_pod(&pod("p2", "cfg", "other"));
    assert_eq!(om.watches(), 3, "one watch per object, shared by the pods");
    until(|| om.config_map("ns", "cfg").is_some()).await;
    assert_eq!(
        om.config_map("ns", "cfg").unwrap().unwrap().data.unwrap()["k"],
        "one"
    );
    until(|| om.secret("ns", "sec").is_some()).await;
    assert!(
        om.secret("ns", "sec").unwrap().is_none(),
        "listed: it does not exist"
    );
    assert_eq!(api.count("get_config_map"), 0, "no reads besides the watch");
    // A change wakes both pods that use it.
    api.put_config_map(cm("cfg", "two"));
    let mut woken = vec![changed.recv().await.unwrap(), changed.recv().await.unwrap()];
    woken.sort();
    assert_eq!(woken, ["p1", "p2"]);
    assert_eq!(
        om.config_map("ns", "cfg").unwrap().unwrap().data.unwrap()["k"],
        "two"
    );
    // An object that appears wakes its pod.
    api.put_secret(secret("sec"));
    assert_eq!(changed.recv().await.unwrap(), "p1");
    assert!(om.secret("ns", "sec").unwrap().is_some());
    stop(om, cancel).await;
}

#[tokio::test(start_paused = true)]
async fn watches_stop_with_their_last_pod() {
    let api = FakeApi::new();
    let (om, _changed, cancel) = start(&api);
    om.register_pod(&pod("p1", "cfg", "sec"));
    om.register_pod(&pod("p2", "cfg", "sec2"));
    until(|| api.watchers() == 3).await;
    om.unregister_pod("p1");
    assert_eq!(om.watches(), 2);
    until(|| api.watchers() == 2).await;
    // A pod that changes what it refers to moves its watches.
    om.register_pod(&pod("p2", "cfg3", "sec2"));
    assert_eq!(om.watches(), 2);
    assert!(om.config_map("ns", "cfg").is_none());
    om.unregister_pod("p2");
    assert_eq!(om.watches(), 0);
    until(|| api.watchers() == 0).await;
    stop(om, cancel).await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_object_reads_as_missing() {
    let api = FakeApi::new();
    api.put_config_map(cm("cfg", "one"));
    let (om, mut changed, cancel) = start(&api);
    om.register_pod(&pod("p1", "cfg", "sec"));
    until(|| om.config_map("ns", "cfg").is_some_and(|c| c.is_some())).await;
    api.delete_config_map("ns", "cfg");
    assert_eq!(changed.recv().await.unwrap(), "p1");
    assert!(om.config_map("ns", "cfg").unwrap().is_none());
    stop(om, cancel).await;
}
