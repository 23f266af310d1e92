#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const ETCD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  labels: {component: etcd, tier: control-plane}
  annotations: {kubeadm.kubernetes.io/etcd.advertise-client-urls: "https://198.51.100.1:2379"}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: etcd
    image: k8s.gcr.io/etcd:3.4.13-0
    command: [etcd, --data-dir=/var/lib/etcd]
    resources: {requests: {cpu: 100m}}
    livenessProbe:
      httpGet: {host: 127.0.0.1, path: /health, port: 2381, scheme: HTTP}
  volumes:
  - name: etcd-data
    hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}
"#;

#[test]
fn a_manifest_becomes_this_nodes_pod() {
    let p = static_pod(ETCD.as_bytes(), Source::File, "Node-1").unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 32);
    assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(p.metadata.name.as_deref(), Some("etcd-node-1"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("kube-system"));
    let ann = p.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_HASH], uid);
    assert_eq!(
        ann["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
        "https://198.51.100.1:2379"
    );
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("Node-1"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let t = &spec.tolerations.as_ref().unwrap()[0];
    assert_eq!(
        (t.operator.as_deref(), t.effect.as_deref()),
        (Some("Exists"), Some("NoExecute"))
    );
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[test]
fn the_uid_follows_the_manifest_not_the_node() {
    let a = static_pod(ETCD.as_bytes(), Source::File, "n1").unwrap();
    let b = static_pod(ETCD.as_bytes(), Source::File, "n2").unwrap();
    assert_eq!(a.metadata.uid, b.metadata.uid);
    let changed = ETCD.replace("2381", "2382");
    let c = static_pod(changed.as_bytes(), Source::File, "n1").unwrap();
    assert_ne!(a.metadata.uid, c.metadata.uid);
    // Only the file source adds the toleration.
    let h = static_pod(ETCD.as_bytes(), Source::Http, "n1").unwrap();
    assert!(h.spec.unwrap().tolerations.is_none());
    // A UID written in the manifest is kept.
    let own = ETCD.replace("  name: etcd\n", "  name: etcd\n  uid: my-uid\n");
    let o = static_pod(own.as_bytes(), Source::File, "n1").unwrap();
    assert_eq!(o.metadata.uid.as_deref(), Some("my-uid"));
}

#[test]
fn namespace_defaults_and_latest_images_are_pulled_always() {
    let p = static_pod(
        b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox\",\"ports\":[{\"containerPort\":80}]}]}}",
        Source::Http,
        "n",
    )
    .unwrap();
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    // No name: the UID is the name.
    let q = static_pod(
        b"apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: i}]}\n",
        Source::File,
        "n",
    )
    .unwrap();
    assert_eq!(
        q.metadata.name.unwrap(),
        format!("{}-n", q.metadata.uid.unwrap())
    );
    let c = &p.spec.unwrap().containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
}

#[test]
fn bad_manifests_say_what_is_wrong() {
    for (text, want) in [
        ("{", "could not parse"),
        ("- a\n- b\n", "expected a mapping"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            "expected apiVersion v1 and kind Pod, got apps/v1 Deployment",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
            "spec.containers: Required value",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}, {name: c, image: i}]}\n",
            "spec.containers[0].image: Required value, spec.containers[1].name: Duplicate value: \"c\"",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c, image: i}]}\n",
            "metadata.name: Invalid value: \"Bad_Name-n\"",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {restartPolicy: Sometimes, containers: [{name: c, image: i}]}\n",
            "spec.restartPolicy: Unsupported value: \"Sometimes\"",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: i, ports: oops}]}\n",
            "could not parse",
        ),
    ] {
        let e = static_pod(text.as_bytes(), Source::File, "n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn pod_lists_decode_for_the_http_source() {
    let list = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n  spec: {containers: [{name: c, image: i}]}\n- metadata: {name: b}\n  spec: {containers: [{name: c, image: i}]}\n";
    let pods = decode_pods(list.as_bytes()).unwrap();
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[1].metadata.name.as_deref(), Some("b"));
    assert_eq!(decode_pods(ETCD.as_bytes()).unwrap().len(), 1);
}

fn pod(name: &str, image: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n"
    );
    static_pod(text.as_bytes(), Source::File, "n").unwrap()
}

fn names(pods: &[Pod]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect()
}

#[test]
fn full_sets_merge_into_adds_and_removes() {
    let mut s = PodStorage::default();
    assert!(!s.seen_all(&[Source::File]));
    let c = s.set(Source::File, vec![pod("a", "i"), pod("b", "i")], "t1");
    assert_eq!(names(&c.apply), ["a-n", "b-n"]);
    assert!(c.remove.is_empty());
    assert!(s.seen_all(&[Source::File]));
    assert!(!s.seen_all(&[Source::File, Source::Api]));
    let a = &c.apply[0];
    let ann = a.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_SOURCE], "file");
    assert_eq!(ann[CONFIG_SEEN], "t1");
    assert!(is_static_pod(a) && !is_mirror_pod(a));

    // The same set again changes nothing; seen is kept.
    let c = s.set(Source::File, vec![pod("a", "i"), pod("b", "i")], "t2");
    assert_eq!(c, Changes::default());
    assert_eq!(
        s.pods(Source::File)
            .next()
            .unwrap()
            .metadata
            .annotations
            .as_ref()
            .unwrap()[CONFIG_SEEN],
        "t1"
    );

    // A changed manifest is a new pod (new UID): the old one goes.
    let c = s.set(Source::File, vec![pod("a", "j"), pod("b", "i")], "t3");
    assert_eq!(names(&c.apply), ["a-n"]);
    assert_eq!(names(&c.remove), ["a-n"]);
    assert_ne!(c.apply[0].metadata.uid, c.remove[0].metadata.uid);

    // An empty set removes everything.
    let c = s.set(Source::File, vec![], "t4");
    assert_eq!(c.remove.len(), 2);
}

