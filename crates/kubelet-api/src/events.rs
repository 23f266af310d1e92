//! core/v1 Events, as upstream's recorder writes them: sent from a background task through a
//! bounded queue (a flood is dropped, never blocks a pod worker), and repeats of the same
//! event within 10 minutes are folded into one object whose `count` grows.

use crate::api::EventSink;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::clock::SharedClock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub object: ObjectReference,
    pub type_: &'static str,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<PendingEvent>>,
}

/// The Node as upstream's kubelet names it in events (its UID field holds the name).
pub fn node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    }
}

pub fn pod_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")),
    }
}

impl Recorder {
    /// A recorder that drops everything (standalone mode, unit tests).
    pub fn disabled() -> Self {
        Recorder { tx: None }
    }

    pub fn emit(
        &self,
        object: ObjectReference,
        type_: &'static str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        debug!(reason, %message, "event");
        if let Some(tx) = &self.tx {
            // Full queue: drop, as upstream's broadcaster does under pressure.
            let _ = tx.try_send(PendingEvent {
                object,
                type_,
                reason: reason.into(),
                message,
            });
        }
    }

    /// A recorder and its sender task, for the caller to own; the task ends when every
    /// recorder is dropped.
    pub fn new(
        sink: Arc<dyn EventSink>,
        node: String,
        clock: SharedClock,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Recorder { tx: Some(tx) }, run(sink, node, clock, rx))
    }
}

struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

/// Events waiting to be sent; more are dropped.
const QUEUE: usize = 1000;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Upstream's spam filter: per involved object, bursts of 25, then one every 5 minutes.
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);

/// Token buckets per involved object, so one crash-looping pod cannot flood the API server.
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() > 4096 {
            self.buckets
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < SPAM_REFILL * 25);
        }
        let (tokens, last) = self
            .buckets
            .entry(key.to_string())
            .or_insert((SPAM_BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(SPAM_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn run(
    sink: Arc<dyn EventSink>,
    node: String,
    clock: SharedClock,
    mut rx: mpsc::Receiver<PendingEvent>,
) {
    let mut seen: HashMap<(String, String, String, String), Seen> = HashMap::new();
    let mut spam = SpamFilter::default();
    while let Some(e) = rx.recv().await {
        let object_key = format!(
            "{}/{}/{}/{}",
            e.object.kind.as_deref().unwrap_or_default(),
            e.object.namespace.as_deref().unwrap_or_default(),
            e.object.name.as_deref().unwrap_or_default(),
            e.object.uid.as_deref().unwrap_or_default()
        );
        if !spam.allow(&object_key, Instant::now()) {
            debug!(object = %object_key, reason = %e.reason, "event dropped by the spam filter");
            continue;
        }
        let ns = e
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            e.object.uid.clone().unwrap_or_default(),
            e.object.field_path.clone().unwrap_or_default(),
            e.reason.clone(),
            e.message.clone(),
        );
        let now = clock.now();
        seen.retain(|_, s| s.at.elapsed() < AGGREGATE_WINDOW);
        if let Some(s) = seen.get_mut(&key) {
            s.count += 1;
            s.at = Instant::now();
            let patch = serde_json::json!({
                "count": s.count,
                "lastTimestamp": kubelet_core::status::time_of(now),
            });
            if let Err(err) = sink.patch_event(&ns, &s.name, &patch).await {
                debug!(%err, "event patch failed");
            }
            continue;
        }
        let obj_name = e.object.name.clone().unwrap_or_else(|| "object".into());
        let name = format!("{obj_name}.{:x}", now.as_nanosecond());
        let t = kubelet_core::status::time_of(now);
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: e.object,
            reason: Some(e.reason),
            message: Some(e.message),
            type_: Some(e.type_.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            count: Some(1),
            ..Default::default()
        };
        match sink.create_event(&ev).await {
            Ok(_) => {
                seen.insert(
                    key,
                    Seen {
                        name,
                        count: 1,
                        at: Instant::now(),
                    },
                );
            }
            Err(err) => debug!(%err, "event create failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spam_filter_bursts_then_refills() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| f.allow("pod/a", t0)).count(), 25);
        assert!(f.allow("pod/b", t0), "other objects have their own bucket");
        assert!(!f.allow("pod/a", t0 + Duration::from_secs(60)));
        assert!(f.allow("pod/a", t0 + Duration::from_secs(301)));
    }
}
