//! The node informer against the in-memory API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Task;
use k8s_openapi::api::core::v1::Node;
use kubelet_api::NodeClient;
use kubelet_api::fake::FakeApi;
use kubelet_api::node_informer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

async fn wait(
    rx: &mut watch::Receiver<Option<Arc<Node>>>,
    what: &str,
    f: impl Fn(Option<&Node>) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|n| f(n.as_deref())))
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .unwrap();
}

fn label(n: Option<&Node>, k: &str) -> Option<String> {
    n?.metadata.labels.as_ref()?.get(k).cloned()
}

#[tokio::test(start_paused = true)]
async fn the_node_is_followed_as_the_api_server_changes_it() {
    let api = FakeApi::new();
    let (tx, mut rx) = watch::channel(None);
    let (listed_tx, mut listed) = watch::channel(false);
    let source = Arc::new(api.clone());
    let task = Task::spawn(|cancel| node_informer::run(source, "n1".into(), tx, listed_tx, cancel));
    listed.wait_for(|l| *l).await.unwrap();
    assert!(rx.borrow().is_none(), "no node yet");
    let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n1",
        "labels": {"kubernetes.io/hostname": "n1"}}}))
    .unwrap();
    api.create_node(&n).await.unwrap();
    wait(&mut rx, "registered", |n| {
        label(n, "kubernetes.io/hostname").is_some()
    })
    .await;
    // A label someone adds through the API shows at once.
    api.patch_node(
        "n1",
        &serde_json::json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await
    .unwrap();
    wait(&mut rx, "labelled", |n| {
        label(n, "disk").as_deref() == Some("ssd")
    })
    .await;
    task.stop().await;
}
