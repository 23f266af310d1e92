//! Volumes, read from inside busybox pods: emptyDir (disk and memory), hostPath types,
//! configMap, secret, downwardAPI and projected (with a service-account token), subPath,
//! live updates, failures as FailedMount events, and nothing left on the host afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kubelet_e2e::{TestNs, container_state, eventually, kubelet_root, phase, pod_mounts};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const BB: &str = "docker.io/library/busybox:latest";

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": BB, "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

async fn config_map(ns: &TestNs, name: &str, data: serde_json::Value) {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
    Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

async fn secret(ns: &TestNs, name: &str, data: serde_json::Value) {
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

fn with_volumes(mut pod: Pod, volumes: serde_json::Value) -> Pod {
    pod.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(volumes).unwrap());
    pod
}

/// Deletes the pod and checks the host: no mount and no directory of it left.
async fn delete_and_check_host(ns: &TestNs, name: &str, uid: &str) {
    ns.pods()
        .delete(
            name,
            &kube::api::DeleteParams {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ns.wait_gone(name, Duration::from_secs(30)).await;
    // The API server deletes a finished pod at once; the kubelet tears it down after.
    let dir = kubelet_root().join("pods").join(uid);
    eventually(
        Duration::from_secs(20),
        "pod torn down on the host",
        || async { (pod_mounts(uid).is_empty() && !dir.exists()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn every_volume_type_seen_from_inside() {
    let ns = TestNs::new("vol").await;
    config_map(&ns, "cfg", json!({"a.txt": "alpha", "b.txt": "beta"})).await;
    let cm_bin: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "bin"}, "binaryData": {"blob": "AP8="}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &cm_bin)
        .await
        .unwrap();
    secret(&ns, "sec", json!({"password": "s3cret"})).await;
    let host_dir = std::env::temp_dir().join(format!("krs-e2e-{}", ns.name));
    let script = r#"
        set -e
        r() { echo "$1=$2" >> /dev/termination-log; }
        r cfg "$(cat /cfg/a.txt)/$(cat /cfg/b.txt)"
        r item "$(cat /items/sub/alpha):$(stat -L -c %a /items/sub/alpha)"
        r blob "$(od -An -tx1 /bin-cm/blob | tr -d ' ')"
        r sec "$(cat /sec/password):$(stat -L -c '%a %g' /sec/password)"
        r labels "$(cat /info/labels | tr '\n' ,)"
        r name "$(cat /info/name)"
        r proj "$(cat /proj/x/a):$(cat /proj/ns):$(wc -c < /proj/token)"
        echo data > /scratch/f; r scratch "$(cat /scratch/f):$(stat -c %a /scratch)"
        r mem "$(grep ' /mem ' /proc/mounts | cut -d' ' -f3)"
        r secfs "$(grep ' /sec ' /proc/mounts | cut -d' ' -f3)"
        r hostdir "$(cat /hostdir/from-host)"
        echo from-pod > /hostdir/from-pod
        r hostfile "$(stat -c %F /hostfile)"
        r one "$(cat /one.txt)"
        r sub "$(ls /sub-made)"
    "#;
    let mut c = sh("main", script);
    c["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "items", "mountPath": "/items"},
        {"name": "bin", "mountPath": "/bin-cm"},
        {"name": "sec", "mountPath": "/sec", "readOnly": true},
        {"name": "info", "mountPath": "/info"},
        {"name": "proj", "mountPath": "/proj"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "mem", "mountPath": "/mem"},
        {"name": "hostdir", "mountPath": "/hostdir"},
        {"name": "hostfile", "mountPath": "/hostfile"},
        {"name": "cfg", "mountPath": "/one.txt", "subPath": "a.txt"},
        {"name": "scratch", "mountPath": "/sub-made", "subPathExpr": "made/$(POD)"},
    ]);
    c["env"] = json!([{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
    let mut pod = with_volumes(
        ns.pod("p", "Never", json!([c])),
        json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "items", "configMap": {"name": "cfg", "items": [{"key": "a.txt", "path": "sub/alpha", "mode": 0o600}]}},
            {"name": "bin", "configMap": {"name": "bin"}},
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "proj", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "audience": "e2e", "expirationSeconds": 600}},
                {"configMap": {"name": "cfg", "items": [{"key": "a.txt", "path": "x/a"}]}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "hostdir", "hostPath": {"path": host_dir.join("d"), "type": "DirectoryOrCreate"}},
            {"name": "hostfile", "hostPath": {"path": host_dir.join("f"), "type": "FileOrCreate"}},
        ]),
    );
    pod.metadata.labels = Some([("app".to_string(), "vol".to_string())].into());
    pod.spec.as_mut().unwrap().security_context =
        Some(serde_json::from_value(json!({"fsGroup": 2345})).unwrap());
    // The hostPath directory exists before the pod (DirectoryOrCreate keeps it).
    std::fs::create_dir_all(host_dir.join("d")).unwrap();
    std::fs::write(host_dir.join("d/from-host"), "hi").unwrap();
    let created = ns.create(&pod).await;
    let uid = created.metadata.uid.unwrap();
    let p = ns
        .wait_pod("p", Duration::from_secs(30), |p| {
            phase(p) == "Succeeded" || phase(p) == "Failed"
        })
        .await;
    let st = container_state(&p, 0);
    assert_eq!(phase(&p), "Succeeded", "{st}");
    let msg = st["terminated"]["message"].as_str().unwrap_or_default();
    let got: HashMap<&str, &str> = msg.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(got["cfg"], "alpha/beta");
    // 0600 plus group read for the fsGroup.
    assert_eq!(got["item"], "alpha:640");
    assert_eq!(got["blob"], "00ff");
    // defaultMode 0400 plus group read for the fsGroup.
    assert_eq!(got["sec"], "s3cret:440 2345");
    assert_eq!(got["labels"], "app=\"vol\"");
    assert_eq!(got["name"], "p");
    let (a, rest) = got["proj"].split_once(':').unwrap();
    let (pns, token_len) = rest.split_once(':').unwrap();
    assert_eq!((a, pns), ("alpha", ns.name.as_str()));
    assert!(
        token_len.trim().parse::<usize>().unwrap() > 100,
        "{token_len}"
    );
    assert_eq!(got["scratch"], "data:2777");
    assert_eq!(got["mem"], "tmpfs");
    assert_eq!(got["secfs"], "tmpfs");
    assert_eq!(got["hostdir"], "hi");
    assert_eq!(got["hostfile"], "regular empty file");
    assert_eq!(got["one"], "alpha");
    assert_eq!(got.get("sub").copied(), Some(""));
    assert_eq!(
        std::fs::read_to_string(host_dir.join("d/from-pod")).unwrap(),
        "from-pod\n"
    );
    delete_and_check_host(&ns, "p", &uid).await;
    let _ = std::fs::remove_dir_all(&host_dir);
    ns.cleanup().await;
}

#[tokio::test]
async fn updates_reach_a_running_pod() {
    let ns = TestNs::new("volupd").await;
    config_map(&ns, "cfg", json!({"k": "v1"})).await;
    secret(&ns, "sec", json!({"k": "s1"})).await;
    let mut c = sh("main", "sleep 3600");
    c["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "sec", "mountPath": "/sec"},
        {"name": "later", "mountPath": "/later"},
    ]);
    let pod = with_volumes(
        ns.pod("p", "Always", json!([c])),
        json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "later", "configMap": {"name": "later", "optional": true}},
        ]),
    );
    // 1.20's default: the ServiceAccount admission plugin adds the token secret volume.
    let mut pod = pod;
    pod.spec.as_mut().unwrap().automount_service_account_token = None;
    let uid = ns.create(&pod).await.metadata.uid.unwrap();
    ns.wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;
    let sa = "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && ls";
    assert_eq!(
        ns.exec("p", "main", sa).await,
        format!("{}ca.crt\nnamespace\ntoken\n", ns.name)
    );
    let read = "cat /cfg/k; echo; cat /sec/k; echo; cat /later/k 2>/dev/null || echo -n none";
    assert_eq!(ns.exec("p", "main", read).await, "v1\ns1\nnone");

    let pp = PatchParams::default();
    Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .patch("cfg", &pp, &Patch::Merge(json!({"data": {"k": "v2"}})))
        .await
        .unwrap();
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            "sec",
            &pp,
            &Patch::Merge(json!({"stringData": {"k": "s2"}})),
        )
        .await
        .unwrap();
    config_map(&ns, "later", json!({"k": "here"})).await;
    // A watch of each object wakes the pod: seconds, where upstream allows a sync period.
    eventually(
        Duration::from_secs(20),
        "updated volume contents",
        || async {
            let out = ns.exec("p", "main", read).await;
            (out == "v2\ns2\nhere").then_some(())
        },
    )
    .await;
    // Nothing restarted for it.
    let p = ns.pods().get("p").await.unwrap();
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );
    delete_and_check_host(&ns, "p", &uid).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn missing_sources_fail_the_mount_until_they_appear() {
    let ns = TestNs::new("volfail").await;
    let mut c = sh("main", "cat /cfg/k > /dev/termination-log");
    c["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    let pod = with_volumes(
        ns.pod("p", "Never", json!([c])),
        json!([{"name": "cfg", "configMap": {"name": "late"}}]),
    );
    ns.create(&pod).await;
    let ev = ns
        .wait_event("p", "FailedMount", Duration::from_secs(20))
        .await;
    assert_eq!(
        ev.message.as_deref(),
        Some("MountVolume.SetUp failed for volume \"cfg\" : configmap \"late\" not found")
    );
    // The status patch and the event travel separately: wait for the status, do not race it.
    let p = ns
        .wait_pod("p", Duration::from_secs(10), |p| {
            kubelet_e2e::waiting_reason(p, 0).is_some()
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(
        kubelet_e2e::waiting_reason(&p, 0).as_deref(),
        Some("ContainerCreating")
    );
    // The pod starts once the ConfigMap is there (retries back off to at most 10 s).
    config_map(&ns, "late", json!({"k": "finally"})).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Succeeded")
        .await;
    assert_eq!(container_state(&p, 0)["terminated"]["message"], "finally");

    // A hostPath of the wrong type.
    let mut c = sh("main", "true");
    c["volumeMounts"] = json!([{"name": "h", "mountPath": "/h"}]);
    let pod = with_volumes(
        ns.pod("hp", "Never", json!([c])),
        json!([{"name": "h", "hostPath": {"path": "/etc/hostname", "type": "Directory"}}]),
    );
    ns.create(&pod).await;
    let ev = ns
        .wait_event("hp", "FailedMount", Duration::from_secs(20))
        .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: /etc/hostname is not a directory"
        )
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn subpath_symlink_escape_is_refused() {
    let ns = TestNs::new("volsub").await;
    // The init container plants a link that, resolved on the host, leads to the host's /etc.
    let init = {
        let mut c = sh("plant", "ln -s /etc /vol/evil");
        c["volumeMounts"] = json!([{"name": "vol", "mountPath": "/vol"}]);
        c
    };
    let mut bad = sh("main", "cat /x/hostname > /dev/termination-log; sleep 3600");
    bad["volumeMounts"] = json!([{"name": "vol", "mountPath": "/x", "subPath": "evil"}]);
    let mut pod = with_volumes(
        ns.pod("p", "Never", json!([bad])),
        json!([{"name": "vol", "emptyDir": {}}]),
    );
    pod.spec.as_mut().unwrap().init_containers = Some(vec![serde_json::from_value(init).unwrap()]);
    let uid = ns.create(&pod).await.metadata.uid.unwrap();
    let msg = ns
        .wait_waiting("p", "CreateContainerConfigError", Duration::from_secs(30))
        .await;
    assert_eq!(
        msg,
        "failed to prepare subPath for volumeMount \"vol\" of container \"main\""
    );
    let ev = ns.wait_event("p", "Failed", Duration::from_secs(10)).await;
    assert_eq!(
        ev.message.as_deref(),
        Some("Error: failed to prepare subPath for volumeMount \"vol\" of container \"main\"")
    );
    // Nothing was bind-mounted from outside the volume.
    assert!(
        pod_mounts(&uid)
            .iter()
            .all(|m| !m.contains("volume-subpaths")),
        "{:?}",
        pod_mounts(&uid)
    );
    delete_and_check_host(&ns, "p", &uid).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn empty_dir_over_its_size_limit_evicts_the_pod() {
    let ns = TestNs::new("vol-evict").await;
    let mut c = sh(
        "main",
        "dd if=/dev/zero of=/data/fill bs=1M count=3 && sleep 3600",
    );
    c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let mut p = with_volumes(
        ns.pod("big", "Always", json!([c])),
        json!([{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]),
    );
    // The eviction kills at once, whatever the pod's own grace period.
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(60);
    let mut small = sh("main", "echo ok > /data/f && sleep 3600");
    small["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let small = with_volumes(
        ns.pod("small", "Always", json!([small])),
        json!([{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]),
    );
    ns.create(&p).await;
    ns.create(&small).await;
    let msg = "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". ";
    let p = ns
        .wait_pod("big", Duration::from_secs(40), |p| phase(p) == "Failed")
        .await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    assert_eq!(st.message.as_deref(), Some(msg));
    let state = &st.container_statuses.unwrap()[0];
    assert!(
        state.state.as_ref().unwrap().terminated.is_some(),
        "{state:?}"
    );
    let ev = ns
        .wait_event("big", "Evicted", Duration::from_secs(10))
        .await;
    assert_eq!(ev.message.as_deref(), Some(msg));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    // The pod under its limit is left alone.
    let s = ns
        .wait_pod("small", Duration::from_secs(10), |p| phase(p) == "Running")
        .await;
    assert!(s.status.unwrap().reason.is_none());
    ns.cleanup().await;
}

#[tokio::test]
async fn mount_propagation_between_host_and_containers() {
    let ns = TestNs::new("vol-prop").await;
    // Under the kubelet's root, which the kubelet makes a shared mount as upstream does.
    let shared = kubelet_root().join(format!("e2e-propagation-{}", ns.name));
    std::fs::create_dir_all(&shared).unwrap();
    let hp =
        json!([{"name": "h", "hostPath": {"path": shared.to_str().unwrap(), "type": "Directory"}}]);
    let pod = |name: &str, script: &str, mode: Option<&str>, privileged: bool| {
        let mut c = sh("main", script);
        c["volumeMounts"] = json!([{"name": "h", "mountPath": "/mnt/h"}]);
        if let Some(m) = mode {
            c["volumeMounts"][0]["mountPropagation"] = json!(m);
        }
        if privileged {
            c["securityContext"] = json!({"privileged": true});
        }
        with_volumes(ns.pod(name, "Always", json!([c])), hp.clone())
    };
    // The Bidirectional pod mounts a tmpfs; it shows on the host and in the HostToContainer
    // pod, not in the private one. The receivers start first, so that the mount can only
    // reach them by propagation, not by being copied when their own bind mount is made.
    ns.create(&pod("slave", "sleep 3600", Some("HostToContainer"), false))
        .await;
    ns.create(&pod("private", "sleep 3600", None, false)).await;
    for name in ["slave", "private"] {
        ns.wait_pod(name, Duration::from_secs(20), |p| phase(p) == "Running")
            .await;
    }
    ns.create(&pod(
        "master",
        "mkdir -p /mnt/h/m && mount -t tmpfs e2e-prop /mnt/h/m && echo master > /mnt/h/m/file && sleep 3600",
        Some("Bidirectional"),
        true,
    ))
    .await;
    ns.wait_pod("master", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let host_file = shared.join("m/file");
    eventually(
        Duration::from_secs(10),
        "the mount reaches the host",
        || {
            let got = std::fs::read_to_string(&host_file).ok();
            async move { got.filter(|s| s.trim() == "master") }
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the mount reaches the HostToContainer pod",
        || async {
            let out = ns.exec("slave", "main", "cat /mnt/h/m/file 2>&1").await;
            (out.trim() == "master").then_some(())
        },
    )
    .await;
    let out = ns
        .exec("private", "main", "cat /mnt/h/m/file 2>&1; echo rc=$?")
        .await;
    assert!(out.contains("rc=1"), "private pod saw the mount: {out}");
    ns.cleanup().await;
    // Mounts made from inside a pod outlive it on the host (as upstream): the test undoes its own.
    let umount = std::process::Command::new("umount")
        .arg(shared.join("m"))
        .status()
        .unwrap();
    assert!(umount.success());
    std::fs::remove_dir_all(&shared).unwrap();
}

/// A root container cannot change what the kubelet writes into API-data volumes: they are
/// mounted read-only whatever the pod says (CVE-2017-1002102).
#[tokio::test]
async fn api_data_volumes_are_read_only_to_root() {
    let ns = TestNs::new("volro").await;
    config_map(&ns, "cfg", json!({"k": "v"})).await;
    secret(&ns, "sec", json!({"k": "s"})).await;
    let dirs = ["/cfg", "/sec", "/dapi", "/proj"];
    let script = dirs
        .iter()
        .map(|d| {
            format!(
                "touch {d}/new 2>>/dev/termination-log; rm -f {d}/..data 2>>/dev/termination-log; echo '{d} done' >> /dev/termination-log"
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut c = sh("main", &script);
    c["securityContext"] = json!({"runAsUser": 0});
    c["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "sec", "mountPath": "/sec"},
        {"name": "dapi", "mountPath": "/dapi"},
        {"name": "proj", "mountPath": "/proj", "readOnly": false},
    ]);
    let pod = with_volumes(
        ns.pod("p", "Never", json!([c])),
        json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "dapi", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "proj", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}},
        ]),
    );
    ns.create(&pod).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(30), |p| {
            phase(p) == "Succeeded" || phase(p) == "Failed"
        })
        .await;
    let out = container_state(&p, 0)["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for d in dirs {
        assert!(out.contains(&format!("{d} done")), "{out}");
        let erofs = out
            .lines()
            .filter(|l| l.contains(d) && l.contains("Read-only file system"))
            .count();
        assert_eq!(erofs, 2, "both writes into {d} fail with EROFS: {out}");
    }
    ns.cleanup().await;
}

/// A symlink planted in a configMap volume while the kubelet writes an update (as a
/// container with write access, or anyone on the host, could) is not followed: the kubelet
/// writes nothing outside the volume, refuses that update, and recovers after.
#[tokio::test]
async fn planted_symlink_is_not_followed_by_an_update() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ns = TestNs::new("volsym").await;
    // Many files sort before "sub/cron", so the window between the new data directory's
    // creation and the write under "sub/" is wide enough to plant a link in.
    let mut data = serde_json::Map::new();
    let mut items = vec![];
    for i in 0..200 {
        data.insert(format!("a{i:03}"), json!("x".repeat(4096)));
        items.push(json!({"key": format!("a{i:03}"), "path": format!("a{i:03}")}));
    }
    data.insert("k".into(), json!("v1"));
    data.insert("cron".into(), json!("c1"));
    items.push(json!({"key": "k", "path": "k"}));
    items.push(json!({"key": "cron", "path": "sub/cron"}));
    config_map(&ns, "cfg", serde_json::Value::Object(data)).await;
    let mut c = sh("main", "sleep 3600");
    c["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    let pod = with_volumes(
        ns.pod("p", "Always", json!([c])),
        json!([{"name": "cfg", "configMap": {"name": "cfg", "items": items}}]),
    );
    let uid = ns.create(&pod).await.metadata.uid.unwrap();
    ns.wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;
    let vol = kubelet_root()
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~configmap/cfg");
    let outside = std::env::temp_dir().join(format!("krs-e2e-planted-{uid}"));
    std::fs::create_dir_all(&outside).unwrap();
    // The planter: each new data directory gets "sub" -> outside as soon as it appears.
    let stop = Arc::new(AtomicBool::new(false));
    let planter = {
        let (vol, outside, stop) = (vol.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            let mut planted = 0;
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                for e in std::fs::read_dir(&vol).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("..2") && seen.insert(name) {
                        planted += std::os::unix::fs::symlink(&outside, e.path().join("sub"))
                            .is_ok() as u32;
                    }
                }
            }
            planted
        })
    };
    // The planter can lose the race on a busy machine (the kubelet writes "sub/" first):
    // update again until one write meets a planted link and is refused.
    let mut refused = None;
    for round in 0..5 {
        Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
            .patch(
                "cfg",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"data": {"k": format!("v2-{round}"), "cron": format!("* * * * * root evil{round}")}}),
                ),
            )
            .await
            .unwrap();
        let wait = ns.wait_event("p", "FailedMount", Duration::from_secs(120));
        if let Ok(e) = tokio::time::timeout(Duration::from_secs(15), wait).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("no update met a planted link in 5 rounds");
    stop.store(true, Ordering::Relaxed);
    let planted = planter.join().unwrap();
    assert!(planted > 0, "the test never planted a link");
    let leaked: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
    assert!(leaked.is_empty(), "written outside the volume: {leaked:?}");
    assert!(
        refused.message.unwrap_or_default().contains("cfg"),
        "the refusal names the volume"
    );
    // With nobody planting, the next update goes through.
    Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v3"}})),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "updated volume contents",
        || async {
            let out = ns.exec("p", "main", "cat /cfg/k").await;
            (out == "v3").then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&outside);
    ns.cleanup().await;
}
