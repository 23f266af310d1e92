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
