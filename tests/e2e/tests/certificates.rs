//! TLS bootstrap against the real API server: with `--bootstrap-kubeconfig` (a bootstrap
//! token) and no usable `--kubeconfig`, the kubelet writes the kubeconfig, requests its
//! client certificate through a CSR that the real csrapproving and csrsigning controllers
//! approve and sign, and the node goes Ready on it. Restarts the node's kubelet, then
//! restores it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, client, config_with, env, eventually, node_name, phase,
    restart_kubelet_with,
};
use std::path::PathBuf;
use std::time::Duration;

/// What the test made in the cluster and on disk, removed whatever happens.
struct Cleanup {
    client: kube::Client,
    token_id: String,
    bindings: Vec<String>,
    dir: PathBuf,
}

impl Cleanup {
    /// Deletes what the test made (each step best-effort, so one failure hides no other).
    async fn run(self) {
        let dp = DeleteParams::default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "kube-system");
        let _ = secrets
            .delete(&format!("bootstrap-token-{}", self.token_id), &dp)
            .await;
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        for b in &self.bindings {
            let _ = crbs.delete(b, &dp).await;
        }
        let csrs: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let user = format!("system:bootstrap:{}", self.token_id);
        if let Ok(list) = csrs.list(&ListParams::default()).await {
            for c in list.items {
                if c.spec.username.as_deref() == Some(user.as_str()) {
                    let _ = csrs
                        .delete(c.metadata.name.as_deref().unwrap_or_default(), &dp)
                        .await;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binding(name: &str, group: &str, role: &str) -> ClusterRoleBinding {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }))
    .unwrap()
}

fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn tls_bootstrap_gets_the_client_certificate_through_a_csr() {
    let _one = ONE_RESTART.lock().await;
    let client = client().await;
    let pid = std::process::id();
    // A bootstrap token, as kubeadm makes one: id [a-z0-9]{6}, secret [a-z0-9]{16}.
    let token_id = format!("e2e{:03x}", pid % 0xfff);
    let token_secret = format!("{:016x}", u64::from(pid) * 0x9e37_79b9 % (1 << 63));
    let dir = std::env::temp_dir().join(format!("krs-e2e-bootstrap-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cleanup = Cleanup {
        client: client.clone(),
        token_id: token_id.clone(),
        bindings: vec![
            "krs-e2e-node-bootstrapper".into(),
            "krs-e2e-nodeclient".into(),
            "krs-e2e-selfnodeclient".into(),
        ],
        dir: dir.clone(),
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("bootstrap-token-{token_id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": token_id, "token-secret": token_secret,
            "usage-bootstrap-authentication": "true",
        },
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // kubeadm's bindings: bootstrappers may ask, and their (and nodes' own) client CSRs are
    // approved by the controller-manager.
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    for b in [
        binding(
            "krs-e2e-node-bootstrapper",
            "system:bootstrappers",
            "system:node-bootstrapper",
        ),
        binding(
            "krs-e2e-nodeclient",
            "system:bootstrappers",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ),
        binding(
            "krs-e2e-selfnodeclient",
            "system:nodes",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        ),
    ] {
        // Left by an interrupted earlier run, perhaps.
        let _ = crbs
            .delete(
                b.metadata.name.as_deref().unwrap(),
                &DeleteParams::default(),
            )
            .await;
        crbs.create(&PostParams::default(), &b).await.unwrap();
    }
    let cluster = env("KRS_CLUSTER_DIR");
    let boot = dir.join("bootstrap-kubelet.conf");
    std::fs::write(
        &boot,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: https://127.0.0.1:6443, certificate-authority: {cluster}/pki/ca.crt}}
users:
- name: u
  user: {{token: {token_id}.{token_secret}}}
contexts:
- name: x
  context: {{cluster: c, user: u}}
current-context: x
"
        ),
    )
    .unwrap();
    let kubeconfig = dir.join("kubelet.conf");
    let pki = dir.join("pki");
    let config = config_with("rotateCertificates: true", "bootstrap");
    let restore = Restore;
    // kubelet.sh waits for the node to be Ready: on the bootstrapped certificate.
    restart_kubelet_with(
        Some(&config),
        Some(&format!(
            "--v=2 --kubeconfig={} --bootstrap-kubeconfig={} --cert-dir={}",
            kubeconfig.display(),
            boot.display(),
            pki.display()
        )),
    );

    // The kubeconfig points at the current pair, an absolute link in --cert-dir.
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    let current = pki.join("kubelet-client-current.pem");
    assert!(
        kc.contains(&format!("client-certificate: {}", current.display())),
        "{kc}"
    );
    assert!(
        kc.contains(&format!("client-key: {}", current.display())),
        "{kc}"
    );
    // kubelet.sh returns once the Node is Ready, which it already was: wait for the pair.
    eventually(
        Duration::from_secs(60),
        "the client certificate issued",
        || {
            let c = current.clone();
            async move { c.exists().then_some(()) }
        },
    )
    .await;
    let target = std::fs::read_link(&current).unwrap();
    assert!(
        target.is_absolute() && target.starts_with(&pki),
        "{target:?}"
    );
    let subject = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-in",
        &current.display().to_string(),
    ]);
    assert!(
        subject.contains(&format!("CN = system:node:{}", node_name()))
            && subject.contains("O = system:nodes"),
        "{subject}"
    );
    let key = openssl(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        &current.display().to_string(),
    ]);
    assert!(key.contains("prime256v1") || key.contains("P-256"), "{key}");

    // The CSR: from the bootstrap token's user, for the kubelet client signer, approved.
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let mine: Vec<CertificateSigningRequest> = csrs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.spec.username.as_deref() == Some(&format!("system:bootstrap:{token_id}")))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let c = &mine[0];
    assert!(c.metadata.name.as_deref().unwrap().starts_with("csr-"));
    assert_eq!(
        c.spec.signer_name,
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        c.spec.usages.clone().unwrap(),
        ["digital signature", "key encipherment", "client auth"]
    );
    let status = c.status.clone().unwrap();
    assert!(status.certificate.is_some());
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|k| k.type_ == "Approved" && k.status == "True")
    );

    // The node works on that identity: a pod bound to it runs and reports its status.
    let ns = TestNs::new("bootstrap").await;
    let c = serde_json::json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    ns.wait_pod("p", Duration::from_secs(60), |p| phase(p) == "Running")
        .await;
    ns.cleanup().await;

    drop(restore);
    let _ = std::fs::remove_file(&config);
    cleanup.run().await;
}

