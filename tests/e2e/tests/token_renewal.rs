//! The projected service-account token is renewed once 80 % of its lifetime has passed, as
//! upstream's token manager does. The API server's shortest lifetime is 10 minutes, so this
//! test takes about 9: it is ignored in the main run and `scripts/test.sh` runs it alongside
//! the others (`--ignored`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use kubelet_e2e::{TestNs, eventually, kubelet_root, phase};
use serde_json::json;
use std::time::Duration;

fn claims(jwt: &str) -> serde_json::Value {
    let part = jwt.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
#[ignore = "takes 9 minutes; scripts/test.sh runs it in the background"]
async fn projected_token_is_renewed_at_80_percent() {
    let ns = TestNs::new("token").await;
    let mut p = ns.pod(
        "p",
        "Always",
        // Guaranteed: it runs beside the eviction tests, whose node-pressure evictions take
        // the pods over their requests first (a BestEffort pod here was evicted once).
        json!([{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
            "command": ["sleep", "3600"], "volumeMounts": [{"name": "tok", "mountPath": "/var/run/tok"}],
            "resources": {"limits": {"cpu": "10m", "memory": "16Mi"}}}]),
    );
    p.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(json!([{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "e2e", "expirationSeconds": 600}}
        ]}}]))
        .unwrap(),
    );
    ns.create(&p).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.unwrap();
    let file = kubelet_root().join(format!(
        "pods/{uid}/volumes/kubernetes.io~projected/tok/token"
    ));
    let first = std::fs::read_to_string(&file).unwrap();
    let c1 = claims(&first);
    assert_eq!(c1["aud"], json!(["e2e"]));
    let (iat1, exp1) = (c1["iat"].as_i64().unwrap(), c1["exp"].as_i64().unwrap());
    assert_eq!(exp1 - iat1, 600);

    let second = eventually(Duration::from_secs(600), "the token renewed", || {
        let now = std::fs::read_to_string(&file).ok();
        let first = first.clone();
        async move { now.filter(|t| !t.trim().is_empty() && *t != first) }
    })
    .await;
    let c2 = claims(&second);
    let iat2 = c2["iat"].as_i64().unwrap();
    // Renewed after 80 % of the lifetime (480 s), checked on volume refreshes (each resync),
    // and before the old token expired.
    assert!(
        (iat1 + 470..exp1).contains(&iat2),
        "renewed {} s after issue",
        iat2 - iat1
    );
    assert_eq!(c2["aud"], json!(["e2e"]));
    ns.cleanup().await;
}
