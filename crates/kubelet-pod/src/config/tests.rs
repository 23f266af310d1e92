#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::file::{FileSource, scan};
use super::*;
use crate::kuberuntime::tests::{Scratch, tmp};
use crate::testing::setup;
use std::time::Duration;

fn manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: c, image: {image}, command: [sleep, '3600']}}\n"
    )
}

fn scratch() -> Scratch {
    let d = Scratch(tmp().with_extension("manifests"));
    std::fs::create_dir_all(&*d).unwrap();
    d
}

#[test]
fn a_directory_is_read_as_upstream_reads_it() {
    let d = scratch();
    std::fs::write(d.join("b.yaml"), manifest("b", "busybox")).unwrap();
    std::fs::write(d.join("a.json"), manifest("a", "busybox")).unwrap();
    std::fs::write(d.join(".hidden.yaml"), manifest("h", "busybox")).unwrap();
    std::fs::write(d.join("broken.yaml"), "apiVersion: v1\nkind: Pod\nspec: [").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/c.yaml"), manifest("c", "busybox")).unwrap();
    let s = scan(&d, "node1");
    let names: Vec<&str> = s
        .pods
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["a-node1", "b-node1"]);
    assert_eq!(s.errors.len(), 1);
    assert!(s.errors.contains_key(&d.join("broken.yaml")));
    assert!(!s.missing);
    // One file as the path.
    let one = scan(&d.join("b.yaml"), "node1");
    assert_eq!(one.pods.len(), 1);
    // A missing path is an empty set, not an error.
    let none = scan(&d.join("nope"), "node1");
    assert!(none.missing && none.pods.is_empty() && none.errors.is_empty());
}

#[test]
fn symlinked_manifests_count_and_unreadable_paths_change_nothing() {
    let d = scratch();
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("a.yaml"), manifest("a", "busybox")).unwrap();
    let dir = d.join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("a.yaml"), dir.join("a.yaml")).unwrap();
    let s = scan(&dir, "n");
    assert_eq!(s.pods.len(), 1, "{:?}", s.errors);
    assert!(!s.fatal);
    // One file that does not parse: the pods stay as they were (nothing is sent).
    std::fs::write(elsewhere.join("a.yaml"), "kind: Pod\n").unwrap();
    let one = scan(&elsewhere.join("a.yaml"), "n");
    assert!(one.fatal && one.pods.is_empty());
    // In a directory, the broken file is only left out.
    let many = scan(&dir, "n");
    assert!(!many.fatal && many.pods.is_empty() && many.errors.len() == 1);
}

#[test]
fn an_oversized_manifest_is_left_out() {
    let d = scratch();
    let big = format!(
        "{}# {}\n",
        manifest("a", "busybox"),
        "x".repeat(kubelet_core::config::MAX_MANIFEST_BYTES as usize)
    );
    std::fs::write(d.join("a.yaml"), big).unwrap();
    let s = scan(&d, "n");
    assert!(s.pods.is_empty());
    assert!(s.errors.values().next().unwrap().contains("larger than"));
}

async fn next_set(rx: &mut mpsc::Receiver<SourceUpdate>) -> Vec<String> {
    let u = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("a set within 60 s")
        .unwrap();
    match u {
        SourceUpdate::Set(Source::File, pods) => pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Changes arrive by inotify, long before the hour-long rescan period.
#[tokio::test]
async fn the_file_source_follows_the_directory() {
    let d = scratch();
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        FileSource {
            path: d.to_path_buf(),
            node: "n".into(),
            period: Duration::from_secs(3600),
            recorder: Recorder::disabled(),
        }
        .run(tx, cancel.clone()),
    );
    assert!(next_set(&mut rx).await.is_empty());
    std::fs::write(d.join("a.yaml"), manifest("a", "busybox")).unwrap();
    let mut names = next_set(&mut rx).await;
    while names.is_empty() {
        names = next_set(&mut rx).await;
    }
    assert_eq!(names, ["a-n"]);
    std::fs::remove_file(d.join("a.yaml")).unwrap();
    let mut names = next_set(&mut rx).await;
    while !names.is_empty() {
        names = next_set(&mut rx).await;
    }
    cancel.cancel();
    task.await.unwrap();
}

/// The directory made after the kubelet started is found at the next rescan.
#[tokio::test(start_paused = true)]
async fn a_directory_made_later_is_picked_up() {
    let d = scratch();
    let path = d.join("later");
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        FileSource {
            path: path.clone(),
            node: "n".into(),
            period: Duration::from_secs(20),
            recorder: Recorder::disabled(),
        }
        .run(tx, cancel.clone()),
    );
    assert!(next_set(&mut rx).await.is_empty());
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("a.yaml"), manifest("a", "busybox")).unwrap();
    assert_eq!(next_set(&mut rx).await, ["a-n"]);
    cancel.cancel();
    task.await.unwrap();
}