#[test]
fn a_kept_uid_with_a_new_spec_is_an_update() {
    let mut s = PodStorage::default();
    let mut a = pod("a", "i");
    s.set(Source::File, vec![a.clone()], "t1");
    a.spec.as_mut().unwrap().containers[0].image = Some("j".into());
    let c = s.set(Source::File, vec![a], "t2");
    assert_eq!(names(&c.apply), ["a-n"]);
    assert_eq!(
        c.apply[0].metadata.annotations.as_ref().unwrap()[CONFIG_SEEN],
        "t1"
    );
}

#[test]
fn duplicate_names_are_left_out() {
    let mut s = PodStorage::default();
    let c = s.set(Source::File, vec![pod("a", "i"), pod("a", "j")], "t");
    assert_eq!(names(&c.apply), ["a-n"]);
    assert_eq!(c.duplicates.len(), 1);
    assert!(
        c.duplicates[0].1.contains("duplicate pod name \"a-n\""),
        "{}",
        c.duplicates[0].1
    );
}

#[test]
fn api_pods_stamped_api_are_not_static() {
    let mut p = pod("a", "i");
    p.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(CONFIG_SOURCE.into(), "file".into());
    stamp(&mut p, Source::Api, "t");
    assert!(!is_static_pod(&p));
    // A pod with no source (not through the merge) is not static either.
    let mut q = pod("b", "i");
    q.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(CONFIG_SOURCE);
    assert!(!is_static_pod(&q));
}

fn mirror_of(s: &Pod, uid: &str) -> Pod {
    let mut m = mirror_pod_for(s, "n", "node-uid");
    m.metadata.uid = Some(uid.into());
    m
}

#[test]
fn mirror_pods_carry_the_hash_and_the_node() {
    let mut s = pod("a", "i");
    stamp(&mut s, Source::File, "t");
    let m = mirror_pod_for(&s, "n", "node-uid");
    assert!(is_mirror_pod(&m));
    assert!(is_mirror_pod_of(&m, &s));
    let ann = m.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_MIRROR], ann[CONFIG_HASH]);
    let o = &m.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            o.kind.as_str(),
            o.name.as_str(),
            o.uid.as_str(),
            o.controller
        ),
        ("Node", "n", "node-uid", Some(true))
    );
    assert!(m.metadata.uid.is_none() && m.status.is_none());
    let other = pod("a", "j");
    assert!(!is_mirror_pod_of(&m, &other));
}

#[test]
fn mirrors_are_created_replaced_and_cleaned_up() {
    let a = pod("a", "i");
    let b = pod("b", "i");
    // No node yet: nothing to create.
    assert!(decide_mirrors(&[&a], &[], "n", None).is_empty());
    let acts = decide_mirrors(&[&a, &b], &[], "n", Some("node-uid"));
    assert_eq!(acts.len(), 2);
    assert!(
        matches!(&acts[0], MirrorAction::Create(p) if p.metadata.name.as_deref() == Some("a-n"))
    );

    let ma = mirror_of(&a, "m-a");
    assert!(decide_mirrors(&[&a], &[&ma], "n", Some("u")).is_empty());

    // A mirror of an older manifest, one being deleted, one with no static pod.
    let old = mirror_of(&pod("a", "old"), "m-old");
    let mut deleting = mirror_of(&b, "m-b");
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let orphan = mirror_of(&pod("c", "i"), "m-c");
    let acts = decide_mirrors(&[&a, &b], &[&old, &deleting, &orphan], "n", Some("u"));
    let deleted: Vec<&str> = acts
        .iter()
        .filter_map(|a| match a {
            MirrorAction::Delete { uid, .. } => Some(uid.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["m-old", "m-b", "m-c"]);
    let created = acts
        .iter()
        .filter(|a| matches!(a, MirrorAction::Create(_)))
        .count();
    assert_eq!(created, 2);
    // With the node gone, stale mirrors are still deleted.
    assert_eq!(decide_mirrors(&[], &[&orphan], "n", None).len(), 1);
}

/// Upstream's UIDs for the manifests in testdata/, as `scripts/static-uid-oracle.sh uid`
/// computed them with upstream's own code.
#[test]
fn static_pod_uids_are_upstreams() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    let expected = std::fs::read_to_string(dir.join("uids.txt")).unwrap();
    let mut checked = 0;
    for line in expected.lines() {
        let (uid, file) = line.split_once(' ').unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let mut pod = decode_pod(&bytes).unwrap();
        v1_defaults(&mut pod);
        let printed = upstream_uid::spew_internal_pod(&pod);
        assert_eq!(
            upstream_uid::upstream_uid(&pod).as_deref(),
            Ok(uid),
            "{file}: our print is {printed:?}"
        );
        let p = static_pod(&bytes, Source::File, "node-1").unwrap();
        assert_eq!(p.metadata.uid.as_deref(), Some(uid), "{file}");
        checked += 1;
    }
    assert!(checked >= 4);
}
