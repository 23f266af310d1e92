//! Asking for a certificate and waiting for it (upstream `client-go/util/certificate/csr`):
//! a certificates.k8s.io/v1 CSR named by the server (`generateName: csr-`), then a watch of
//! that one object until it is issued, denied or failed.

use crate::api::CsrClient;
use crate::error::ApiError;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::runtime::watcher::Event;
use kubelet_core::certificate::{CsrOutcome, csr_outcome};
use std::time::Duration;
use tracing::debug;

/// Why no certificate came.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("cannot create certificate signing request: {0}")]
    Create(#[source] ApiError),
    #[error("certificate signing request created without a name or UID")]
    Incomplete,
    #[error("certificate signing request is denied, reason: {reason}, message: {message}")]
    Denied { reason: String, message: String },
    #[error("certificate signing request failed, reason: {reason}, message: {message}")]
    Failed { reason: String, message: String },
    #[error("csr {0:?} changed UIDs")]
    UidChanged(String),
    #[error("csr {0:?} was deleted")]
    Deleted(String),
    #[error("timed out waiting for csr {0:?} to be issued")]
    Timeout(String),
    #[error("the watch of csr {0:?} ended")]
    WatchEnded(String),
}

/// A created CSR: its server-given name and the UID that tells it from a later namesake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrRef {
    pub name: String,
    pub uid: String,
}

/// The CSR object. `expirationSeconds` stays unset: 1.20's API server does not know it.
pub fn csr_object(csr_pem: &[u8], signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    let mut csr = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.to_vec()),
            signer_name: signer.to_string(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    csr.metadata.generate_name = Some("csr-".into());
    csr
}

/// Creates the CSR (upstream `RequestCertificate` with an empty name).
pub async fn request_certificate(
    client: &dyn CsrClient,
    csr_pem: &[u8],
    signer: &str,
    usages: &[&str],
) -> Result<CsrRef, CsrError> {
    let made = client
        .create_csr(&csr_object(csr_pem, signer, usages))
        .await
        .map_err(CsrError::Create)?;
    match (made.metadata.name, made.metadata.uid) {
        (Some(name), Some(uid)) if !name.is_empty() && !uid.is_empty() => Ok(CsrRef { name, uid }),
        _ => Err(CsrError::Incomplete),
    }
}

