//! Certificate rotation decisions (upstream `client-go/util/certificate/certificate_manager.go`,
//! `csr/csr.go`, `pkg/kubelet/certificate/kubelet.go`): when to rotate, what to ask for, and
//! what a CertificateSigningRequest's status means. Pure: callers pass `now` and the jitter.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::NodeAddress;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The parts of an X.509 certificate the manager looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Hex, as openssl prints it (for logs and tests).
    pub serial: String,
}

/// What a certificate must carry (upstream's `x509.CertificateRequest` template).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

/// Signer, usages and store file prefix of one kind of kubelet certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrProfile {
    pub signer_name: &'static str,
    /// Exactly these: the API server refuses any other set for the kubelet signers.
    pub usages: &'static [&'static str],
    pub store_prefix: &'static str,
}

/// The kubelet's client certificate for the API server.
pub const CLIENT: CsrProfile = CsrProfile {
    signer_name: "kubernetes.io/kube-apiserver-client-kubelet",
    usages: &["digital signature", "key encipherment", "client auth"],
    store_prefix: "kubelet-client",
};

/// The serving certificate of 10250.
pub const SERVING: CsrProfile = CsrProfile {
    signer_name: "kubernetes.io/kubelet-serving",
    usages: &["digital signature", "key encipherment", "server auth"],
    store_prefix: "kubelet-server",
};

/// The group every node certificate names (NodeRestriction and the signers require it).
pub const NODES_GROUP: &str = "system:nodes";

/// When to rotate: at a random point in 70–90 % of the lifetime (upstream
/// `nextRotationDeadline`: `NotBefore + Jitter(T, 0.2) − 0.3·T`). `frac` is uniform in [0, 1).
pub fn rotation_deadline(not_before: Timestamp, not_after: Timestamp, frac: f64) -> Timestamp {
    let total = not_after.as_nanosecond() - not_before.as_nanosecond();
    if total <= 0 {
        return not_before;
    }
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Integer 70 % plus the jitter; clamped so float rounding never leaves [70 %, 90 %].
    let jitter = (total as f64 * 0.2 * frac) as i128;
    let offset = (total * 7 / 10 + jitter).min(total * 9 / 10);
    let offset = SignedDuration::from_nanos(i64::try_from(offset).unwrap_or(i64::MAX));
    not_before.checked_add(offset).unwrap_or(Timestamp::MAX)
}

/// Whether `cert` carries what `template` asks for (upstream `certSatisfiesTemplateLocked`):
/// the same CN, and every wanted DNS name, IP and organization. Extra ones do not matter.
pub fn satisfies(template: &Template, cert: &CertInfo) -> bool {
    template.common_name == cert.common_name
        && template
            .dns_names
            .iter()
            .all(|d| cert.dns_names.contains(d))
        && template
            .ip_addresses
            .iter()
            .all(|i| cert.ip_addresses.contains(i))
        && template
            .organizations
            .iter()
            .all(|o| cert.organizations.contains(o))
}

fn node_subject(node: &str) -> Template {
    Template {
        common_name: format!("system:node:{node}"),
        organizations: vec![NODES_GROUP.to_string()],
        ..Template::default()
    }
}

/// The client certificate's subject: `system:node:<node>` in `system:nodes`, no SANs.
pub fn client_template(node: &str) -> Template {
    node_subject(node)
}

/// The serving certificate's subject and SANs from the Node's addresses; `None` while there
/// are none (upstream requests nothing until node status knows an address).
pub fn serving_template(node: &str, addresses: &[NodeAddress]) -> Option<Template> {
    let (dns_names, ip_addresses) = addresses_to_sans(addresses);
    if dns_names.is_empty() && ip_addresses.is_empty() {
        return None;
    }
    Some(Template {
        dns_names,
        ip_addresses,
        ..node_subject(node)
    })
}

/// Upstream `addressesToHostnamesAndIPs`: a Hostname is a DNS name unless it parses as an IP;
/// Internal/ExternalIP are IPs (if they parse); Internal/ExternalDNS are DNS names. Deduplicated
/// and sorted (IPs by their text, as upstream).
pub fn addresses_to_sans(addresses: &[NodeAddress]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for a in addresses.iter().filter(|a| !a.address.is_empty()) {
        let ip = a.address.parse::<IpAddr>().ok();
        match a.type_.as_str() {
            "Hostname" => match ip {
                Some(ip) => {
                    ips.insert(ip);
                }
                None => {
                    dns.insert(a.address.clone());
                }
            },
            "ExternalIP" | "InternalIP" => ips.extend(ip),
            "ExternalDNS" | "InternalDNS" => {
                dns.insert(a.address.clone());
            }
            _ => {}
        }
    }
    let mut ips: Vec<IpAddr> = ips.into_iter().collect();
    ips.sort_by_key(|i| i.to_string());
    (dns.into_iter().collect(), ips)
}

