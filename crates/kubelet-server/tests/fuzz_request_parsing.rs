//! A bounded fuzz run over the request path and query parsing of the 10250 API: random
//! paths built from the real endpoints and hostile pieces (`..`, encoded slashes, NULs,
//! long and non-ASCII segments), with random query parameters. The server must answer
//! every one without panicking, never with a 5xx from parsing, and never serve a log for a
//! name that is not a valid one. (Coverage-guided fuzzing needs a nightly toolchain, which
//! this project's machines do not have; proptest's seeded search runs on stable, in CI.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::Request;
use k8s_openapi::api::core::v1::Pod;
use kubelet_server::auth::{Authenticator, Authorizer};
use kubelet_server::{HostError, HostInterface};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[derive(Debug)]
struct Host {
    log: PathBuf,
}

#[async_trait::async_trait]
impl HostInterface for Host {
    fn node_name(&self) -> String {
        "n1".into()
    }
    fn healthz(&self) -> Result<(), String> {
        Ok(())
    }
    async fn pods(&self) -> Vec<Pod> {
        vec![]
    }
    async fn log_path(&self, _: &str, pod: &str, _: &str, _: bool) -> Result<PathBuf, HostError> {
        // Only the one valid pod has a log.
        if pod == "web" {
            Ok(self.log.clone())
        } else {
            Err(HostError::not_found("pod does not exist"))
        }
    }
    async fn container_running(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("containerLogs".to_string()),
        Just("exec".to_string()),
        Just("attach".to_string()),
        Just("portForward".to_string()),
        Just("stats".to_string()),
        Just("summary".to_string()),
        Just("metrics".to_string()),
        Just("pods".to_string()),
        Just("healthz".to_string()),
        Just("default".to_string()),
        Just("web".to_string()),
        Just("app".to_string()),
        Just("..".to_string()),
        Just("%2F".to_string()),
        Just("..%2F..%2Fetc".to_string()),
        Just("%00".to_string()),
        Just("%252F".to_string()),
        Just("é".to_string()),
        "[a-z0-9.-]{0,12}",
        "[ -~]{0,20}".prop_map(|s| s.replace(['?', '#', ' '], "_")),
        "a{200,300}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("tailLines"),
        Just("sinceSeconds"),
        Just("sinceTime"),
        Just("limitBytes"),
        Just("timestamps"),
        Just("previous"),
        Just("follow"),
        Just("command"),
        Just("input"),
        Just("output"),
        Just("error"),
        Just("tty"),
        Just("port"),
        Just("only_cpu_and_memory"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("1".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("2026-11-24T10:00:00Z".to_string()),
        Just("%ZZ".to_string()),
        "[a-zA-Z0-9%=&+-]{0,16}",
    ];
    prop::collection::vec((key, value), 0..5).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_path_and_query_gets_an_answer(
        segs in prop::collection::vec(segment(), 0..6),
        q in query(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        upgrade in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("krs-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        if !log.exists() {
            std::fs::write(&log, "2026-11-24T10:00:00.000000000Z stdout F hello\n").unwrap();
        }
        let app = kubelet_server::server::router(
            Arc::new(Host { log }),
            Arc::new(Authenticator::new(true, None, Duration::from_secs(1))),
            Arc::new(Authorizer::new(None, Duration::from_secs(1), Duration::from_secs(1))),
            CancellationToken::new(),
        );
        let path = format!("/{}", segs.join("/"));
        let uri = if q.is_empty() { path.clone() } else { format!("{path}?{q}") };
        let Ok(mut b) = Request::builder().method(method).uri(&uri).body(Body::empty()).map(|r| r.into_parts()) else {
            // Not even a valid URI: hyper would have refused it before routing.
            return Ok(());
        };
        if upgrade {
            b.0.headers.insert("connection", "Upgrade".parse().unwrap());
            b.0.headers.insert("upgrade", "SPDY/3.1".parse().unwrap());
        }
        let req = Request::from_parts(b.0, b.1);
        let resp = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), app.oneshot(req)).await
        });
        let resp = resp.expect("answered in time").expect("infallible");
        let status = resp.status().as_u16();
        prop_assert!(status < 500, "{method} {uri} -> {status}");
        // A log is served only for the valid names the host knows.
        if status == 200 && path.starts_with("/containerLogs/") {
            prop_assert_eq!(path.as_str(), "/containerLogs/default/web/app", "{}", uri);
        }
    }
}
