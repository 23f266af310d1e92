//! The property that the fuzzers check, shared by the proptest run in CI
//! (`tests/fuzz_request_parsing.rs`) and the coverage-guided target (`fuzz/`): any request
//! line gets an answer in time, never a 5xx from parsing, and a log is served only for the one
//! valid name the test host knows.

use crate::testing::{TestHost, open_router};
use axum::body::Body;
use axum::http::Request;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The test host's one log file, written once per process.
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
    let app = open_router(Arc::new(TestHost::new(log_file())));
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