/// Where a CertificateSigningRequest stands, as upstream's `WaitForCertificate` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrOutcome {
    /// Not decided, or approved but not yet signed.
    Pending,
    /// The signed certificate chain (PEM).
    Issued(Vec<u8>),
    Denied {
        reason: String,
        message: String,
    },
    Failed {
        reason: String,
        message: String,
    },
    /// Another object now has the name: ours was deleted and the name reused.
    UidChanged,
}

/// Reads a CSR's status. Denied and Failed win over Approved; an approved CSR without a
/// certificate is still pending (the signer has not run yet).
pub fn csr_outcome(csr: &CertificateSigningRequest, expected_uid: &str) -> CsrOutcome {
    if csr.metadata.uid.as_deref() != Some(expected_uid) {
        return CsrOutcome::UidChanged;
    }
    let Some(status) = &csr.status else {
        return CsrOutcome::Pending;
    };
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let reason = || c.reason.clone().unwrap_or_default();
        let message = || c.message.clone().unwrap_or_default();
        match c.type_.as_str() {
            "Denied" => {
                return CsrOutcome::Denied {
                    reason: reason(),
                    message: message(),
                };
            }
            "Failed" => {
                return CsrOutcome::Failed {
                    reason: reason(),
                    message: message(),
                };
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match &status.certificate {
        Some(c) if approved && !c.0.is_empty() => CsrOutcome::Issued(c.0.clone()),
        _ => CsrOutcome::Pending,
    }
}

/// `<prefix>-YYYY-MM-DD-HH-MM-SS.pem`, the store's name for a pair written at `ts`. Upstream
/// formats local time; we use UTC (jiff is built without a time zone database here).
pub fn store_file_name(prefix: &str, ts: Timestamp) -> String {
    format!("{prefix}-{}.pem", ts.strftime("%Y-%m-%d-%H-%M-%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn info(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> CertInfo {
        CertInfo {
            not_before: ts("2026-01-01T00:00:00Z"),
            not_after: ts("2026-01-02T00:00:00Z"),
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
            serial: "01".into(),
        }
    }

    #[test]
    fn deadline_is_between_70_and_90_percent() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-01-01T10:00:00Z");
        assert_eq!(rotation_deadline(nb, na, 0.0), ts("2026-01-01T07:00:00Z"));
        assert_eq!(rotation_deadline(nb, na, 0.5), ts("2026-01-01T08:00:00Z"));
        assert_eq!(rotation_deadline(nb, na, 1.0), ts("2026-01-01T09:00:00Z"));
        assert_eq!(
            rotation_deadline(nb, na, f64::NAN),
            ts("2026-01-01T07:00:00Z")
        );
        // An inverted validity rotates at once.
        assert_eq!(rotation_deadline(na, nb, 0.5), na);
    }

    /// The signer backdates 5 min; with a 10 min signing duration a cert issued at t0
    /// rotates 2–4 min after t0.
    #[test]
    fn short_signer_duration() {
        let t0 = ts("2026-01-01T00:05:00Z");
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-01-01T00:10:00Z");
        for frac in [0.0, 0.3, 0.99] {
            let d = rotation_deadline(nb, na, frac);
            let after = d.duration_since(t0).as_secs();
            assert!((120..=240).contains(&after), "{after}");
        }
    }

    proptest::proptest! {
        #[test]
        fn deadline_in_window(nb in -1_000_000_000i64..4_000_000_000, life in 1i64..400_000_000,
                              nanos in 0i64..1_000_000_000, frac in 0.0f64..1.0) {
            let nb = Timestamp::from_second(nb).unwrap() + SignedDuration::from_nanos(nanos);
            let na = nb + SignedDuration::from_secs(life);
            let d = rotation_deadline(nb, na, frac);
            let t = (na.as_nanosecond() - nb.as_nanosecond()) as f64;
            let off = (d.as_nanosecond() - nb.as_nanosecond()) as f64;
            proptest::prop_assert!(off >= 0.7 * t - 1.0, "{off} < 0.7*{t}");
            proptest::prop_assert!(off <= 0.9 * t + 1.0, "{off} > 0.9*{t}");
        }
    }

    #[test]
    fn template_satisfaction() {
        let t = Template {
            common_name: "system:node:a".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec!["a".into()],
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
        };
        let ok = info("system:node:a", &["system:nodes"], &["a"], &["10.0.0.1"]);
        assert!(satisfies(&t, &ok));
        // Extras do not matter.
        let extra = info(
            "system:node:a",
            &["system:nodes", "x"],
            &["a", "b"],
            &["10.0.0.1", "::1"],
        );
        assert!(satisfies(&t, &extra));
        assert!(!satisfies(
            &t,
            &info("system:node:b", &["system:nodes"], &["a"], &["10.0.0.1"])
        ));
        assert!(!satisfies(
            &t,
            &info("system:node:a", &[], &["a"], &["10.0.0.1"])
        ));
        assert!(!satisfies(
            &t,
            &info("system:node:a", &["system:nodes"], &[], &["10.0.0.1"])
        ));
        assert!(!satisfies(
            &t,
            &info("system:node:a", &["system:nodes"], &["a"], &["10.0.0.2"])
        ));
        let c = client_template("a");
        assert_eq!(c.common_name, "system:node:a");
        assert_eq!(c.organizations, vec!["system:nodes"]);
        assert!(c.dns_names.is_empty() && c.ip_addresses.is_empty());
    }

    fn addr(t: &str, a: &str) -> NodeAddress {
        NodeAddress {
            type_: t.into(),
            address: a.into(),
        }
    }

    #[test]
    fn serving_sans_as_upstream() {
        let addrs = [
            addr("Hostname", "node-b"),
            addr("Hostname", "10.0.0.9"),
            addr("InternalIP", "10.0.0.10"),
            addr("InternalIP", "not-an-ip"),
            addr("ExternalIP", "10.0.0.10"),
            addr("ExternalIP", "2001:db8::1"),
            addr("InternalDNS", "b.internal"),
            addr("ExternalDNS", "b.example.com"),
            addr("Hostname", "node-b"),
            addr("Hostname", ""),
            addr("Other", "x"),
        ];
        let t = serving_template("node-b", &addrs).unwrap();
        assert_eq!(t.common_name, "system:node:node-b");
        assert_eq!(t.organizations, vec!["system:nodes"]);
        assert_eq!(t.dns_names, vec!["b.example.com", "b.internal", "node-b"]);
        let ips: Vec<String> = t.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, vec!["10.0.0.10", "10.0.0.9", "2001:db8::1"]);
        assert_eq!(serving_template("n", &[]), None);
        assert_eq!(serving_template("n", &[addr("InternalIP", "bad")]), None);
    }

    fn csr(uid: &str, conds: &[(&str, &str)], cert: Option<&[u8]>) -> CertificateSigningRequest {
        let mut c = CertificateSigningRequest::default();
        c.metadata.uid = Some(uid.into());
        c.status = Some(CertificateSigningRequestStatus {
            certificate: cert.map(|c| ByteString(c.to_vec())),
            conditions: Some(
                conds
                    .iter()
                    .map(|(t, r)| CertificateSigningRequestCondition {
                        type_: t.to_string(),
                        status: "True".into(),
                        reason: Some(r.to_string()),
                        message: Some(format!("m-{r}")),
                        ..Default::default()
                    })
                    .collect(),
            ),
        });
        c
    }

    #[test]
    fn csr_outcomes() {
        let mut none = csr("u", &[], None);
        none.status = None;
        assert_eq!(csr_outcome(&none, "u"), CsrOutcome::Pending);
        assert_eq!(csr_outcome(&none, "v"), CsrOutcome::UidChanged);
        assert_eq!(
            csr_outcome(&csr("u", &[("Approved", "A")], None), "u"),
            CsrOutcome::Pending
        );
        assert_eq!(
            csr_outcome(&csr("u", &[("Approved", "A")], Some(b"")), "u"),
            CsrOutcome::Pending
        );
        // A certificate without approval is not taken.
        assert_eq!(
            csr_outcome(&csr("u", &[], Some(b"pem")), "u"),
            CsrOutcome::Pending
        );
        assert_eq!(
            csr_outcome(&csr("u", &[("Approved", "A")], Some(b"pem")), "u"),
            CsrOutcome::Issued(b"pem".to_vec())
        );
        assert_eq!(
            csr_outcome(&csr("u", &[("Approved", "A"), ("Denied", "D")], None), "u"),
            CsrOutcome::Denied {
                reason: "D".into(),
                message: "m-D".into()
            }
        );
        assert_eq!(
            csr_outcome(&csr("u", &[("Failed", "F")], Some(b"pem")), "u"),
            CsrOutcome::Failed {
                reason: "F".into(),
                message: "m-F".into()
            }
        );
    }

    #[test]
    fn store_names() {
        assert_eq!(
            store_file_name("kubelet-client", ts("2026-03-04T05:06:07.8Z")),
            "kubelet-client-2026-03-04-05-06-07.pem"
        );
        assert_eq!(CLIENT.store_prefix, "kubelet-client");
        assert_eq!(SERVING.signer_name, "kubernetes.io/kubelet-serving");
        assert_eq!(SERVING.usages[2], "server auth");
    }
}