fn api_pod(uid: &str, mirror: bool) -> Pod {
    let mut p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": format!("p-{uid}"), "uid": uid,
            "annotations": {"kubernetes.io/config.source": "file"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    if mirror {
        p.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(kubelet_core::config::CONFIG_MIRROR.into(), "h".into());
    }
    p
}

#[tokio::test]
async fn the_merge_feeds_the_workers_and_keeps_mirrors_apart() {
    let s = setup(&[]);
    let (tx, rx) = mpsc::channel(16);
    let synced = Arc::new(AtomicBool::new(false));
    let (listed_tx, listed_rx) = watch::channel(false);
    let mirrors = MirrorPods::default();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        PodConfig {
            workers: s.workers.clone(),
            mirrors: Some(mirrors.clone()),
            sources: vec![Source::File, Source::Api],
            synced: synced.clone(),
            listed: listed_tx,
            recorder: Recorder::disabled(),
            clock: s.clock.clone(),
        }
        .run(rx, cancel.clone()),
    );
    let st =
        kubelet_core::config::static_pod(manifest("web", "busybox").as_bytes(), Source::File, "n")
            .unwrap();
    let st_uid = st.metadata.uid.clone().unwrap();
    tx.send(SourceUpdate::Set(Source::File, vec![st]))
        .await
        .unwrap();
    tx.send(SourceUpdate::Api(PodUpdate::Apply(Arc::new(api_pod(
        "u-api", false,
    )))))
    .await
    .unwrap();
    tx.send(SourceUpdate::Api(PodUpdate::Apply(Arc::new(api_pod(
        "u-mirror", true,
    )))))
    .await
    .unwrap();
    s.until("both pods known", |s| s.workers.len() == 2).await;
    assert!(
        !synced.load(Ordering::Acquire),
        "the API has not listed yet"
    );
    tx.send(SourceUpdate::Api(PodUpdate::Synced { pods: 2 }))
        .await
        .unwrap();
    s.until("synced", |_| synced.load(Ordering::Acquire)).await;
    assert!(*listed_rx.borrow());

    let known = s.workers.known();
    assert!(known.contains(&st_uid) && known.contains(&"u-api".to_string()));
    assert!(
        !known.contains(&"u-mirror".to_string()),
        "a mirror pod is never run"
    );
    assert_eq!(mirrors.all().len(), 1);
    // The API pod's own claim to be a file pod is overwritten.
    let pods = s.workers.pods();
    let api = pods
        .iter()
        .find(|p| p.metadata.uid.as_deref() == Some("u-api"))
        .unwrap();
    let ann = api.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[kubelet_core::config::CONFIG_SOURCE], "api");
    assert!(ann.contains_key(kubelet_core::config::CONFIG_SEEN));
    assert!(!kubelet_core::qos::is_critical_pod(api));
    let st = pods
        .iter()
        .find(|p| p.metadata.uid.as_deref() == Some(st_uid.as_str()))
        .unwrap();
    assert!(kubelet_core::config::is_static_pod(st));

    // The manifest goes: its pod is removed.
    tx.send(SourceUpdate::Set(Source::File, vec![]))
        .await
        .unwrap();
    s.until("static pod gone", |s| !s.workers.known().contains(&st_uid))
        .await;
    cancel.cancel();
    task.await.unwrap();
    s.stop().await;
}

/// A one-shot HTTP server on loopback: answers each request with the next of `replies`
/// (status, body) and hands back the requests it read.
async fn http_server(
    replies: Vec<(u16, String)>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pods", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (status, body) in replies {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

async fn next_http(rx: &mut mpsc::Receiver<SourceUpdate>) -> Vec<String> {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a set")
        .unwrap()
    {
        SourceUpdate::Set(Source::Http, pods) => pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_http_source_sends_what_the_url_serves() {
    let list = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n  spec: {containers: [{name: c, image: busybox}]}\n".to_string();
    let (url, mut requests) = http_server(vec![
        (200, list.clone()),
        // The same body again: nothing new to send.
        (200, list),
        (500, "oops".into()),
        (200, "not: [a pod".into()),
        (200, manifest("b", "busybox")),
        (200, String::new()),
    ])
    .await;
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        super::http::HttpSource {
            url,
            headers: [("X-Node".to_string(), vec!["n".to_string()])].into(),
            node: "n".into(),
            period: Duration::from_millis(10),
        }
        .run(tx, cancel.clone()),
    );
    assert_eq!(next_http(&mut rx).await, ["a-n"]);
    let first = requests.recv().await.unwrap().to_lowercase();
    assert!(first.starts_with("get /pods http/1.1"), "{first}");
    assert!(first.contains("x-node: n"), "{first}");
    // The repeat, the 500 and the garbage change nothing; then b; then nothing at all.
    assert_eq!(next_http(&mut rx).await, ["b-n"]);
    assert!(next_http(&mut rx).await.is_empty());
    cancel.cancel();
    task.await.unwrap();
}
