//! `containerLogs?follow=true` across a log rotation: the follower moves to the new file the
//! runtime opens at the same path, as upstream's log reader does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use kubelet_server::testing::{TestHost, open_router};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

fn line(text: &str) -> String {
    format!("2026-11-30T10:00:00.000000000Z stdout F {text}\n")
}

fn append(path: &PathBuf, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(line(text).as_bytes()).unwrap();
}

#[tokio::test]
async fn follow_moves_to_the_rotated_in_file() {
    let dir = std::env::temp_dir().join(format!("krs-follow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    append(&log, "first");
    // Still running: the follower waits for more rather than ending.
    let app = open_router(Arc::new(TestHost {
        running: true,
        ..TestHost::new(log.clone())
    }));
    let req = Request::get("/containerLogs/default/web/app?follow=true")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut next = async || -> String {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5 s")
            .expect("the stream goes on")
            .unwrap();
        String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()
    };
    assert_eq!(next().await, "first\n");
    append(&log, "before");
    assert_eq!(next().await, "before\n");
    // What the kubelet's rotation and the runtime's reopen do.
    std::fs::rename(&log, dir.join("0.log.20261130-100000")).unwrap();
    append(&log, "after");
    assert_eq!(next().await, "after\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
