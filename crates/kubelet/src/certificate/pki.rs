//! Certificates in and out: parsing PEM chains into [`CertInfo`], loading a cert/key pair for
//! rustls, and making a fresh key and CSR for a [`Template`] (upstream `certificate_manager.go`
//! `generateCSR`, `certutil.ParseCertsPEM`, `tls.X509KeyPair`).

use super::CertError;
use k8s_openapi::jiff::Timestamp;
use kubelet_core::certificate::{CertInfo, Template};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::sync::Arc;

fn parse_err(what: &'static str, message: impl std::fmt::Display) -> CertError {
    CertError::Parse {
        what,
        message: message.to_string(),
    }
}

fn asn1_time(t: x509_parser::time::ASN1Time) -> Result<Timestamp, CertError> {
    Timestamp::from_second(t.timestamp()).map_err(|e| parse_err("validity", e))
}

/// The fields the manager needs from one DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, CertError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| parse_err("certificate", e))?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: asn1_time(validity.not_before)?,
        not_after: asn1_time(validity.not_after)?,
        common_name,
        organizations,
        dns_names,
        ip_addresses,
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect(),
    })
}

fn der_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_err("certificate PEM", e))?;
    if chain.is_empty() {
        return Err(parse_err("certificate PEM", "no certificate found"));
    }
    Ok(chain)
}

/// Every certificate of a PEM chain, leaf first; an error if there is none or one is broken.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    der_chain(pem)?.iter().map(|d| cert_info(d)).collect()
}

/// A loaded pair: what TLS presents, and what the manager decides on.
#[derive(Debug, Clone)]
pub struct Pair {
    pub certified: Arc<CertifiedKey>,
    /// The leaf certificate.
    pub info: CertInfo,
    /// The earliest `notAfter` in the chain (upstream counts a pair expired when any is).
    pub expires: Timestamp,
}

/// Loads a chain and its private key (PKCS#8, SEC1 or PKCS#1 PEM; the two may be the same
/// combined file's bytes). Fails unless the key is the leaf's.
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, CertError> {
    let chain = der_chain(cert_pem)?;
    let infos = chain
        .iter()
        .map(|d| cert_info(d))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| parse_err("private key", e))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| parse_err("private key", e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| CertError::KeyMismatch)?;
    let expires = infos
        .iter()
        .map(|i| i.not_after)
        .min()
        .unwrap_or(Timestamp::MIN);
    let info = infos
        .into_iter()
        .next()
        .ok_or_else(|| parse_err("certificate PEM", "no certificate found"))?;
    Ok(Pair {
        certified: Arc::new(certified),
        info,
        expires,
    })
}

/// A new ECDSA P-256 key and a CSR for `t`, both PEM: `(csr, key)`. The subject is O then CN,
/// in Go's order; SANs only when the template has some (the API server refuses SANs in
/// client certificates).
pub fn generate_csr(t: &Template) -> Result<(String, String), CertError> {
    use rcgen::{DistinguishedName, DnType, SanType};
    if t.organizations.len() > 1 {
        // rcgen keeps one value per attribute type; the kubelet's signers want exactly one O.
        return Err(parse_err("template", "more than one organization"));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    // Not the default's "rcgen self signed cert" CN.
    params.distinguished_name = DistinguishedName::new();
    for o in &t.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, t.common_name.as_str());
    let mut sans = Vec::new();
    for d in &t.dns_names {
        sans.push(SanType::DnsName(d.clone().try_into()?));
    }
    sans.extend(t.ip_addresses.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((csr, key.serialize_pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test CA that signs CSRs the way kube-controller-manager's signer does.
    pub struct TestCa {
        params: rcgen::CertificateParams,
        key: rcgen::KeyPair,
        pub pem: String,
    }

    fn system_time(t: Timestamp) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_second().max(0) as u64)
    }

    impl TestCa {
        pub fn new() -> Self {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test-ca");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            TestCa { params, key, pem }
        }

        /// Signs `csr_pem` for [not_before, not_after]; the PEM is the leaf then the CA.
        pub fn sign(&self, csr_pem: &str, not_before: Timestamp, not_after: Timestamp) -> String {
            let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
            csr.params.not_before = system_time(not_before).into();
            csr.params.not_after = system_time(not_after).into();
            let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
            format!("{}{}", csr.signed_by(&issuer).unwrap().pem(), self.pem)
        }
    }

    /// A new key and a certificate for `t` from `ca`: `(cert chain PEM, key PEM)`.
    pub fn issue(ca: &TestCa, t: &Template, nb: Timestamp, na: Timestamp) -> (String, String) {
        let (csr, key) = generate_csr(t).unwrap();
        (ca.sign(&csr, nb, na), key)
    }

    /// A fresh empty directory for one test.
    pub fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("krs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn client_csr_shape() {
        let t = kubelet_core::certificate::client_template("node-a");
        let (csr, key) = generate_csr(&t).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap();
        use x509_parser::prelude::FromDer;
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .unwrap();
        req.verify_signature().unwrap();
        let subject = &req.certification_request_info.subject;
        assert_eq!(subject.to_string(), "O=system:nodes, CN=system:node:node-a");
        // No extension request at all: no SANs.
        assert!(req.requested_extensions().is_none());
        // P-256.
        let spki = &req.certification_request_info.subject_pki;
        assert_eq!(
            spki.algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1",
            "id-ecPublicKey"
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7", "prime256v1");
        assert!(key.contains("PRIVATE KEY"));

        // Signed, it loads with its key, and says what was asked.
        let ca = TestCa::new();
        let pem = ca.sign(&csr, ts("2026-01-01T00:00:00Z"), ts("2026-01-01T01:00:00Z"));
        let pair = load_pair(pem.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(pair.info.common_name, "system:node:node-a");
        assert_eq!(pair.info.organizations, vec!["system:nodes"]);
        assert_eq!(pair.info.not_before, ts("2026-01-01T00:00:00Z"));
        assert_eq!(pair.info.not_after, ts("2026-01-01T01:00:00Z"));
        assert!(kubelet_core::certificate::satisfies(&t, &pair.info));
        assert_eq!(pair.certified.cert.len(), 2);
        let chain = parse_pem_chain(pem.as_bytes()).unwrap();
        assert_eq!(chain[1].common_name, "test-ca");

        // Another key does not match.
        let (_, other) = generate_csr(&t).unwrap();
        assert!(matches!(
            load_pair(pem.as_bytes(), other.as_bytes()),
            Err(CertError::KeyMismatch)
        ));
        // Half a PEM is no certificate.
        assert!(load_pair(&pem.as_bytes()[..pem.len() / 2], key.as_bytes()).is_err());
        assert!(parse_pem_chain(b"").is_err());
    }

    #[test]
    fn serving_csr_has_sans() {
        let addrs = [
            k8s_openapi::api::core::v1::NodeAddress {
                type_: "Hostname".into(),
                address: "node-a".into(),
            },
            k8s_openapi::api::core::v1::NodeAddress {
                type_: "InternalIP".into(),
                address: "10.1.2.3".into(),
            },
        ];
        let t = kubelet_core::certificate::serving_template("node-a", &addrs).unwrap();
        let (csr, key) = generate_csr(&t).unwrap();
        let ca = TestCa::new();
        let pem = ca.sign(&csr, ts("2026-01-01T00:00:00Z"), ts("2026-01-01T01:00:00Z"));
        let pair = load_pair(pem.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(pair.info.dns_names, vec!["node-a"]);
        assert_eq!(
            pair.info.ip_addresses,
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(kubelet_core::certificate::satisfies(&t, &pair.info));
    }
}