/// The subject of the certificate 10250 serves now.
fn served_subject() -> String {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("openssl s_client -connect 127.0.0.1:10250 </dev/null 2>/dev/null | openssl x509 -noout -subject")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `serverTLSBootstrap`: 10250 keeps its configured pair until a serving CSR (signer
/// kubelet-serving, the node's addresses) is approved, then serves the issued one, which
/// the API server verifies for `kubectl logs`.
#[tokio::test]
async fn server_tls_bootstrap_serves_the_approved_certificate() {
    let _one = ONE_RESTART.lock().await;
    let client = client().await;
    let dir = std::env::temp_dir().join(format!("krs-e2e-serving-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_with("serverTLSBootstrap: true", "serving");
    let ns = TestNs::new("serving").await;
    let c = serde_json::json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sh", "-c", "echo hi; sleep 3600"]}]);
    ns.create(&ns.pod("p", "Always", c)).await;
    let restore = Restore;
    restart_kubelet_with(
        Some(&config),
        Some(&format!("--v=2 --cert-dir={}", dir.display())),
    );
    let node_user = format!("system:node:{}", node_name());
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let serving_csrs = || {
        let csrs = csrs.clone();
        let user = node_user.clone();
        async move {
            csrs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|c| {
                    c.spec.username.as_deref() == Some(user.as_str())
                        && c.spec.signer_name == "kubernetes.io/kubelet-serving"
                })
                .collect::<Vec<_>>()
        }
    };
    let csr = eventually(Duration::from_secs(30), "a serving CSR", || {
        let f = serving_csrs();
        async move { f.await.into_iter().next() }
    })
    .await;
    assert_eq!(
        csr.spec.usages.clone().unwrap(),
        ["digital signature", "key encipherment", "server auth"]
    );
    // Until approved, the configured pair (CN=<node>) is served.
    assert!(
        served_subject().contains(&format!("CN = {}", node_name())),
        "{}",
        served_subject()
    );
    let name = csr.metadata.name.clone().unwrap();
    let approve = std::process::Command::new("kubectl")
        .env("KUBECONFIG", env("KRS_KUBECONFIG"))
        .args(["certificate", "approve", &name])
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    eventually(
        Duration::from_secs(30),
        "the issued certificate served",
        || async {
            served_subject()
                .contains(&format!("CN = system:node:{}", node_name()))
                .then_some(())
        },
    )
    .await;
    assert!(dir.join("kubelet-server-current.pem").exists());
    // The API server checks it against the cluster CA: kubectl logs works.
    ns.wait_pod("p", Duration::from_secs(60), |p| phase(p) == "Running")
        .await;
    let logs = eventually(Duration::from_secs(30), "kubectl logs", || {
        let pods = ns.pods();
        async move { pods.logs("p", &Default::default()).await.ok() }
    })
    .await;
    assert_eq!(logs, "hi\n");

    drop(restore);
    ns.cleanup().await;
    for c in serving_csrs().await {
        let _ = csrs
            .delete(
                c.metadata.name.as_deref().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await;
    }
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_dir_all(&dir);
}
