//! The property that the fuzzers check, shared by the proptest run in CI
//! (`tests/fuzz_request_parsing.rs`) and the coverage-guided target (`fuzz/`): any request
//! line gets an answer in time, never a 5xx from parsing, and a log is served only for the one
//! valid name the stub host knows.

use crate::auth::{Authenticator, Authorizer};
use crate::{HostError, HostInterface};
use axum::body::Body;
use axum::http::Request;
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A host with no pods but one log, for container `app` of pod `default/web` only.
#[derive(Debug)]
struct StubHost {
    log: PathBuf,
}

#[async_trait::async_trait]
impl HostInterface for StubHost {
    fn now(&self) -> jiff::Timestamp {
        kubelet_core::clock::system().now()
    }

    fn node_name(&self) -> String {
        "n1".into()
    }
    fn healthz(&self) -> Result<(), crate::auth::BoxError> {
        Ok(())
    }
    async fn pods(&self) -> Vec<Pod> {
        vec![]
    }
    async fn log_path(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        _: bool,
    ) -> Result<PathBuf, HostError> {
        if (ns, pod, container) == ("default", "web", "app") {
            Ok(self.log.clone())
        } else {
            Err(HostError::not_found("pod does not exist"))
        }
    }
    async fn container_running(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

/// The stub's one log file, written once per process.
fn log_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("krs-fuzz-{}", std::process::id()));
    let log = dir.join("0.log");
    if !log.exists() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(&log, "2026-11-24T10:00:00.000000000Z stdout F hello\n");
    }
    log
}

/// How a request broke the property.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    #[error("{method} {target}: no answer within 5 s")]
    NoAnswer { method: String, target: String },
    #[error("{method} {target}: {error}")]
    Failed {
        method: String,
        target: String,
        error: std::convert::Infallible,
    },
    #[error("{method} {target} -> {status}")]
    ServerError {
        method: String,
        target: String,
        status: u16,
    },
    #[error("{method} {target}: served a log for {path}")]
    WrongLog {
        method: String,
        target: String,
        path: String,
    },
}

/// Sends one request (`target` is the path and query) through the API's router with
/// anonymous access allowed; `Err` says how the property broke. A target that is not even a
/// valid URI passes: hyper refuses it before routing.
pub async fn check_request(method: &str, target: &str, upgrade: bool) -> Result<(), Violation> {
    let (m, t) = (method.to_string(), target.to_string());
    let app = crate::server::router(
        Arc::new(StubHost { log: log_file() }),
        Arc::new(Authenticator::new(true, None, Duration::from_secs(1))),
        Arc::new(Authorizer::new(
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )),
        CancellationToken::new(),
    );
    let mut b = Request::builder().method(method).uri(target);
    if upgrade {
        b = b
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1");
    }
    let Ok(req) = b.body(Body::empty()) else {
        return Ok(());
    };
    let path = req.uri().path().to_string();
    let resp = tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .map_err(|_| Violation::NoAnswer {
            method: m.clone(),
            target: t.clone(),
        })?
        .map_err(|error| Violation::Failed {
            method: m.clone(),
            target: t.clone(),
            error,
        })?;
    let status = resp.status().as_u16();
    if status >= 500 {
        return Err(Violation::ServerError {
            method: m,
            target: t,
            status,
        });
    }
    if status == 200
        && path.starts_with("/containerLogs/")
        && path != "/containerLogs/default/web/app"
    {
        return Err(Violation::WrongLog {
            method: m,
            target: t,
            path,
        });
    }
    Ok(())
}