/// Waits for the CSR's certificate (PEM), at most `timeout` (upstream `WaitForCertificate`).
/// Watch errors are retried by the watch itself; only the CSR's own state ends the wait.
pub async fn wait_for_certificate(
    client: &dyn CsrClient,
    csr: &CsrRef,
    timeout: Duration,
) -> Result<Vec<u8>, CsrError> {
    let wait = async {
        let mut watch = client.watch_csr(&csr.name);
        while let Some(ev) = watch.next().await {
            let obj = match ev {
                Ok(Event::Apply(o) | Event::InitApply(o)) => o,
                Ok(Event::Delete(_)) => return Err(CsrError::Deleted(csr.name.clone())),
                Ok(Event::Init | Event::InitDone) => continue,
                Err(e) => {
                    debug!(csr = %csr.name, error = %e, "watching certificate signing request");
                    continue;
                }
            };
            match csr_outcome(&obj, &csr.uid) {
                CsrOutcome::Pending => {
                    debug!(csr = %csr.name, "certificate signing request not issued yet");
                }
                CsrOutcome::Issued(pem) => return Ok(pem),
                CsrOutcome::Denied { reason, message } => {
                    return Err(CsrError::Denied { reason, message });
                }
                CsrOutcome::Failed { reason, message } => {
                    return Err(CsrError::Failed { reason, message });
                }
                CsrOutcome::UidChanged => return Err(CsrError::UidChanged(csr.name.clone())),
            }
        }
        Err(CsrError::WatchEnded(csr.name.clone()))
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| Err(CsrError::Timeout(csr.name.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeApi;
    use std::sync::Arc;

    const USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

    async fn request(api: &FakeApi) -> CsrRef {
        request_certificate(api, b"CSR PEM", "kubernetes.io/x", USAGES)
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn created_with_generate_name_and_issued() {
        let api = FakeApi::new();
        let r = request(&api).await;
        assert!(r.name.starts_with("csr-"), "{}", r.name);
        let stored = api.state().csrs[&(String::new(), r.name.clone())].clone();
        assert_eq!(stored.metadata.generate_name.as_deref(), Some("csr-"));
        assert_eq!(stored.spec.signer_name, "kubernetes.io/x");
        assert_eq!(stored.spec.usages.as_deref().unwrap(), USAGES);
        assert_eq!(stored.spec.request.0, b"CSR PEM");
        assert_eq!(stored.spec.expiration_seconds, None);
        // Not serialised at all, so a 1.20 server sees no unknown field.
        let json = serde_json::to_value(csr_object(b"x", "s", USAGES)).unwrap();
        assert!(json["spec"].get("expirationSeconds").is_none());

        let api2 = api.clone();
        let name = r.name.clone();
        let waiter =
            tokio::spawn(
                async move { wait_for_certificate(&api2, &r, Duration::from_secs(900)).await },
            );
        // Approved without a certificate: still waiting.
        api.wait_for(|s| s.calls.iter().any(|c| c == "watch_csr"))
            .await;
        api.approve_csr(&name, None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        api.approve_csr(&name, Some(b"CERT PEM"));
        assert_eq!(waiter.await.unwrap().unwrap(), b"CERT PEM");
    }

    #[tokio::test(start_paused = true)]
    async fn already_issued_before_the_watch() {
        let api = FakeApi::new();
        let r = request(&api).await;
        api.approve_csr(&r.name, Some(b"CERT"));
        let got = wait_for_certificate(&api, &r, Duration::from_secs(1)).await;
        assert_eq!(got.unwrap(), b"CERT");
    }

    #[tokio::test(start_paused = true)]
    async fn denied_failed_deleted_uid_changed_and_timeout() {
        let api = FakeApi::new();
        let r = request(&api).await;
        api.deny_csr(&r.name, "Nope", "not you");
        let e = wait_for_certificate(&api, &r, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "certificate signing request is denied, reason: Nope, message: not you"
        );

        let r = request(&api).await;
        api.update_csr(&r.name, |c| {
            c.status = Some(Default::default());
            c.status.as_mut().unwrap().conditions = Some(vec![
                k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerFailed".into()),
                    ..Default::default()
                },
            ]);
        });
        let e = wait_for_certificate(&api, &r, Duration::from_secs(1)).await;
        assert!(matches!(e, Err(CsrError::Failed { .. })), "{e:?}");

        let r = request(&api).await;
        api.update_csr(&r.name, |c| c.metadata.uid = Some("other".into()));
        let e = wait_for_certificate(&api, &r, Duration::from_secs(1)).await;
        assert!(matches!(e, Err(CsrError::UidChanged(_))), "{e:?}");

        let r = request(&api).await;
        let t0 = tokio::time::Instant::now();
        let e = wait_for_certificate(&api, &r, Duration::from_secs(900)).await;
        assert!(matches!(e, Err(CsrError::Timeout(_))), "{e:?}");
        assert_eq!(t0.elapsed(), Duration::from_secs(900));

        let r = request(&api).await;
        let api2 = Arc::new(api.clone());
        let r2 = r.clone();
        let waiter =
            tokio::spawn(
                async move { wait_for_certificate(&*api2, &r2, Duration::from_secs(9)).await },
            );
        api.wait_for(|s| s.calls.iter().filter(|c| *c == "watch_csr").count() == 5)
            .await;
        api.delete_csr(&r.name);
        let e = waiter.await.unwrap();
        assert!(matches!(e, Err(CsrError::Deleted(_))), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn create_errors_are_reported() {
        let api = FakeApi::new();
        api.fail("create_csr", 1, 403);
        let e = request_certificate(&api, b"x", "s", USAGES).await;
        assert!(
            matches!(e, Err(CsrError::Create(ref a)) if a.is_status(403)),
            "{e:?}"
        );
    }
}
