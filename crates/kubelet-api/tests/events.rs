//! The event recorder against the in-memory API server, on a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::Pod;
use kubelet_api::events::{self, Recorder};
use kubelet_api::fake::FakeApi;
use kubelet_core::clock::FakeClock;
use std::sync::Arc;

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": name, "uid": format!("uid-{name}")},
    }))
    .unwrap()
}

/// Emits an event about pod `name` (no container).
fn emit(r: &Recorder, name: &str, type_: &'static str, reason: &str, message: impl Into<String>) {
    r.emit(events::pod_ref(&pod(name), None), type_, reason, message);
}

fn recorder(api: &FakeApi) -> (Recorder, tokio::task::JoinHandle<()>, Arc<FakeClock>) {
    let clock = FakeClock::new();
    let (r, sender) = Recorder::new(Arc::new(api.clone()), "n1".into(), clock.clone());
    (r, tokio::spawn(sender), clock)
}

/// Drops the recorder and waits for its sender to deliver what it still holds.
async fn flush(r: Recorder, task: tokio::task::JoinHandle<()>) {
    drop(r);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_event_names_its_object_source_and_time() {
    let api = FakeApi::new();
    let (r, task, clock) = recorder(&api);
    r.emit(
        events::pod_ref(&pod("a"), Some("c")),
        events::WARNING,
        "BackOff",
        "Back-off restarting failed container",
    );
    flush(r, task).await;
    let s = api.state();
    assert_eq!(s.events.len(), 1);
    let e = &s.events[0];
    assert_eq!(e.reason.as_deref(), Some("BackOff"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(
        e.involved_object.field_path.as_deref(),
        Some("spec.containers{c}")
    );
    let src = e.source.as_ref().unwrap();
    assert_eq!(
        (src.component.as_deref(), src.host.as_deref()),
        (Some("kubelet"), Some("n1"))
    );
    assert_eq!(
        e.first_timestamp.as_ref().unwrap().0,
        clock
            .now_ts()
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap()
    );
    assert_eq!(e.count, Some(1));
}

#[tokio::test(start_paused = true)]
async fn repeats_are_folded_into_one_event() {
    let api = FakeApi::new();
    let (r, task, _clock) = recorder(&api);
    for _ in 0..4 {
        emit(&r, "a", events::NORMAL, "Pulled", "same");
    }
    emit(&r, "a", events::NORMAL, "Pulled", "other");
    flush(r, task).await;
    let s = api.state();
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.event_patches.len(), 3);
    assert_eq!(s.events[0].count, Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_flood_from_one_object_is_cut_at_the_burst() {
    let api = FakeApi::new();
    let (r, task, _clock) = recorder(&api);
    for i in 0..40 {
        emit(&r, "noisy", events::WARNING, "Failed", format!("{i}"));
    }
    emit(&r, "quiet", events::NORMAL, "Started", "ok");
    flush(r, task).await;
    let s = api.state();
    let noisy = s
        .events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("noisy"))
        .count();
    assert_eq!(noisy, 25);
    assert!(
        s.events
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("quiet")),
        "other objects are not held back"
    );
}

#[tokio::test(start_paused = true)]
async fn api_errors_lose_the_event_not_the_recorder() {
    let api = FakeApi::new();
    api.fail("create_event", 1, 500);
    let (r, task, _clock) = recorder(&api);
    emit(&r, "a", events::NORMAL, "A", "first");
    emit(&r, "a", events::NORMAL, "B", "second");
    flush(r, task).await;
    let s = api.state();
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].reason.as_deref(), Some("B"));
}

#[tokio::test(start_paused = true)]
async fn a_repeat_after_the_aggregation_window_is_a_new_event() {
    let api = FakeApi::new();
    let (r, task, _clock) = recorder(&api);
    emit(&r, "a", events::NORMAL, "Pulled", "same");
    // Let the sender take it before time moves on.
    api.wait_for(|s| s.events.len() == 1).await;
    tokio::time::advance(std::time::Duration::from_secs(601)).await;
    emit(&r, "a", events::NORMAL, "Pulled", "same");
    flush(r, task).await;
    let s = api.state();
    assert_eq!(s.events.len(), 2, "ten minutes later it is not folded");
    assert!(s.event_patches.is_empty());
}
