use super::*;

#[test]
fn tls_settings_are_honoured_or_refused() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cfg = |min: &str, suites: &[&str]| ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
        cert_resolver: None,
        client_ca_pem: None,
        min_version: min.into(),
        cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
    };
    assert!(tls_config(&cfg("", &[])).is_ok());
    assert!(tls_config(&cfg("VersionTLS13", &[])).is_ok());
    let e = tls_config(&cfg("VersionTLS99", &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("VersionTLS99"), "{e}");
    let ok = tls_config(&cfg("", &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])).unwrap();
    let _ = ok;
    let suites = cipher_suites(&["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()]).unwrap();
    // TLS 1.3's three, and the one TLS 1.2 suite asked for.
    assert_eq!(suites.len(), 4);
    let e = tls_config(&cfg("", &["TLS_RSA_WITH_RC4_128_SHA"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("TLS_RSA_WITH_RC4_128_SHA"), "{e}");
}

#[test]
fn names() {
    assert!(valid_name("kube-system") && valid_name("web-0") && valid_name("a.b"));
    for bad in ["", "..", "a/b", "../etc", "A", "-a", "a..b", "a%2Fb"] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[tokio::test]
async fn streaming_paths_name_the_pod_uid_and_container() {
    let echo = |Path(p): Path<StreamPath>| async move { format!("{p:?}") };
    let app = STREAM_ROUTES
        .iter()
        .fold(Router::new(), |app, (path, _)| app.route(path, get(echo)));
    let want = |uid: &str, container: &str| {
        format!(
            r#"StreamPath {{ namespace: "ns", pod: "p", uid: {uid}, container: "{container}" }}"#
        )
    };
    for (path, want) in [
        ("/exec/ns/p/c", want("None", "c")),
        ("/exec/ns/p/u1/c", want(r#"Some("u1")"#, "c")),
        ("/attach/ns/p/c", want("None", "c")),
        ("/attach/ns/p/u1/c", want(r#"Some("u1")"#, "c")),
        ("/portForward/ns/p", want("None", "")),
        ("/portForward/ns/p/u1", want(r#"Some("u1")"#, "")),
    ] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&body), want, "{path}");
    }
}
