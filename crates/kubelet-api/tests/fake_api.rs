//! The in-memory API server's own semantics, which the other tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use kubelet_api::fake::FakeApi;
use kubelet_api::{NodeClient, PodStatusWriter};
use kubelet_core::labels::PodRef;

fn pod(uid: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": "p", "uid": uid},
    }))
    .unwrap()
}

fn node() -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "labels": {"a": "1"}},
        "spec": {"podCIDR": "10.0.0.0/24"},
    }))
    .unwrap()
}

#[tokio::test]
async fn status_patches_and_deletes_check_the_uid() {
    let api = FakeApi::new();
    api.put_pod(pod("u1"));
    let stale = PodRef::of(&pod("u0"));
    let e = api
        .patch_pod_status(&stale, &PodStatus::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(409));
    assert_eq!(api.delete_pod(&stale).await.unwrap_err().code(), Some(409));
    let current = PodRef::of(&pod("u1"));
    api.delete_pod(&current).await.unwrap();
    assert!(api.delete_pod(&current).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn injected_failures_come_first_then_service_resumes() {
    let api = FakeApi::new();
    api.fail("get_node", 2, 503);
    assert_eq!(api.get_node("n1").await.unwrap_err().code(), Some(503));
    assert_eq!(api.get_node("n1").await.unwrap_err().code(), Some(503));
    assert!(api.get_node("n1").await.unwrap_err().is_not_found());
    assert_eq!(api.count("get_node"), 3);
}

#[tokio::test]
async fn nodes_are_created_once_and_status_patches_touch_only_the_status() {
    let api = FakeApi::new();
    let n = api.create_node(&node()).await.unwrap();
    assert_eq!(n.metadata.uid.as_deref(), Some("uid-n1"));
    assert_eq!(
        api.create_node(&node()).await.unwrap_err().code(),
        Some(409)
    );
    let patched = api
        .patch_node_status(
            "n1",
            &serde_json::json!({
                "metadata": {"labels": {"a": "changed"}},
                "status": {"phase": "Running"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["a"], "1");
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    let relabelled = api
        .patch_node(
            "n1",
            &serde_json::json!({"metadata": {"labels": {"b": "2"}}}),
        )
        .await
        .unwrap();
    let labels = relabelled.metadata.labels.unwrap();
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("1", "2"));
}

#[tokio::test]
async fn a_lease_update_from_a_stale_copy_conflicts() {
    let api = FakeApi::new();
    let mut l = Lease::default();
    l.metadata.namespace = Some("kube-node-lease".into());
    l.metadata.name = Some("n1".into());
    let stored = api.create_lease(&l).await.unwrap();
    let updated = api.replace_lease(&stored).await.unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        stored.metadata.resource_version
    );
    // The first copy is stale now.
    assert_eq!(
        api.replace_lease(&stored).await.unwrap_err().code(),
        Some(409)
    );
    assert!(api.replace_lease(&updated).await.is_ok());
}
